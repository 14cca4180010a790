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
	"strings"
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
	V    int             `json:"v"`
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
}

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
// operation and its arguments (the job list hides what URLs carry).
func (r Request) String() string {
	var b bytes.Buffer
	if json.Compact(&b, r.Body) != nil || b.String() == "{}" {
		return r.Op
	}
	return r.Op + " " + b.String()
}
