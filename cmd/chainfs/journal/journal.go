// Package journal is a log/slog handler that writes to systemd's journal:
// each record one entry, at its priority, its attributes as fields that
// journalctl can filter on (journalctl -u chainfs VOLUME=home).
package journal

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"
)

// Handler is a slog.Handler that sends records to the journal.
type Handler struct {
	level  slog.Leveler
	attrs  []slog.Attr // with their group prefix already in the key
	prefix string      // the open groups, "a.b."
	send   func(msg string, p sdjournal.Priority, fields map[string]string) error
}

// NewHandler returns a handler of the records at level and above.
func NewHandler(level slog.Leveler) *Handler {
	return &Handler{level: level, send: sdjournal.Send}
}

// StderrIsJournal reports whether systemd connected standard error to the
// journal, as it does for a service: logs are then better sent as
// structured entries.
func StderrIsJournal() bool {
	ok, err := sdjournal.StderrIsJournalStream()
	return err == nil && ok
}

// Wanted reports whether logs should go to the journal: systemd connected
// standard error to it (a service), or the mount helper that started this
// daemon asked for it (CHAINFS_JOURNAL=1), having found the journal there.
func Wanted() bool {
	return StderrIsJournal() || os.Getenv(helperEnv) == "1"
}

// Available reports whether journald runs on this machine.
func Available() bool { return sdjournal.Enabled() }

// HelperEnv is what a process that starts chainfs in the background sets
// to have it log to the journal.
const HelperEnv = helperEnv + "=1"

const helperEnv = "CHAINFS_JOURNAL"

// Enabled reports whether records at l are sent.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle sends one record. The message keeps the attributes as key=value
// too, so that a plain journalctl shows them.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	fields := map[string]string{"SYSLOG_IDENTIFIER": "chainfs"}
	var text strings.Builder
	text.WriteString(r.Message)
	add := func(a slog.Attr) {
		v := a.Value.Resolve()
		if a.Key == "" || (v.Kind() == slog.KindAny && v.Any() == nil) {
			return
		}
		s := v.String()
		if v.Kind() == slog.KindTime {
			s = v.Time().Format(time.RFC3339Nano)
		}
		fmt.Fprintf(&text, " %s=%s", a.Key, quote(s))
		if name := FieldName(a.Key); name != "" {
			fields[name] = s
		}
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool {
		for _, flat := range flatten(h.prefix, a) {
			add(flat)
		}
		return true
	})
	return h.send(text.String(), priority(r.Level), fields)
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		c.attrs = append(c.attrs, flatten(h.prefix, a)...)
	}
	return &c
}

// WithGroup returns a handler whose later attributes are under name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}

// flatten turns a group attribute into its leaves, keys dotted.
func flatten(prefix string, a slog.Attr) []slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() != slog.KindGroup {
		if a.Key == "" { // slog's rule: such an attribute is left out
			return nil
		}
		return []slog.Attr{{Key: prefix + a.Key, Value: v}}
	}
	p := prefix
	if a.Key != "" {
		p += a.Key + "."
	}
	var out []slog.Attr
	for _, g := range v.Group() {
		out = append(out, flatten(p, g)...)
	}
	return out
}

// FieldName is the journal field for an attribute key: upper case,
// letters, digits and underscores, not starting with an underscore or a
// digit; "" if nothing is left. Fields the journal sets itself are not
// overwritten: a key that names one gets an ATTR_ prefix.
func FieldName(key string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(key) {
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), "_")
	if name == "" {
		return ""
	}
	if name[0] >= '0' && name[0] <= '9' || reserved[name] {
		name = "ATTR_" + name
	}
	return name
}

// reserved are fields with a meaning to the journal.
var reserved = map[string]bool{"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "CODE_FILE": true,
	"CODE_LINE": true, "CODE_FUNC": true, "ERRNO": true, "SYSLOG_IDENTIFIER": true, "SYSLOG_FACILITY": true,
	"SYSLOG_PID": true, "SYSLOG_TIMESTAMP": true, "SYSLOG_RAW": true, "INVOCATION_ID": true}

func priority(l slog.Level) sdjournal.Priority {
	switch {
	case l >= slog.LevelError:
		return sdjournal.PriErr
	case l >= slog.LevelWarn:
		return sdjournal.PriWarning
	case l >= slog.LevelInfo:
		return sdjournal.PriInfo
	}
	return sdjournal.PriDebug
}

func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " =\"\n\t") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

var _ slog.Handler = (*Handler)(nil)
