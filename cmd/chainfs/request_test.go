package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// fill sets every exported field reachable from v to a value that is not
// its zero, so that a field the wire drops or renames shows.
func fill(t *testing.T, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("/x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Uint8, reflect.Uint32, reflect.Uint64:
		if v.CanInt() {
			v.SetInt(7)
		} else {
			v.SetUint(7)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k)
		fill(t, e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem())
	case reflect.Struct:
		if v.Type().PkgPath() == "time" {
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i))
			}
		}
	default:
		t.Fatalf("fill: %s", v.Type())
	}
}

// TestOperationsOnTheWire: every operation, with every field set, comes
// out of its request as it went in, and names every field in snake_case
// (the request format is a promise to daemons of this version).
func TestOperationsOnTheWire(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	for name, newOp := range operations {
		o := newOp()
		fill(t, reflect.ValueOf(o).Elem())
		req, err := newRequest(o)
		if err != nil || req.Op != name {
			t.Fatalf("%s: newRequest: %+v %v", name, req, err)
		}
		got, err := decodeOperation(req.Op, req.Body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s, ok := got.(secretHolder); ok {
			// The password travels beside the body, which the job list
			// and the log show.
			if req.Secret == nil || bytes.Contains(req.Body, req.Secret) || strings.Contains(req.String(), string(req.Secret)) {
				t.Errorf("%s: the secret %q is not apart from the body %s", name, req.Secret, req.Body)
			}
			s.setSecret(req.Secret)
		}
		if !reflect.DeepEqual(got, o) {
			t.Errorf("%s: sent %+v, got %+v", name, o, got)
		}
		typ := reflect.TypeOf(o).Elem()
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if _, secret := o.(secretHolder); secret && tag == "-" {
				continue
			}
			if f.IsExported() && !f.Anonymous && !snake.MatchString(tag) {
				t.Errorf("%s: field %s is sent as %q", name, f.Name, tag)
			}
		}
	}
}

// TestDecodeOperationRefuses: an operation this chainfs does not know,
// an argument an operation does not take, and trailing data are usage
// errors, not guesses.
func TestDecodeOperationRefuses(t *testing.T) {
	for _, c := range []struct{ op, body, want string }{
		{"volume.explode", `{}`, `no operation "volume.explode"`},
		{"volume.rm", `{"name":"v","with_snapshots":true,"force":true}`, `unknown field "force"`},
		{"volume.rm", `{"name":"v"} {}`, "data after the body"},
		{"volume.rm", `{"name":7}`, "cannot unmarshal"},
	} {
		_, err := decodeOperation(c.op, []byte(c.body))
		var stderr strings.Builder
		if err == nil || !strings.Contains(err.Error(), c.want) || reportError(err, &stderr) != exitUsage ||
			!strings.HasPrefix(stderr.String(), daemon.RefusalPrefix) || strings.Contains(stderr.String(), "--help") {
			t.Errorf("%s %s: %v, %q; want the daemon's refusal, status 2, with %q", c.op, c.body, err, stderr.String(), c.want)
		}
	}
}

// TestServeRequest: the daemon's handler runs what a request asks on the
// repository it serves, with the caller's identity, and refuses a path
// that is not absolute rather than resolve it in its own directory.
func TestServeRequest(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	if _, err := store.Init(context.Background(), store.Options{Dir: filepath.Join(dir, "repo")}); err != nil {
		t.Fatal(err)
	}
	r, err := store.Open(context.Background(), store.Options{Dir: filepath.Join(dir, "repo")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := &served{repo: r}
	serve := func(o operation) (int, string, string) {
		t.Helper()
		req, err := newRequest(o)
		if err != nil {
			t.Fatal(err)
		}
		var out, errs strings.Builder
		code := s.serve(context.Background(), req, &out, &errs, daemon.Caller{UID: 4321})
		return code, out.String(), errs.String()
	}
	if code, _, errs := serve(&volumeAdd{Name: "v", Source: "src"}); code != exitUsage || !strings.Contains(errs, `source "src" is not an absolute, clean path`) {
		t.Errorf("relative source: exit %d, %q", code, errs)
	}
	for _, o := range []operation{&volumeAdd{Name: "v", Source: src}, &snapshotCreate{Volume: "v", Name: "s1"},
		&imageCreate{Name: "img", From: snapshotRef{"v", "s1"}}} {
		if code, _, errs := serve(o); code != exitOK {
			t.Fatalf("%T: exit %d %s", o, code, errs)
		}
	}
	code, out, _ := serve(&imageShow{Name: "img"})
	if code != exitOK || !strings.Contains(out, "owner:       4321") {
		t.Errorf("image show: exit %d\n%s", code, out)
	}
	if code, _, errs := serve(&restoreOp{snapshotRef: snapshotRef{"v", "s1"}, Target: "rel", Overwrite: "never"}); code != exitUsage ||
		!strings.Contains(errs, "not an absolute, clean path") {
		t.Errorf("relative target: exit %d, %q", code, errs)
	}
}

// TestWriteSVGFollowsNoSymlink: the chain's picture goes to a regular
// file only; a symlink or a fifo in its place is refused and left as it
// was, and the file it points to untouched; a file there is replaced
// whole, its other hard link untouched.
func TestWriteSVGFollowsNoSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	os.Symlink(victim, filepath.Join(dir, "link.svg"))
	if err := writeSVG(filepath.Join(dir, "link.svg"), "<svg/>"); err == nil {
		t.Error("wrote through a symlink")
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the symlink's target became %q", b)
	}
	fifo := filepath.Join(dir, "fifo.svg")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSVG(fifo, "<svg/>"); err == nil {
		t.Error("wrote to a fifo")
	}
	out := filepath.Join(dir, "chain.svg")
	os.WriteFile(out, []byte(strings.Repeat("old ", 100)), 0o644)
	os.Link(out, filepath.Join(dir, "other-link"))
	if err := writeSVG(out, "<svg/>"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "<svg/>" {
		t.Errorf("chain.svg holds %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "other-link")); string(b) != strings.Repeat("old ", 100) {
		t.Errorf("the other hard link became %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 5 {
		t.Errorf("left behind: %v", ents)
	}
}

// TestOlderDaemonRefusal: a daemon of another version (here one from
// before requests were typed, which took them for malformed command
// lines) refuses the request; the CLI says what to do about it, with the
// daemon's status.
func TestOlderDaemonRefusal(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, daemon.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		bufio.NewReader(conn).ReadBytes('\n')
		frame := func(kind byte, data []byte) {
			conn.Write(append(binary.BigEndian.AppendUint32([]byte{kind}, uint32(len(data))), data...))
		}
		frame('e', []byte("chainfs: malformed request to the daemon: 0 arguments\n"))
		frame('x', binary.BigEndian.AppendUint32(nil, 2))
	}()
	t.Setenv("CHAINFS_CONFIG", "")
	code, _, stderr := runLine(t, "chainfs --repo "+dir+" volume list")
	if code != exitUsage || !strings.Contains(stderr, "malformed request") || !strings.Contains(stderr, "runs another version of chainfs: restart it") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
