package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestGCFreesOnlyUnreferenced: after deleting a snapshot, gc frees the
// blocks and trees only it had, keeps everything else readable, and
// repacks a pack that became mostly dead.
func TestGCFreesOnlyUnreferenced(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	A, B, C, D := block('A'), block('B'), block('C'), block('D')
	s1 := snapFile(t, r, "v", A, B, C, D) // one pack: A B C D
	s2 := snapFile(t, r, "v", A, block('x'), block('y'), block('z'))
	if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatal(err)
	}
	st, err := r.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// B, C, D were only in s1: freed; A lives on in s2, so s1's pack (1 of
	// 4 blocks live) is rewritten, and s2's small pack with it: one pack.
	if st.BlocksFreed != 3 || st.BytesFreed != 3*testBS || st.PacksRepacked != 2 || st.TreesFreed == 0 {
		t.Errorf("gc stats %+v", st)
	}
	for _, b := range [][]byte{B, C, D} {
		if ok, _ := r.hasBlock(Sum(b)); ok {
			t.Errorf("block %c survived gc", b[0])
		}
	}
	e, err := Lookup(ctx, r, &s2.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, testBS)
	for i, h := range e.Blocks {
		if _, err := r.ReadBlock(ctx, h, buf); err != nil {
			t.Errorf("block %d of the surviving snapshot: %v", i, err)
		}
	}
	wantHolders(t, r, s2, 2, 2, 2, 2)
	if ids, _ := r.blocks.List(context.Background()); len(ids) != 1 {
		t.Errorf("%d packs after gc, want 1", len(ids))
	}
	// A second gc has nothing to do; a new snapshot links A again.
	if st, _ := r.GC(ctx); st.BlocksFreed != 0 || st.PacksRepacked != 0 || st.PacksRemoved != 0 {
		t.Errorf("second gc %+v", st)
	}
	s3 := snapFile(t, r, "v", A, B)
	wantHolders(t, r, s3, 2, 3)
}

// TestGCWaitsForSnapshots: gc does not run while a snapshot is being made.
func TestGCWaitsForSnapshots(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.GC(ctx); close(done) }()
	// Long enough for a gc of an empty repository to finish many times over.
	select {
	case <-done:
		t.Fatal("gc ran during a snapshot")
	case <-time.After(300 * time.Millisecond):
	}
	w.Abort()
	<-done
}

// TestGCMergesSmallPacks: a chain of small snapshots leaves a pack each;
// gc merges them into one, the newest snapshot's file laid out in order,
// everything still readable, and a second gc leaves it alone.
func TestGCMergesSmallPacks(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	file := [][]byte{block('a'), block('b'), block('c'), block('d'), block('e'), block('f')}
	var snaps []*Snapshot
	for k := 0; k < 20; k++ {
		// Each snapshot rewrites one block, from the end backwards, so
		// the old packs hold the newest file in reverse.
		i := len(file) - 1 - k%len(file)
		file[i] = block(byte('A' + k))
		snaps = append(snaps, snapFile(t, r, "v", file...))
	}
	if ids, _ := r.blocks.List(context.Background()); len(ids) != 20 {
		t.Fatalf("%d packs before gc, want 20", len(ids))
	}
	// Read before gc too: the places remembered then go stale when gc
	// moves the blocks and removes their packs, and must not fail a read.
	readEvery(t, r, snaps)
	st, err := r.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := r.blocks.List(context.Background()); len(ids) != 1 || st.PacksRepacked != 20 || st.BlocksFreed != 0 {
		t.Fatalf("after gc: %d packs, stats %+v", len(ids), st)
	}
	last := snaps[len(snaps)-1]
	e, err := Lookup(ctx, r, &last.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	prev := int64(-1)
	for i, h := range e.Blocks {
		rec, err := r.blockRecord(h)
		if err != nil {
			t.Fatal(err)
		}
		if int64(rec.Offset) <= prev {
			t.Errorf("block %d of the newest file at %d, before block %d's %d", i, rec.Offset, i-1, prev)
		}
		prev = int64(rec.Offset)
	}
	readEvery(t, r, snaps)
	if st, _ := r.GC(ctx); st.PacksRepacked != 0 {
		t.Errorf("second gc rewrote %d packs", st.PacksRepacked)
	}
}

// TestRepackStopsWhenCancelled: a rewrite cancelled while it copies
// removes the packs it made (two finished, one open) and leaves every
// block where it was; the next gc does the whole rewrite.
func TestRepackStopsWhenCancelled(t *testing.T) {
	r := smallPackRepo(t) // 64 KiB packs: 16 blocks
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	// Each snapshot adds one block to the file: 48 packs of one block,
	// all small, all live.
	var snaps []*Snapshot
	var blocks [][]byte
	for k := range 48 {
		blocks = append(blocks, block(byte('0'+k)))
		snaps = append(snaps, snapFile(t, r, "v", blocks...))
	}
	before, _ := r.blocks.List(context.Background())
	rewrite, order, err := r.planRepack(ctx, nil, &GCStats{})
	if err != nil || len(rewrite) != len(before) || len(order) != 48 {
		t.Fatalf("plan: %d packs of %d, %d blocks, %v", len(rewrite), len(before), len(order), err)
	}
	st := &GCStats{}
	cctx := &cancelAfter{Context: ctx}
	cctx.left.Store(35)
	if err := r.repack(cctx, nil, rewrite, order, st); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled repack: %v", err)
	}
	if after, _ := r.blocks.List(context.Background()); !slices.Equal(after, before) || st.PacksRepacked != 0 || st.BytesMoved != 0 {
		t.Errorf("after a cancelled repack: packs %v (were %v), stats %+v", after, before, st)
	}
	readEvery(t, r, snaps)
	if p := problemsOf(t, r); len(p) != 0 {
		t.Errorf("check: %q", p)
	}
	if st, err := r.GC(ctx); err != nil || st.PacksRepacked != uint64(len(before)) {
		t.Errorf("gc after: %+v %v", st, err)
	}
	readEvery(t, r, snaps)
}

// cancelAfter is a context whose Err is nil for its first left calls and
// context.Canceled after: repack asks once per block.
type cancelAfter struct {
	context.Context
	left atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestGCLeavesDamagedBlocks: a rewrite that meets a block failing its hash
// leaves that block and its pack where they are, moves the rest, and
// succeeds; the damage stays where check finds it, and every healthy block
// still reads.
func TestGCLeavesDamagedBlocks(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	A, B, C, D := block('A'), block('B'), block('C'), block('D')
	s1 := snapFile(t, r, "v", A, B, C, D) // one pack: A B C D
	s2 := snapFile(t, r, "v", A, B, block('x'), block('y'))
	packs, _ := filepath.Glob(filepath.Join(r.Info().Dir, "packs", "*.pack"))
	if len(packs) != 2 {
		t.Fatalf("%d packs, want 2", len(packs))
	}
	first := slices.Min(packs) // s1's pack: A B C D
	f, _ := os.OpenFile(first, os.O_RDWR, 0)
	f.WriteAt([]byte{'!'}, 10) // in block A
	f.Close()
	if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatal(err)
	}
	st, err := r.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksKept != 1 || st.BlocksFreed != 2 {
		t.Errorf("gc stats %+v", st)
	}
	if _, err := os.Stat(first); err != nil {
		t.Errorf("the damaged pack went: %v", err)
	}
	buf := make([]byte, testBS)
	e, _ := Lookup(ctx, r, &s2.RootDir, "disk")
	for i, h := range e.Blocks {
		_, err := r.ReadBlock(ctx, h, buf)
		if wantBad := i == 0; wantBad != errors.Is(err, ErrCorrupt) {
			t.Errorf("block %d after gc: %v", i, err)
		}
	}
	if p := problemsOf(t, r); len(p) != 1 {
		t.Errorf("check after gc: %q", p)
	}
	// Another gc meets the same block and leaves it again.
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
}

// readEvery reads every block of the file "disk" in each snapshot.
func readEvery(t *testing.T, r *Repo, snaps []*Snapshot) {
	t.Helper()
	ctx := context.Background()
	buf := make([]byte, testBS)
	for _, s := range snaps {
		se, err := Lookup(ctx, r, &s.RootDir, "disk")
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range se.Blocks {
			if _, err := r.ReadBlock(ctx, h, buf); err != nil {
				t.Errorf("snapshot %s block %d: %v", s.Name, i, err)
			}
		}
	}
}
