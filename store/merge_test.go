package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestMergeLevel(t *testing.T) {
	const limit = 2 << 20
	for _, c := range []struct {
		size  uint64
		level int
	}{{limit - 1, 0}, {limit / 16, 0}, {limit/16 - 1, 1}, {limit / 256, 1}, {4 << 10, 2}, {1, 5}, {0, 5}} {
		if got := mergeLevel(c.size, limit); got != c.level {
			t.Errorf("mergeLevel(%d) = %d, want %d", c.size, got, c.level)
		}
	}
}

// TestMergeKeepsChainsFlat: a long chain of one-block snapshots, merged
// whenever a merge is due, as the daemon does: few packs at any time,
// every byte rewritten a bounded number of times, the newest file in few
// packs, and every snapshot whole.
func TestMergeKeepsChainsFlat(t *testing.T) {
	// 16 MiB packs: small below 2 MiB; a one-block pack is level 2,
	// sixteen of them make a level 1 pack, sixteen of those a level 0.
	r := newRepoAt(t, t.TempDir()+"/repo", Options{PackSize: 16 << 20})
	t.Cleanup(func() { r.Close() })
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	file := make([][]byte, 256)
	for i := range file {
		file[i] = block(byte(i))
	}
	var snaps []*Snapshot
	var moved, merges uint64
	const depth = 520
	for k := range depth {
		if k > 0 {
			b := make([]byte, testBS)
			copy(b, fmt.Sprint(k))
			file[k%len(file)] = b
		}
		snaps = append(snaps, snapFile(t, r, "v", file...))
		due, err := r.MergeDue(false)
		if err != nil {
			t.Fatal(err)
		}
		if !due {
			continue
		}
		st, err := r.MergeSmallPacks(ctx, false)
		if err != nil {
			t.Fatalf("merge after snapshot %d: %v", k, err)
		}
		moved += st.BytesMoved
		merges++
		if due, _ := r.MergeDue(false); due {
			t.Fatalf("a merge is still due after one after snapshot %d", k)
		}
	}
	ids, _ := r.blocks.List(ctx)
	written := uint64(len(file)+depth-1) * testBS
	t.Logf("%d merges, %d packs left, %d bytes moved for %d written", merges, len(ids), moved, written)
	// At most fifteen packs a level, and the first snapshot's pack.
	if len(ids) > 3*(mergeFanIn-1)+1 {
		t.Errorf("%d packs after %d snapshots", len(ids), depth)
	}
	// About once a level: three levels.
	if moved > 3*written {
		t.Errorf("%d bytes moved for %d written", moved, written)
	}
	// Unmerged, the newest file's blocks would lie in 256 packs, one a
	// snapshot. Merged, in at most fifteen one-block packs and a few of
	// each level above; once the chain settles, the smallest are merged
	// too.
	last := snaps[len(snaps)-1]
	if n := packsOf(t, r, last); n > 40 {
		t.Errorf("the newest file lies in %d packs", n)
	}
	if _, err := r.MergeSmallPacks(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := packsOf(t, r, last); n > 4 {
		t.Errorf("once settled, the newest file lies in %d packs", n)
	}
	readEvery(t, r, snaps)
	if p := problemsOf(t, r); len(p) != 0 {
		t.Errorf("check: %q", p)
	}
}

// TestMergeGivesWay: a merge does not start while a snapshot runs; one
// that starts while it copies stops it, and the merge leaves every block
// where it was; the next merge does it all.
func TestMergeGivesWay(t *testing.T) {
	// 64 KiB packs: one-block packs are small, sixteen blocks fill one.
	r := smallPackRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	var snaps []*Snapshot
	var blocks [][]byte
	for k := range 3 * mergeFanIn {
		blocks = append(blocks, block(byte('0'+k)))
		snaps = append(snaps, snapFile(t, r, "v", blocks...))
	}
	if due, err := r.MergeDue(false); !due || err != nil {
		t.Fatalf("no merge due after %d one-block snapshots: %v", 3*mergeFanIn, err)
	}
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.MergeSmallPacks(ctx, false); !errors.Is(err, ErrBusy) {
		t.Errorf("merge while a snapshot runs: %v", err)
	}
	w.Abort()

	// Once the merge's first pack is durable (it goes on copying), or its
	// last is recorded (records are about to move), a snapshot begins.
	for _, at := range []struct {
		step string
		n    int
	}{{"durable", 1}, {"recorded", 3}} {
		before, _ := r.blocks.List(ctx)
		began := make(chan error, 1)
		seen := 0
		packCrash = func(step string) {
			if step != at.step {
				return
			}
			if seen++; seen != at.n {
				return
			}
			go func() {
				w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
				if err == nil {
					w.Abort()
				}
				began <- err
			}()
			for {
				r.gcMu.mu.Lock()
				wanting := r.gcMu.wanting
				r.gcMu.mu.Unlock()
				if wanting > 0 {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
		_, err := r.MergeSmallPacks(ctx, false)
		packCrash = nil
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("merge a snapshot interrupted at pack %d %s: %v", at.n, at.step, err)
		}
		select {
		case err := <-began:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the snapshot did not begin once the merge stopped")
		}
		if after, _ := r.blocks.List(ctx); !slices.Equal(after, before) {
			t.Errorf("packs after a merge interrupted at pack %d %s: %v, before %v", at.n, at.step, after, before)
		}
	}
	defer func() { packCrash = nil }()
	readEvery(t, r, snaps)
	st, err := r.MergeSmallPacks(ctx, false)
	if err != nil || st.PacksRepacked != 3*mergeFanIn {
		t.Fatalf("merge: %+v %v", st, err)
	}
	if after, _ := r.blocks.List(ctx); len(after) != 3 {
		t.Errorf("%d packs after the merge, want 3", len(after))
	}
	readEvery(t, r, snaps)
	if p := problemsOf(t, r); len(p) != 0 {
		t.Errorf("check: %q", p)
	}
}

// packsOf counts the packs that hold the blocks of s's file "disk".
func packsOf(t *testing.T, r *Repo, s *Snapshot) int {
	t.Helper()
	e, err := Lookup(context.Background(), r, &s.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	in := map[uint64]bool{}
	for _, h := range e.Blocks {
		rec, err := r.blockRecord(h)
		if err != nil {
			t.Fatal(err)
		}
		in[rec.Pack] = true
	}
	t.Logf("the newest file lies in %d packs", len(in))
	return len(in)
}

// TestMergeLeavesDamagedPacks: a merge that meets a damaged block leaves
// it and its pack in place, moves the rest, and ends; the pack is not
// planned again, so merges do not copy its healthy blocks over and over.
func TestMergeLeavesDamagedPacks(t *testing.T) {
	r := newRepoAt(t, t.TempDir()+"/repo", Options{PackSize: 16 << 20})
	t.Cleanup(func() { r.Close() })
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	var snaps []*Snapshot
	var blocks [][]byte
	for k := range mergeTail {
		blocks = append(blocks, block(byte('A'+k)))
		snaps = append(snaps, snapFile(t, r, "v", blocks...))
	}
	packs, _ := filepath.Glob(filepath.Join(r.Info().Dir, "packs", "*.pack"))
	first := slices.Min(packs) // block A's
	f, _ := os.OpenFile(first, os.O_RDWR, 0)
	f.WriteAt([]byte{'!'}, 10)
	f.Close()
	st, err := r.MergeSmallPacks(ctx, true)
	if err != nil || st.PacksKept != 1 || st.PacksRepacked != mergeTail-1 {
		t.Fatalf("merge: %+v %v", st, err)
	}
	if _, err := os.Stat(first); err != nil {
		t.Errorf("the damaged pack went: %v", err)
	}
	if due, _ := r.MergeDue(true); due {
		t.Error("a merge is due again after the damaged pack was left")
	}
	buf := make([]byte, testBS)
	e, _ := Lookup(ctx, r, &snaps[len(snaps)-1].RootDir, "disk")
	for i, h := range e.Blocks {
		if _, err := r.ReadBlock(ctx, h, buf); (i == 0) != errors.Is(err, ErrCorrupt) {
			t.Errorf("block %d after the merge: %v", i, err)
		}
	}
	if p := problemsOf(t, r); len(p) != len(snaps) { // block A, in each snapshot
		t.Errorf("check after the merge: %q", p)
	}
}

// TestMergeDropsWhatItBegan: packs with nothing live are dropped whole,
// records and files, even when the merge is cancelled between two: a
// pack whose record went and whose file stayed would stay for good in an
// object store.
func TestMergeDropsWhatItBegan(t *testing.T) {
	r := newRepoAt(t, t.TempDir()+"/repo", Options{PackSize: 16 << 20})
	t.Cleanup(func() { r.Close() })
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	s1 := snapFile(t, r, "v", block('A'))
	s2 := snapFile(t, r, "v", block('B'))
	snapFile(t, r, "v", block('C'))
	for _, s := range []*Snapshot{s1, s2} {
		if err := r.DeleteSnapshot(ctx, "v", s.Name); err != nil {
			t.Fatal(err)
		}
	}
	sizes, _ := r.packSizes()
	plan := map[uint64]uint64{}
	r.scanBlocks(func(_ Hash, rec blockRecord) error {
		if rec.Refs == 0 {
			plan[rec.Pack] = sizes[rec.Pack]
		}
		return nil
	})
	if len(plan) != 2 {
		t.Fatalf("%d dead packs, want 2", len(plan))
	}
	c := &cancelAfter{Context: ctx}
	c.left.Store(2) // cancelled after the first pack's records
	r.mergePacks(c, plan, &GCStats{})
	files, _ := r.blocks.List(ctx)
	recorded, _ := r.packSizes()
	if len(files) != 1 || len(recorded) != 1 {
		t.Errorf("%d pack files and %d pack records after dropping two of three", len(files), len(recorded))
	}
}
