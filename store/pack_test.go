package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestPackCrashPoints kills a process at each step of finishing a pack
// (its bytes durable; the pack recorded; its block records written)
// while a snapshot writes one; gc's rewrite and repair finish theirs
// through the same packBuilder. The
// repository opens, checks clean with every byte read, and the next
// snapshot of the same blocks stores what it must and reads back exactly:
// no block record was left naming a pack the open removed.
func TestPackCrashPoints(t *testing.T) {
	if step := os.Getenv("CHAINFS_PACK_CRASH"); step != "" {
		r, err := Open(context.Background(), Options{Dir: os.Getenv("CHAINFS_PACK_REPO")})
		if err != nil {
			t.Fatal(err)
		}
		packCrash = func(s string) {
			if s == step {
				os.Exit(7) // as a kill: nothing more written, nothing undone
			}
		}
		snapFile(t, r, "v", block('a'), block('b'), block('c'))
		t.Fatal("the crash point was not reached")
	}
	for _, step := range []string{"durable", "recorded", "blocks"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir() + "/repo"
			r := newRepoAt(t, dir, Options{})
			if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
				t.Fatal(err)
			}
			r.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestPackCrashPoints$", "-test.count=1")
			cmd.Env = append(os.Environ(), "CHAINFS_PACK_CRASH="+step, "CHAINFS_PACK_REPO="+dir)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 7 {
				t.Fatalf("the writer did not die at %s: %v\n%s", step, err, out)
			}
			if r, err = Open(ctx, Options{Dir: dir}); err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if p := problemsOf(t, r); len(p) > 0 {
				t.Fatalf("check after a crash at %s: %q", step, p)
			}
			s := snapFile(t, r, "v", block('a'), block('b'), block('c'))
			e, err := Lookup(ctx, r, &s.RootDir, "disk")
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, testBS)
			for i, want := range [][]byte{block('a'), block('b'), block('c')} {
				if n, err := r.ReadBlock(ctx, e.Blocks[i], buf); err != nil || !bytes.Equal(buf[:n], want) {
					t.Errorf("block %d after a crash at %s: %v", i, step, err)
				}
			}
			if p := problemsOf(t, r); len(p) > 0 {
				t.Errorf("check after the next snapshot: %q", p)
			}
		})
	}
}

// TestReadsHonourTheirContext: a read asked for under a cancelled
// context ends with its error, not with the data.
func TestReadsHonourTheirContext(t *testing.T) {
	r := testRepo(t)
	if _, err := r.AddVolume(context.Background(), Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	s := snapFile(t, r, "v", block('a'))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Tree(ctx, s.RootDir.Subtree); !errors.Is(err, context.Canceled) {
		t.Errorf("Tree: %v", err)
	}
	if _, err := r.Blob(ctx, s.RootDir.Subtree); !errors.Is(err, context.Canceled) {
		t.Errorf("Blob: %v", err)
	}
	if _, err := r.ReadBlock(ctx, Sum(block('a')), make([]byte, testBS)); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadBlock: %v", err)
	}
	if _, err := r.ReadBlock(context.Background(), Sum(block('a')), make([]byte, testBS)); err != nil {
		t.Errorf("ReadBlock, not cancelled: %v", err)
	}
}

// TestPendingHoldsUnrecordedPacksOnly: a writer forgets the blocks of a
// pack once their records are written, and a block stored again after
// that is still linked, not stored twice.
func TestPendingHoldsUnrecordedPacksOnly(t *testing.T) {
	r := smallPackRepo(t) // 64 KiB packs: 16 blocks
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	put := func(c byte) {
		b := block(c)
		if err := w.PutBlock(ctx, Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 40 {
		put(byte(k))
	}
	w.finishing.Wait()
	w.mu.Lock()
	pending := len(w.pending)
	w.mu.Unlock()
	if pending != 40-32 {
		t.Errorf("%d blocks pending with two packs recorded and 8 blocks in the open one", pending)
	}
	stored := w.StoredBytes()
	put(0)  // in the first pack, recorded
	put(39) // in the open pack
	if w.StoredBytes() != stored {
		t.Errorf("a block stored again: %d bytes stored, were %d", w.StoredBytes(), stored)
	}
}

// TestConcurrentSnapshotsTakePackIDs: snapshots of several volumes at
// once each take pack ids from the same counter; a commit that conflicts
// with another's runs again instead of failing the snapshot.
func TestConcurrentSnapshotsTakePackIDs(t *testing.T) {
	r := smallPackRepo(t) // 64 KiB packs: a new pack every 16 blocks
	ctx := context.Background()
	const vols = 3
	for v := range vols {
		r.AddVolume(ctx, Volume{Name: fmt.Sprint("v", v), Source: "/nowhere", BlockSize: testBS})
	}
	errs := make(chan error, vols)
	for v := range vols {
		go func() {
			w, err := r.BeginSnapshot(ctx, fmt.Sprint("v", v), SnapshotOptions{})
			if err != nil {
				errs <- err
				return
			}
			e := Entry{Name: "disk", Type: TypeRegular, Mode: 0o644, BlockSize: testBS, Nlink: 1}
			for k := range 400 {
				b := make([]byte, testBS)
				binary.LittleEndian.PutUint64(b, uint64(v<<32|k))
				if err := w.PutBlock(ctx, Sum(b), b); err != nil {
					w.Abort()
					errs <- err
					return
				}
				e.Blocks = append(e.Blocks, Sum(b))
				e.Size += testBS
			}
			root, err := w.PutTree(ctx, EncodeTree([]Entry{e}))
			if err == nil {
				_, err = w.Commit(ctx, Entry{Type: TypeDir, Mode: 0o755, Subtree: root}, SnapshotStats{})
			}
			errs <- err
		}()
	}
	for range vols {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if p := problemsOf(t, r); len(p) > 0 {
		t.Errorf("check: %q", p)
	}
}
