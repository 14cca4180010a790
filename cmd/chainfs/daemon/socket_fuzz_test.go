//go:build linux

package daemon

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseRequest: any request line is parsed or refused, never panics,
// and what is accepted is a usable command line.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"args":["snapshot","list"],"cwd":"/root"}`, `{"args":[],"cwd":"/"}`,
		`{"args":["a\u0000"],"cwd":"/"}`, `{"args":["x"],"cwd":"rel"}`, `[]`, `{"args":"x"}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := parseRequest(line)
		if err != nil {
			return
		}
		if len(req.Args) == 0 || len(req.Args) > maxArgs || !filepath.IsAbs(req.Cwd) {
			t.Fatalf("accepted %+v", req)
		}
		for _, a := range req.Args {
			if strings.ContainsRune(a, 0) {
				t.Fatalf("accepted a NUL: %q", a)
			}
		}
	})
}
