//go:build linux

package daemon

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
)

// FuzzParseRequest: any request line is parsed or refused, never panics,
// and what is accepted is a request of this version naming an operation,
// with a body that is one JSON object.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"v":1,"op":"snapshot.list","body":{"volume":"v"}}`, `{"v":1,"op":"gc","body":{}}`,
		`{"v":2,"op":"gc","body":{}}`, `{"v":1,"op":"Snapshot List","body":{}}`, `{"v":1,"op":"gc","body":[]}`,
		`{"v":1,"op":"gc","body":{},"catalog":"rel"}`, `{"args":["snapshot","list"],"cwd":"/root"}`, `[]`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := parseRequest(line)
		if err != nil {
			return
		}
		var body map[string]any
		if req.V != RequestVersion || !opName.MatchString(req.Op) || json.Unmarshal(req.Body, &body) != nil ||
			(req.Catalog != "" && !filepath.IsAbs(req.Catalog)) || bytes.ContainsRune([]byte(req.Catalog), 0) {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// TestRequestRefused: what an older CLI sent (a command line), a request
// of another version and a body that is no object are refused, each
// saying why.
func TestRequestRefused(t *testing.T) {
	for line, want := range map[string]string{
		`{"args":["snapshot","list"],"cwd":"/root"}`:  `unknown field "args"`,
		`{"v":2,"op":"gc","body":{}}`:                 "request version 2, but this daemon reads version 1",
		`{"v":1,"op":"gc","body":"x"}`:                "not a JSON object",
		`{"v":1,"op":"../gc","body":{}}`:              "not an operation name",
		`{"v":1,"op":"gc","body":{},"log_level":"x"}`: "log level",
	} {
		_, err := parseRequest([]byte(line))
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("%s: %v, want %q", line, err, want)
		}
	}
	req, err := parseRequest([]byte(`{"v":1,"op":"image.export","body":{"name":"n","file":"/tmp/x"}}`))
	if err != nil || req.String() != `image.export {"name":"n","file":"/tmp/x"}` {
		t.Errorf("%+v %v", req, err)
	}
}
