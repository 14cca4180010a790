package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// snapshotJSON is the part of `snapshot create --json` the tests read.
type snapshotJSON struct {
	Volume string `json:"volume"`
	Name   string `json:"name"`
	Seq    uint64 `json:"seq"`
	Stats  struct {
		Files       uint64 `json:"files"`
		ReadBytes   uint64 `json:"read_bytes"`
		StoredBytes uint64 `json:"stored_bytes"`
		AddedBytes  uint64 `json:"added_bytes"`
		Warnings    uint64 `json:"warnings"`
	} `json:"stats"`
	Warnings []string `json:"warnings"`
}

func (e *env) snapshot(args ...string) snapshotJSON {
	e.t.Helper()
	out := e.ok(append([]string{"snapshot", "create", "--json"}, args...)...)
	var s snapshotJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		e.t.Fatalf("snapshot create --json: %v\n%s", err, out)
	}
	return s
}

// TestCraftedTreeRoundTrip snapshots a tree with every kind of entry and
// metadata, restores it, and compares with the source: by our own exact
// reading of both trees, and by rsync.
func TestCraftedTreeRoundTrip(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	makeCraftedTree(t, src)
	// Reading a symlink moves its atime (no flag avoids that), so the
	// snapshot records the atime it saw before its readlink. Read the tree
	// once so that relatime has nothing left to move, then record it.
	treeState(t, src)
	want := treeState(t, src)
	e.ok("volume", "add", "crafted", src)
	e.snapshot("crafted", "--name", "one")
	compareTrees(t, want, treeState(t, src), "source after snapshot")

	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "crafted/one", dst)
	compareTrees(t, want, treeState(t, dst), "restore of crafted/one")
	rsyncSame(t, src, dst)

	// One file, into an existing directory and to a new name.
	into := filepath.Join(e.dir, "single")
	os.Mkdir(into, 0o755)
	e.ok("restore", "crafted/one/dir/sub/odd-size", into)
	e.ok("restore", "crafted/latest/small.txt", filepath.Join(e.dir, "renamed.txt"))
	sh(t, "cmp "+filepath.Join(src, "dir/sub/odd-size")+" "+filepath.Join(into, "odd-size"))
	sh(t, "cmp "+filepath.Join(src, "small.txt")+" "+filepath.Join(e.dir, "renamed.txt"))
	// A subtree.
	e.ok("restore", "crafted/one/dir", filepath.Join(e.dir, "subtree"))
	sh(t, "diff -r --no-dereference "+filepath.Join(src, "dir")+" "+filepath.Join(e.dir, "subtree"))

	// A file's target is made where it is asked for.
	deep := filepath.Join(e.dir, "new", "deeper", "small.txt")
	e.ok("restore", "crafted/one/small.txt", deep)
	sh(t, "cmp "+filepath.Join(src, "small.txt")+" "+deep)

	// Never overwrite without being asked: nothing is written, so the
	// restore failed (exit 1), not "done with gaps" (3).
	e.fails(1, "exists (use --overwrite", "restore", "crafted/one/small.txt", filepath.Join(e.dir, "renamed.txt"))
	os.WriteFile(filepath.Join(e.dir, "renamed.txt"), []byte("local edit"), 0o644)
	e.ok("restore", "--overwrite", "always", "crafted/one/small.txt", filepath.Join(e.dir, "renamed.txt"))
	sh(t, "cmp "+filepath.Join(src, "small.txt")+" "+filepath.Join(e.dir, "renamed.txt"))
}

// TestGoTreeRoundTrip snapshots a real source tree (Go's own) and restores it.
func TestGoTreeRoundTrip(t *testing.T) {
	goroot := strings.TrimSpace(sh(t, "go env GOROOT"))
	e := newEnv(t)
	src := filepath.Join(e.dir, "go-src")
	sh(t, "cp -a "+filepath.Join(goroot, "src")+" "+src)
	e.ok("volume", "add", "go", src)
	s := e.snapshot("go")
	if s.Stats.Files < 5000 {
		t.Fatalf("snapshot of Go's tree has %d files", s.Stats.Files)
	}
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "go/"+s.Name, dst)
	rsyncSame(t, src, dst)

	// Nothing changed: nothing is read again.
	s2 := e.snapshot("go")
	if s2.Stats.ReadBytes != 0 || s2.Stats.AddedBytes != 0 {
		t.Errorf("unchanged re-snapshot read %d bytes and added %d", s2.Stats.ReadBytes, s2.Stats.AddedBytes)
	}
}

// TestAddedFollowsDeletion: deleting s2 for good, whose added file s3
// keeps, makes that data s3's own; snapshot list, usage and chain all say
// so.
func TestAddedFollowsDeletion(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a"), randomData(1, 512<<10), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	os.WriteFile(filepath.Join(src, "b"), randomData(2, 512<<10), 0o644)
	e.snapshot("v", "--name", "s2")
	os.WriteFile(filepath.Join(src, "c"), randomData(3, 256<<10), 0o644)
	s3 := e.snapshot("v", "--name", "s3")
	e.ok("snapshot", "delete", "v/s2")
	e.ok("trash", "empty", "v/s2") // in the trash, s2 keeps its blocks
	const want = (512 + 256) << 10 // b and c

	var list []struct {
		Name  string `json:"name"`
		Stats struct {
			AddedBytes uint64 `json:"added_bytes"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(e.ok("snapshot", "list", "v", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	var usage struct {
		Snapshots []struct {
			Snapshot string `json:"snapshot"`
			Added    uint64 `json:"added_bytes"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(e.ok("usage", "--json")), &usage); err != nil {
		t.Fatal(err)
	}
	var chain []struct {
		Seq  uint64            `json:"seq"`
		Held map[string]uint64 `json:"held"`
	}
	if err := json.Unmarshal([]byte(e.ok("chain", "v", "--json")), &chain); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, s := range list {
		if s.Name == "s3" {
			got["snapshot list"] = s.Stats.AddedBytes
		}
	}
	for _, s := range usage.Snapshots {
		if s.Snapshot == "s3" {
			got["usage"] = s.Added
		}
	}
	for _, row := range chain {
		if row.Seq == s3.Seq {
			got["chain"] = row.Held[fmt.Sprint(s3.Seq)]
		}
	}
	for _, what := range []string{"snapshot list", "usage", "chain"} {
		if got[what] != want {
			t.Errorf("%s: s3 added %d bytes after deleting s2, want %d (all: %v)", what, got[what], want, got)
		}
	}
	if out := e.ok("snapshot", "list", "v"); !strings.Contains(out, "768.0 KiB") {
		t.Errorf("snapshot list does not show s3's 768.0 KiB:\n%s", out)
	}
}
