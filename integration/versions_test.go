package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionsOfAFile: chainfs versions lists a file's distinct versions
// once each, named after the earliest snapshot holding them, with what
// changed; the mount shows the same under volumes/v/.versions/PATH/, each
// with its bytes and metadata as its snapshot holds it, a file deleted
// since reachable by name, all of it closed to other users, and .versions
// itself not listed.
func TestVersionsOfAFile(t *testing.T) {
	e, d := servedToOthers(t)
	src := filepath.Join(e.dir, "src")
	dir := filepath.Join(src, "docs", "private")
	os.Mkdir(filepath.Join(src, "docs"), 0o755)
	os.Mkdir(dir, 0o700)
	f := filepath.Join(src, "docs", "plan.txt")
	write := func(s string) {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	os.WriteFile(filepath.Join(dir, "secret"), []byte("s"), 0o644)
	e.snapshot("v", "--name", "s1")
	e.snapshot("v", "--name", "s2") // unchanged
	write("two!")
	e.snapshot("v", "--name", "s3")
	os.Chmod(f, 0o600)
	e.snapshot("v", "--name", "s4")
	os.Remove(f)
	e.snapshot("v", "--name", "s5")

	var vs []struct {
		Snapshot  string `json:"snapshot"`
		Change    string `json:"change"`
		Snapshots int    `json:"snapshots"`
		Entry     struct {
			Size uint64 `json:"size"`
			Mode uint32 `json:"mode"`
		} `json:"entry"`
	}
	if err := json.Unmarshal([]byte(e.ok("versions", "v/docs/plan.txt", "--json")), &vs); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		snap, change string
		n            int
		data         string
		mode         os.FileMode
	}{{"s1", "added", 2, "one", 0o644}, {"s3", "content", 1, "two!", 0o644}, {"s4", "metadata", 1, "two!", 0o600}}
	if len(vs) != len(want) {
		t.Fatalf("versions: %+v", vs)
	}
	for i, w := range want {
		if vs[i].Snapshot != w.snap || vs[i].Change != w.change || vs[i].Snapshots != w.n {
			t.Errorf("version %d: %+v, want %s %s %d", i, vs[i], w.snap, w.change, w.n)
		}
		p := filepath.Join(d.mount, "volumes", "v", ".versions", "docs", "plan.txt", w.snap)
		b, err := os.ReadFile(p)
		st, serr := os.Stat(p)
		if err != nil || serr != nil || string(b) != w.data || st.Mode().Perm() != w.mode {
			t.Errorf("%s: %q %v, mode %v %v; want %q, %v", p, b, err, st.Mode(), serr, w.data, w.mode)
		}
	}
	if out := e.ok("versions", "v/docs/plan.txt"); !strings.Contains(out, "CHANGE") || !strings.Contains(out, "metadata") {
		t.Errorf("versions:\n%s", out)
	}
	e.fails(1, "versions of v/docs: is a directory", "versions", "v/docs")
	e.fails(1, "versions of v/nothing: in no snapshot", "versions", "v/nothing")
	e.fails(2, `"v": want VOLUME/PATH`, "versions", "v")

	names, err := os.ReadDir(filepath.Join(d.mount, "volumes", "v", ".versions", "docs", "plan.txt"))
	if err != nil || len(names) != 3 {
		t.Errorf("listing the versions: %v, %v", names, err)
	}
	if list, _ := os.ReadDir(filepath.Join(d.mount, "volumes", "v")); strings.Contains(listed(list), ".versions") {
		t.Errorf("volumes/v lists .versions: %s", listed(list))
	}
	// .versions is the repository owner's: a version shown outside its
	// snapshot has no directories of its time around it to keep others out.
	for _, p := range []string{"", "docs", "docs/private", "docs/plan.txt/s1"} {
		if out, err := asUser("cat", filepath.Join(d.mount, "volumes", "v", ".versions", p)); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("uid %d reaches .versions/%s: %v %s", user, p, err, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(d.mount, "volumes", "v", ".versions", "docs", "private", "secret", "s1")); err != nil || string(b) != "s" {
		t.Errorf("root reading a version below a 0700 directory: %q %v", b, err)
	}
}

// listed is the names of a directory listing, space-separated.
func listed(list []os.DirEntry) string {
	var s []string
	for _, e := range list {
		s = append(s, e.Name())
	}
	return strings.Join(s, " ")
}
