//go:build linux

package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/chainfs/chainfs/cmd/chainfs/redact"
)

// RequestVersion is the version of the requests the socket carries. A
// daemon refuses a request of another version (a CLI newer or older than
// the daemon) rather than guess what it means.
const RequestVersion = 1

// Request is what the CLI sends the daemon: one operation, named by Op,
// with its arguments in Body, a JSON object whose shape Op decides, and
// how the caller wants the answer. The daemon never sees a command line:
// the CLI parsed it, made its paths absolute and its user names uids.
type Request struct {
	// V is the request format's version, RequestVersion.
	V int `json:"v"`
	// Op names the operation ("image.export"); Body holds its arguments.
	Op   string          `json:"op"`
	Body json.RawMessage `json:"body"`
	// JSON asks for output for scripts (--json) instead of text.
	JSON bool `json:"json,omitempty"`
	// LogLevel is the caller's --log-level: what the operation logs at
	// that level or above goes to the caller's standard error.
	LogLevel string `json:"log_level,omitempty"`
	// Catalog is the caller's --catalog, absolute. A daemon that serves a
	// catalog of its own uses that one.
	Catalog string `json:"catalog,omitempty"`
	// StderrTTY says the caller's standard error is a terminal, where
	// progress bars are drawn.
	StderrTTY bool `json:"stderr_tty,omitempty"`
	// Secret is a password the operation needs (a sealed image file's),
	// kept out of Body so that neither the job list nor the log, which
	// show the body, ever show it.
	Secret []byte `json:"secret,omitempty"`
}

// RefusalPrefix begins the message of a daemon that refuses a request
// before running anything, as it refuses one of another version: the CLI
// adds what to do about it.
const RefusalPrefix = "chainfs: the daemon refuses the request: "

// Handler runs one request against the daemon's repository, with what it
// prints going to stdout and stderr, and returns the exit status.
type Handler func(ctx context.Context, req Request, stdout, stderr io.Writer, caller Caller) int

// opName is an operation's name: words of lower-case letters joined by
// dots, as in "image.export".
var opName = regexp.MustCompile(`^[a-z]+(-[a-z]+)*(\.[a-z]+(-[a-z]+)*)*$`)

// parseRequest reads a request line and refuses what no CLI of this
// version sends: another version, an operation name that is none, a body
// that is not one JSON object, a relative catalog, a level slog does not
// know.
func parseRequest(line []byte) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, err
	}
	if dec.More() {
		return req, errors.New("data after the request")
	}
	if req.V != RequestVersion {
		return req, fmt.Errorf("request version %d, but this daemon reads version %d: use the chainfs that started it, "+
			"or restart the daemon with this one", req.V, RequestVersion)
	}
	if len(req.Op) > 64 || !opName.MatchString(req.Op) {
		return req, fmt.Errorf("operation %q: not an operation name", req.Op)
	}
	if b := bytes.TrimSpace(req.Body); len(b) == 0 || b[0] != '{' {
		return req, errors.New("the body is not a JSON object")
	}
	if req.Catalog != "" && (!filepath.IsAbs(req.Catalog) || strings.ContainsRune(req.Catalog, 0)) {
		return req, fmt.Errorf("catalog %q is not an absolute path", req.Catalog)
	}
	if req.LogLevel != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(req.LogLevel)); err != nil {
			return req, fmt.Errorf("log level %q: %w", req.LogLevel, err)
		}
	}
	return req, nil
}

// String is the request as the job list and the log show it: the
// operation and its arguments as KEY=VALUE, in the body's order, a
// nested field's key dotted and a list's key repeated for each item
// (restore volume=v snapshot=s1 target=/tmp/r overwrite=never). Each
// value is redacted on its own (redact.Arg), so that a URL's password
// never shows, whatever it holds (a space) and whatever stands beside it.
func (r Request) String() string {
	var b strings.Builder
	b.WriteString(r.Op)
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := describe(dec, "", &b); err != nil {
		return r.Op + " (malformed body)"
	}
	return b.String()
}

// describe writes the JSON value dec is at as KEY=VALUE pairs, key
// being the path to it.
func describe(dec *json.Decoder, key string, b *strings.Builder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		for dec.More() {
			name := key
			if t == '{' {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				name = strings.TrimPrefix(key+"."+fmt.Sprint(k), ".")
			}
			if err := describe(dec, name, b); err != nil {
				return err
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	case string:
		v := redact.Arg(t)
		if v == "" || strings.ContainsAny(v, " \t\n\"=") {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(b, " %s=%s", key, v)
	case nil:
		fmt.Fprintf(b, " %s=null", key)
	default:
		fmt.Fprintf(b, " %s=%v", key, t)
	}
	return nil
}
