package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// walkTree commits a snapshot whose root holds a/ and b/ (one tree,
// holding the file f), the file g, and c/, whose tree is then lost.
func walkTree(t *testing.T) (*Repo, *Snapshot) {
	t.Helper()
	r := testRepo(t)
	ctx := context.Background()
	if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"}); err != nil {
		t.Fatal(err)
	}
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string, b []byte) Entry {
		h := Sum(b)
		if err := w.PutBlock(ctx, h, b); err != nil {
			t.Fatal(err)
		}
		return Entry{Name: name, Type: TypeRegular, Mode: 0o644, Size: testBS, BlockSize: testBS, Nlink: 1, Blocks: []Hash{h}}
	}
	tree := func(es ...Entry) Hash {
		h, err := w.PutTree(ctx, EncodeTree(es))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	sub := tree(file("f", block('F')))
	lost := tree(file("x", block('X')))
	root := tree(
		Entry{Name: "a", Type: TypeDir, Mode: 0o755, Subtree: sub},
		Entry{Name: "b", Type: TypeDir, Mode: 0o755, Subtree: sub},
		Entry{Name: "c", Type: TypeDir, Mode: 0o755, Subtree: lost},
		file("g", block('G')),
	)
	s, err := w.Commit(ctx, Entry{Type: TypeDir, Mode: 0o755, Subtree: root}, SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.applyWrites(context.Background(), anyMark, nil, []kv{{key: treeKey(lost)}}); err != nil {
		t.Fatal(err)
	}
	return r, s
}

func TestWalk(t *testing.T) {
	r, s := walkTree(t)
	ctx := context.Background()
	var visited []string
	visitor := func(once bool) TreeVisitor {
		return TreeVisitor{
			Once: once,
			Dir: func(path string, _ Hash, entries []Entry, err error) error {
				if err != nil {
					visited = append(visited, "unreadable "+path)
					return nil
				}
				visited = append(visited, path+"/")
				return nil
			},
			File: func(dir string, e *Entry) error {
				visited = append(visited, dir+"/"+e.Name)
				return nil
			},
		}
	}

	// Every path, and the unreadable directory reported, not fatal.
	if err := NewWalk(r, visitor(false)).Walk(ctx, s.Root); err != nil {
		t.Fatal(err)
	}
	want := []string{"/", "/a/", "/a/f", "/b/", "/b/f", "unreadable /c", "/g"}
	if !slices.Equal(visited, want) {
		t.Errorf("every path: %q, want %q", visited, want)
	}

	// Once: b/ holds a/'s tree and is not entered; a second root already
	// walked is not entered either.
	visited = nil
	w := NewWalk(r, visitor(true))
	for range 2 {
		if err := w.Walk(ctx, s.Root); err != nil {
			t.Fatal(err)
		}
	}
	want = []string{"/", "/a/", "/a/f", "unreadable /c", "/g"}
	if !slices.Equal(visited, want) {
		t.Errorf("Once: %q, want %q", visited, want)
	}

	// Without a dir func an unreadable directory ends the walk, named.
	err := NewWalk(r, TreeVisitor{}).Walk(ctx, s.Root)
	if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) || err == nil {
		t.Errorf("walk over a lost tree: %v", err)
	}
	if err != nil && !strings.Contains(err.Error(), "directory /c/") {
		t.Errorf("error does not name the directory: %v", err)
	}

	// A visitor's error ends the walk; so does a cancelled context.
	stop := errors.New("stop")
	if err := NewWalk(r, TreeVisitor{File: func(string, *Entry) error { return stop }}).Walk(ctx, s.Root); err != stop {
		t.Errorf("visitor's error: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := NewWalk(r, visitor(false)).Walk(cctx, s.Root); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk: %v", err)
	}
}
