package report

import (
	"context"
	"errors"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/storetest"
)

// TestVersions: a file's distinct versions across snapshots, each once,
// named after the earliest snapshot holding it, with what changed; a
// version that comes back is not listed again; snapshots whose directory
// on the way did not change are not read.
func TestVersions(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	// A snapshot of a/b/f (content c, mode m) beside a/other (content o).
	snap := func(name string, c byte, mode uint32, o byte, withF bool) *store.Snapshot {
		return storetest.Commit(t, r, "v", store.SnapshotOptions{Name: name}, func(w storetest.Writer) []store.Entry {
			var inB []store.Entry
			if withF {
				f := storetest.PutFile(t, w, "f", block(c))
				f.Mode = mode
				inB = append(inB, f)
			}
			b := storetest.PutRoot(t, w, inB...)
			b.Name = "b"
			a := storetest.PutRoot(t, w, b, storetest.PutFile(t, w, "other", block(o)))
			a.Name = "a"
			return []store.Entry{a}
		})
	}
	snap("s1", 'x', 0o644, '1', true)
	snap("s2", 'x', 0o644, '2', true) // only a/other changed
	snap("s3", 'y', 0o644, '2', true) // content
	snap("s4", 'y', 0o600, '2', true) // mode
	snap("s5", 'y', 0o600, '2', false)
	snap("s6", 'x', 0o644, '3', true) // s1's version again
	snaps, err := r.Snapshots(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := Versions(ctx, r, snaps, "/a/b/f")
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		snap, change string
		n            int
	}
	want := []got{{"s1", "added", 3}, {"s3", "content", 1}, {"s4", "metadata", 1}}
	if len(vs) != len(want) {
		t.Fatalf("%d versions: %+v", len(vs), vs)
	}
	for i, w := range want {
		if g := (got{vs[i].Snapshot, vs[i].Change, vs[i].Snapshots}); g != w {
			t.Errorf("version %d: %+v, want %+v", i, g, w)
		}
	}
	if vs[1].Entry.Mode != 0o644 || vs[2].Entry.Mode != 0o600 {
		t.Errorf("modes %o, %o", vs[1].Entry.Mode, vs[2].Entry.Mode)
	}
	if _, err := Versions(ctx, r, snaps, "a/b"); !errors.Is(err, ErrIsDirectory) {
		t.Errorf("versions of a directory: %v", err)
	}
	// A file where a directory was: its versions, the directory none.
	storetest.Commit(t, r, "v", store.SnapshotOptions{Name: "s7"}, func(w storetest.Writer) []store.Entry {
		a := storetest.PutFile(t, w, "a", block('z'))
		return []store.Entry{a}
	})
	all, _ := r.Snapshots(ctx, "v")
	if vs, err := Versions(ctx, r, all, "a"); err != nil || len(vs) != 1 || vs[0].Snapshot != "s7" || vs[0].Change != "added" {
		t.Errorf("a file where a directory was: %+v, %v", vs, err)
	}
	if _, err := Versions(ctx, r, snaps, "a/nothing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("versions of nothing: %v", err)
	}

	// Only the trees that changed are read: s2's a/b is s1's.
	counting := &countingReader{Reader: r}
	if _, err := Versions(ctx, counting, snaps[:2], "a/b/f"); err != nil {
		t.Fatal(err)
	}
	if counting.trees != 3+2 { // s1: the top, a, a/b; s2: the top, a
		t.Errorf("read %d trees for two snapshots; want 5", counting.trees)
	}
}

// countingReader counts the trees read through it.
type countingReader struct {
	store.Reader
	trees int
}

func (c *countingReader) Tree(ctx context.Context, h store.Hash) ([]store.Entry, error) {
	c.trees++
	return c.Reader.Tree(ctx, h)
}
