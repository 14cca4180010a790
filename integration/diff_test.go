package integration

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSnapshotDiff makes every kind of change and finds each in the diff,
// with the changed block range of a file rewritten in the middle.
func TestSnapshotDiff(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "dir/sub"), 0o755)
	os.MkdirAll(filepath.Join(src, "gone-dir"), 0o755)
	os.WriteFile(filepath.Join(src, "gone-dir/inside"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "big"), randomData(1, 4<<20), 0o644)
	os.WriteFile(filepath.Join(src, "dir/sub/mode"), []byte("m"), 0o644)
	os.WriteFile(filepath.Join(src, "same"), []byte("same"), 0o644)
	os.Symlink("a", filepath.Join(src, "link"))
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "a")

	f, _ := os.OpenFile(filepath.Join(src, "big"), os.O_WRONLY, 0)
	f.WriteAt([]byte("changed"), 1<<20+5) // inside the fifth 256 KiB block
	f.Close()
	os.Chmod(filepath.Join(src, "dir/sub/mode"), 0o600)
	os.RemoveAll(filepath.Join(src, "gone-dir"))
	os.WriteFile(filepath.Join(src, "dir/new"), []byte("new"), 0o644)
	os.Remove(filepath.Join(src, "link"))
	os.Symlink("b", filepath.Join(src, "link"))
	e.snapshot("v", "--name", "b")

	var changes []struct {
		Path    string `json:"path"`
		Kind    string `json:"kind"`
		Content bool   `json:"content"`
		Meta    bool   `json:"meta"`
		Ranges  []struct {
			Off uint64 `json:"off"`
			Len uint64 `json:"len"`
		} `json:"ranges"`
	}
	out := e.ok("snapshot", "diff", "v/a", "v/b", "--json")
	if err := json.Unmarshal([]byte(out), &changes); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range changes {
		got[c.Path] = c.Kind
		if c.Path == "/big" && (len(c.Ranges) != 1 || c.Ranges[0].Off != 1<<20 || c.Ranges[0].Len != 256<<10) {
			t.Errorf("/big ranges %+v, want one 256 KiB block at 1 MiB", c.Ranges)
		}
		if c.Path == "/dir/sub/mode" && (c.Content || !c.Meta) {
			t.Errorf("/dir/sub/mode: %+v, want metadata only", c)
		}
		if c.Path == "/link" && !c.Content {
			t.Errorf("/link target change not seen: %+v", c)
		}
	}
	for path, kind := range map[string]string{"/big": "changed", "/dir/sub/mode": "changed", "/gone-dir": "removed",
		"/gone-dir/inside": "removed", "/dir/new": "added", "/link": "changed"} {
		if got[path] != kind {
			t.Errorf("%s: %q, want %q\n%s", path, got[path], kind, out)
		}
	}
	if _, ok := got["/same"]; ok {
		t.Error("an unchanged file is in the diff")
	}
	human := e.ok("snapshot", "diff", "v/a", "v/b")
	for _, want := range []string{"M /big  (1 range, 256.0 KiB)", "m /dir/sub/mode", "- /gone-dir/inside", "+ /dir/new"} {
		if !strings.Contains(human, want) {
			t.Errorf("diff output lacks %q:\n%s", want, human)
		}
	}
	if out := e.ok("snapshot", "diff", "v/b", "v/b"); strings.TrimSpace(out) != "" {
		t.Errorf("diff of a snapshot with itself: %q", out)
	}
}

// TestChainMap draws a three-snapshot chain in the terminal and as SVG.
func TestChainMap(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a"), randomData(1, 4<<20), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	f, _ := os.OpenFile(filepath.Join(src, "a"), os.O_WRONLY, 0)
	f.WriteAt(randomData(2, 512<<10), 1<<20)
	f.Close()
	e.snapshot("v", "--name", "s2")
	svg := filepath.Join(e.dir, "chain.svg")
	out := e.ok("chain", "v", "--svg", svg)
	for _, want := range []string{"4.0 MiB: 4.0 MiB held itself", "512.0 KiB held itself, 3.5 MiB → s1"} {
		if !strings.Contains(out, want) {
			t.Errorf("chain output lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name
		Rects   []struct{} `xml:"rect"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil || doc.XMLName.Local != "svg" || len(doc.Rects) != 3 {
		t.Errorf("SVG: %v, root %q, %d bars (want 3: s1 own, s2 own, s2 → s1)", err, doc.XMLName.Local, len(doc.Rects))
	}
}

// TestSnapshotDiffMatchesRestoredTrees: on a real tree, the diff lists
// exactly the paths whose state differs between the two snapshots as
// restored and read independently, but for directories whose mtime moved
// because entries came or went.
func TestSnapshotDiffMatchesRestoredTrees(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	goroot := strings.TrimSpace(sh(t, "go env GOROOT"))
	sh(t, "cp -a "+goroot+"/src/net "+src)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "a")
	sh(t, "cd "+src+" && rm -r http/httptest && mv mail mail2 && chmod 600 ip.go && echo more >> net.go && mkdir newdir && echo x > newdir/f && touch -d 2001-01-01 iprawsock.go")
	e.snapshot("v", "--name", "b")
	ra, rb := filepath.Join(e.dir, "ra"), filepath.Join(e.dir, "rb")
	e.ok("restore", "v/a", ra)
	e.ok("restore", "v/b", rb)
	sa, sb := treeState(t, ra), treeState(t, rb)
	want := map[string]string{}
	for p, a := range sa {
		b, ok := sb[p]
		a.atime, b.atime = unix.Timespec{}, unix.Timespec{} // diff leaves atime out
		switch {
		case !ok:
			want[p] = "removed"
		case fmt.Sprint(a) != fmt.Sprint(b):
			want[p] = "changed"
		}
	}
	for p := range sb {
		if _, ok := sa[p]; !ok {
			want[p] = "added"
		}
	}
	// A directory whose entries were added, removed or renamed is not
	// listed for the mtime that moved: its entries' lines say it.
	for p, k := range want {
		if k != "added" && k != "removed" {
			continue
		}
		dir := filepath.Dir(p)
		a, b := sa[dir], sb[dir]
		a.atime, b.atime, a.mtime = unix.Timespec{}, unix.Timespec{}, b.mtime
		if want[dir] == "changed" && fmt.Sprint(a) == fmt.Sprint(b) {
			delete(want, dir)
		}
	}
	var changes []struct {
		Path string `json:"path"`
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal([]byte(e.ok("snapshot", "diff", "v/a", "v/b", "--json")), &changes); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range changes {
		p := strings.TrimPrefix(c.Path, "/")
		if p == "" {
			p = "."
		}
		got[p] = c.Kind
	}
	for p, k := range want {
		if got[p] != k {
			t.Errorf("%s: diff says %q, the restored trees say %q", p, got[p], k)
		}
	}
	for p, k := range got {
		if want[p] == "" {
			t.Errorf("%s: diff says %q, the restored trees agree", p, k)
		}
	}
	if len(want) < 10 {
		t.Fatalf("the change touched only %d paths; the test tests little", len(want))
	}
}

// TestChainSVGRenders renders the chain map's SVG to PNG with rsvg-convert.
func TestChainSVGRenders(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	e.ok("volume", "add", "v", src)
	for i := 0; i < 3; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprint(i)), randomData(uint64(i), 1<<20), 0o644)
		e.snapshot("v", "--name", fmt.Sprintf("s%d", i))
	}
	svg, png := filepath.Join(e.dir, "chain.svg"), filepath.Join(e.dir, "chain.png")
	e.ok("chain", "v", "--svg", svg)
	sh(t, fmt.Sprintf("rsvg-convert %s -o %s", svg, png))
	st, err := os.Stat(png)
	if err != nil || st.Size() < 1000 {
		t.Errorf("rendered PNG: %v", err)
	}
}
