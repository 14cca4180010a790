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
	if err != nil || req.String() != `image.export name=n file=/tmp/x` {
		t.Errorf("%+v %v", req, err)
	}
}

// TestRequestString: a request is shown as its operation and KEY=VALUE
// pairs, each value redacted on its own: a URL's password with a space
// in it, or beside a field holding '@', never shows, and a field is never
// run into the next.
func TestRequestString(t *testing.T) {
	for body, want := range map[string]string{
		`{}`: `gc`,
		`{"name":"t1","source":"https://user:pa ss@127.0.0.1:1/a","format":"auto"}`: `gc name=t1 source=https://user:xxxxx@127.0.0.1:1/a format=auto`,
		`{"source":"https://tok:en@host","description":"a@b"}`:                      `gc source=https://tok:xxxxx@host description=a@b`,
		`{"from":{"volume":"v","snapshot":"s 1"},"users":[1001,1002],"share":true}`: `gc from.volume=v from.snapshot="s 1" users=1001 users=1002 share=true`,
		`{"tags":{"k":""},"owner":null}`:                                            `gc tags.k="" owner=null`,
		`{"x":`:                                                                     `gc (malformed body)`,
	} {
		if got := (Request{Op: "gc", Body: []byte(body)}).String(); got != want {
			t.Errorf("%s:\n got %s\nwant %s", body, got, want)
		}
	}
}
