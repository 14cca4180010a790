package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
)

// longFile commits a snapshot of one file "disk" of n blocks of testBS,
// block i holding pattern(i) (nil: a hole). Blocks repeat, so a long list
// stores little data.
func longFile(t *testing.T, r *Repo, vol string, n int, pattern func(i int) []byte, beforeCommit ...func()) *Snapshot {
	t.Helper()
	ctx := context.Background()
	w, err := r.BeginSnapshot(ctx, vol, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blocks := make([]Hash, n)
	for i := range blocks {
		b := pattern(i)
		if b == nil {
			continue
		}
		blocks[i] = Sum(b)
		if err := w.PutBlock(ctx, blocks[i], b); err != nil {
			t.Fatal(err)
		}
	}
	e := Entry{Name: "disk", Type: TypeRegular, Mode: 0o644, Size: uint64(n * testBS), BlockSize: testBS, Nlink: 1}
	if err := e.SetBlocks(blocks, func(b []byte) (Hash, error) { return w.PutTree(ctx, b) }); err != nil {
		t.Fatal(err)
	}
	root, err := w.PutTree(ctx, EncodeTree([]Entry{e}))
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range beforeCommit {
		fn()
	}
	s, err := w.Commit(ctx, Entry{Type: TypeDir, Mode: 0o755, Subtree: root}, SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pattern(tag string) func(i int) []byte {
	return func(i int) []byte {
		if i >= ChunkBlocks && i < 2*ChunkBlocks {
			return nil // the second chunk is all hole
		}
		b := make([]byte, testBS)
		copy(b, fmt.Sprint(tag, i%97))
		return b
	}
}

// TestChunkedBlockLists: a list longer than ChunkBlocks is kept in chunks
// (a chunk of holes as nothing), reads back the same whole, by index and in
// order, and a snapshot that changes one block costs one chunk: its delta
// names two blocks, not the list.
func TestChunkedBlockLists(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	n := 3*ChunkBlocks + 5
	s1 := longFile(t, r, "v", n, pattern("a"))
	e, err := Lookup(ctx, r, &s1.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenBlocks(ctx, r, e)
	if err != nil {
		t.Fatal(err)
	}
	c, chunked := l.Chunked()
	if !chunked || len(c.Hashes) != 4 || !c.Hashes[1].IsHole() || c.ChunkLen(3) != 5 {
		t.Fatalf("chunks: %v %+v", chunked, c)
	}
	all, err := FileBlocks(ctx, r, e)
	if err != nil || len(all) != n {
		t.Fatalf("whole list: %d blocks, %v", len(all), err)
	}
	for _, i := range []int{0, ChunkBlocks - 1, ChunkBlocks, 2*ChunkBlocks + 7, n - 1} {
		h, err := l.At(ctx, i)
		want := HoleHash
		if b := pattern("a")(i); b != nil {
			want = Sum(b)
		}
		if err != nil || h != want || all[i] != want {
			t.Errorf("block %d: %s %v", i, h.Short(), err)
		}
	}

	// One block changed in the third chunk: the second snapshot's delta
	// takes out one block and puts in one, and reads only that chunk: the
	// first chunk's blob is taken away while the commit computes it.
	first, err := r.blob(context.Background(), c.Hashes[0])
	if err != nil {
		t.Fatal(err)
	}
	s2 := longFile(t, r, "v", n, func(i int) []byte {
		if i == 2*ChunkBlocks+100 {
			return block('Z')
		}
		return pattern("a")(i)
	}, func() {
		if err := r.applyWrites(context.Background(), anyMark, nil, []kv{{key: treeKey(c.Hashes[0])}}); err != nil {
			t.Fatal(err)
		}
	})
	if err := r.applyWrites(context.Background(), anyMark, nil, []kv{{key: treeKey(c.Hashes[0]), val: first}}); err != nil {
		t.Fatal(err)
	}
	if s2.Stats.AddedBlocks != 1 {
		t.Errorf("one changed block: %d blocks added", s2.Stats.AddedBlocks)
	}
	if hs := deltaOf(t, r, s2.VolumeID, s2.Seq); len(hs) != 2 {
		t.Errorf("delta of a one-block change names %d blocks", len(hs))
	}
	if p := problemsOf(t, r); len(p) > 0 {
		t.Fatalf("check: %q", p)
	}
	// Deleting the first snapshot and gc keep every chunk the second needs.
	deleteAndGC(t, r, "v", s1.Name)
	if p := problemsOf(t, r); len(p) > 0 {
		t.Fatalf("check after delete and gc: %q", p)
	}
}

// FuzzDecodeChunks: any bytes decode or fail, never panic, and what
// decodes encodes back the same.
func FuzzDecodeChunks(f *testing.F) {
	f.Add(EncodeChunks(Chunks{Blocks: 5000, Per: 4096, Hashes: []Hash{Sum([]byte("a")), HoleHash}}))
	f.Add([]byte{2, 1, 1, 1})
	f.Fuzz(func(t *testing.T, blob []byte) {
		c, err := DecodeChunks(blob)
		if err != nil {
			return
		}
		again, err := DecodeChunks(EncodeChunks(c))
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
