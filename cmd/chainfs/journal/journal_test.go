package journal

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"
)

type entry struct {
	msg    string
	pri    sdjournal.Priority
	fields map[string]string
}

func capture(level slog.Level) (*slog.Logger, *[]entry) {
	var got []entry
	h := NewHandler(level)
	h.send = func(msg string, p sdjournal.Priority, fields map[string]string) error {
		got = append(got, entry{msg, p, fields})
		return nil
	}
	return slog.New(h), &got
}

func TestHandler(t *testing.T) {
	log, got := capture(slog.LevelInfo)
	log.Debug("hidden")
	log.With("volume", "home").WithGroup("job").Warn("snapshot failed", "id", 7, "err", errors.New("disk full"),
		slog.Group("stats", "bytes", 10), "message", "x", "2nd", "y", "", "empty key")
	log.Error("bad", "when", time.Date(2026, 11, 25, 8, 0, 0, 5, time.UTC))
	if len(*got) != 2 {
		t.Fatalf("%d entries, want 2 (debug is below the level)", len(*got))
	}
	e := (*got)[0]
	if e.pri != sdjournal.PriWarning {
		t.Errorf("priority %d, want %d", e.pri, sdjournal.PriWarning)
	}
	wantMsg := `snapshot failed volume=home job.id=7 job.err="disk full" job.stats.bytes=10 job.message=x job.2nd=y`
	if e.msg != wantMsg {
		t.Errorf("message\n got %q\nwant %q", e.msg, wantMsg)
	}
	for k, v := range map[string]string{"SYSLOG_IDENTIFIER": "chainfs", "VOLUME": "home", "JOB_ID": "7", "JOB_ERR": "disk full",
		"JOB_STATS_BYTES": "10", "JOB_MESSAGE": "x", "JOB_2ND": "y"} {
		if e.fields[k] != v {
			t.Errorf("field %s = %q, want %q (fields %v)", k, e.fields[k], v, e.fields)
		}
	}
	if e := (*got)[1]; e.pri != sdjournal.PriErr || e.fields["WHEN"] != "2026-11-25T08:00:00.000000005Z" {
		t.Errorf("error entry: %+v", e)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"volume": "VOLUME", "a.b-c": "A_B_C", "_x": "X", "2nd": "ATTR_2ND",
		"message": "ATTR_MESSAGE", "priority": "ATTR_PRIORITY", "ü": "", "": ""} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSendsToJournalSocket sends through the journal's real protocol to a
// socket standing in for journald, where none runs.
func TestSendsToJournalSocket(t *testing.T) {
	const sock = "/run/systemd/journal/socket"
	if _, err := os.Stat(sock); err == nil {
		t.Skip("journald runs here; not replacing its socket")
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Skip("cannot make", filepath.Dir(sock), err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skip(err)
	}
	defer os.Remove(sock)
	defer conn.Close()
	slog.New(NewHandler(slog.LevelInfo)).Info("serving", "mount", "/mnt/chainfs")
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range bytes.Split(bytes.TrimSuffix(buf[:n], []byte("\n")), []byte("\n")) {
		k, v, _ := strings.Cut(string(line), "=")
		fields[k] = v
	}
	for k, v := range map[string]string{"MESSAGE": "serving mount=/mnt/chainfs", "PRIORITY": "6", "MOUNT": "/mnt/chainfs", "SYSLOG_IDENTIFIER": "chainfs"} {
		if fields[k] != v {
			t.Errorf("%s = %q, want %q (datagram %q)", k, fields[k], v, buf[:n])
		}
	}
}
