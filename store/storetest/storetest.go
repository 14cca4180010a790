// Package storetest makes repositories and snapshots for the tests of the
// packages built on the store: a repository in a temporary directory, a
// snapshot of one file, blocks and trees stored through a writer. (The
// store's own tests cannot import it: it imports the store.)
package storetest

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/chainfs/chainfs/store"
)

// BlockSize is the block size of the volumes and files made here.
const BlockSize = store.MinBlockSize

// Repo makes a repository in a temporary directory with the volumes vols,
// and opens it; it is closed when the test ends.
func Repo(t testing.TB, vols ...store.Volume) *store.Repo {
	t.Helper()
	return RepoWith(t, store.Options{}, vols...)
}

// RepoWith is Repo with options for Init (a region, say); opts.Dir, when
// empty, is a new temporary directory, and compression is off unless
// opts names one.
func RepoWith(t testing.TB, opts store.Options, vols ...store.Volume) *store.Repo {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "repo")
	}
	if opts.Compression == "" {
		// Blocks of one repeated byte would shrink to nothing, and sizes
		// would not be the blocks' own.
		opts.Compression = store.CompressionOff
	}
	if _, err := store.Init(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	r, err := store.Open(context.Background(), store.Options{Dir: opts.Dir, Password: opts.Password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, v := range vols {
		if _, err := r.AddVolume(context.Background(), v); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// Block is a block of BlockSize bytes, all c.
func Block(c byte) []byte { return bytes.Repeat([]byte{c}, BlockSize) }

// Writer stores blocks and trees: a snapshot's or an image's writer.
type Writer interface {
	PutBlock(ctx context.Context, h store.Hash, data []byte) error
	PutTree(ctx context.Context, blob []byte) (store.Hash, error)
	// Sum names bytes as the repository does.
	Sum(b []byte) store.Hash
}

// PutFile stores blocks of BlockSize through w and returns the entry of a
// regular file called name that holds them; a nil block is a hole. A
// long list is chunked as a snapshot's would be.
func PutFile(t testing.TB, w Writer, name string, blocks ...[]byte) store.Entry {
	t.Helper()
	ctx := context.Background()
	hs := make([]store.Hash, len(blocks))
	for i, b := range blocks {
		if b == nil {
			continue
		}
		hs[i] = w.Sum(b)
		if err := w.PutBlock(ctx, hs[i], b); err != nil {
			t.Fatal(err)
		}
	}
	e := store.Entry{Name: name, Type: store.TypeRegular, Mode: 0o644, Size: uint64(len(blocks) * BlockSize), BlockSize: BlockSize, Nlink: 1}
	if err := e.SetBlocks(hs, func(b []byte) (store.Hash, error) { return w.PutTree(ctx, b) }); err != nil {
		t.Fatal(err)
	}
	return e
}

// PutRoot stores a tree of entries through w and returns the directory
// entry whose subtree it is: what a commit takes as its root.
func PutRoot(t testing.TB, w Writer, entries ...store.Entry) store.Entry {
	t.Helper()
	h, err := w.PutTree(context.Background(), store.EncodeTree(entries))
	if err != nil {
		t.Fatal(err)
	}
	return store.Entry{Type: store.TypeDir, Mode: 0o755, Subtree: h}
}

// Commit begins a snapshot of volume with opts, stores the entries tree
// makes through its writer as the root, and commits it.
func Commit(t testing.TB, r *store.Repo, volume string, opts store.SnapshotOptions, tree func(w Writer) []store.Entry) *store.Snapshot {
	t.Helper()
	ctx := context.Background()
	w, err := r.BeginSnapshot(ctx, volume, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := w.Commit(ctx, PutRoot(t, w, tree(w)...), store.SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FileSnapshot commits a snapshot of volume whose tree is one file,
// "disk", made of blocks (nil: a hole).
func FileSnapshot(t testing.TB, r *store.Repo, volume string, blocks ...[]byte) *store.Snapshot {
	t.Helper()
	return Commit(t, r, volume, store.SnapshotOptions{}, func(w Writer) []store.Entry {
		return []store.Entry{PutFile(t, w, "disk", blocks...)}
	})
}
