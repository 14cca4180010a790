package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// testRepo makes a repository in a temporary directory.
func testRepo(t testing.TB) *Repo {
	t.Helper()
	r := newRepoAt(t, t.TempDir()+"/repo", Options{})
	t.Cleanup(func() { r.Close() })
	return r
}

// newRepoAt makes a repository in dir and opens it with opts (its Dir
// set); the caller closes it.
func newRepoAt(t testing.TB, dir string, opts Options) *Repo {
	t.Helper()
	// Compression off: the tests' blocks of one repeated byte would shrink
	// to nothing (codec_test.go tests compression).
	if _, err := Init(context.Background(), Options{Dir: dir, Compression: CompressionOff}); err != nil {
		t.Fatal(err)
	}
	opts.Dir = dir
	r, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// problemsOf is what check would find, as the store sees it: its metadata
// tables, packs and reference counts (Index.PackProblems, RefProblems),
// and every block of every snapshot and image read back, with a chain run
// covering it. (store/check cannot be imported by the store's own tests.)
func problemsOf(t testing.TB, r *Repo) []string {
	t.Helper()
	ctx := context.Background()
	x := r.Index()
	var out []string
	if err := x.VerifyMetadata(); err != nil {
		out = append(out, err.Error())
	}
	buf := make([]byte, MaxBlockSize)
	err := x.EachVolume(ctx, func(v *Volume, snaps []Snapshot) error {
		for _, s := range snaps {
			where := v.Name + "/" + s.Name
			err := NewWalk(r, TreeVisitor{
				Dir: func(path string, _ Hash, _ []Entry, err error) error {
					if err != nil {
						out = append(out, fmt.Sprintf("%s%s/: %v", where, path, err))
					}
					return nil
				},
				File: func(dir string, e *Entry) error {
					l, err := OpenBlocks(ctx, r, e)
					if err != nil {
						out = append(out, fmt.Sprintf("%s%s/%s: %v", where, dir, e.Name, err))
						return nil
					}
					return l.Each(ctx, func(i int, h Hash) error {
						if h.IsHole() {
							return nil
						}
						if _, err := x.ReadRecorded(ctx, h, buf); err != nil {
							out = append(out, fmt.Sprintf("%s%s/%s: block %d: %v", where, dir, e.Name, i, err))
						} else if _, err := x.Holder(ctx, v.ID, s.Seq, h); err != nil {
							out = append(out, fmt.Sprintf("%s%s/%s: block %d: no chain run", where, dir, e.Name, i))
						}
						return nil
					})
				},
			}).Walk(ctx, s.Root)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	packs, err := x.PackProblems(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := x.RefProblems(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names, err := x.NameProblems(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(append(out, packs...), refs...), names...)
}

const testBS = MinBlockSize

// block returns a block of testBS bytes filled with c.
func block(c byte) []byte { return bytes.Repeat([]byte{c}, testBS) }

// snapFile commits a snapshot whose tree is one file "disk" made of blocks.
func snapFile(t testing.TB, r *Repo, vol string, blocks ...[]byte) *Snapshot {
	t.Helper()
	ctx := context.Background()
	w, err := r.BeginSnapshot(ctx, vol, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return commitTop(t, w, []Entry{putFile(t, w, "disk", blocks)})
}

// commitTop commits w with entries as its top directory.
func commitTop(t testing.TB, w *SnapshotWriter, entries []Entry) *Snapshot {
	t.Helper()
	ctx := context.Background()
	root, err := w.PutTree(ctx, EncodeTree(entries))
	if err != nil {
		t.Fatal(err)
	}
	s, err := w.Commit(ctx, Entry{Type: TypeDir, Mode: 0o755, Subtree: root}, SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// putFile stores blocks through w and returns a file entry named name
// made of them.
func putFile(t testing.TB, w *SnapshotWriter, name string, blocks [][]byte) Entry {
	t.Helper()
	e := Entry{Name: name, Type: TypeRegular, Mode: 0o644, Size: uint64(len(blocks) * testBS), BlockSize: testBS, Nlink: 1}
	for _, b := range blocks {
		h := w.Sum(b)
		if err := w.PutBlock(context.Background(), h, b); err != nil {
			t.Fatal(err)
		}
		e.Blocks = append(e.Blocks, h)
	}
	return e
}

func wantHolders(t *testing.T, r *Repo, s *Snapshot, want ...uint64) {
	t.Helper()
	e, err := Lookup(context.Background(), r, &s.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range e.Blocks {
		got, err := r.Index().Holder(context.Background(), s.VolumeID, s.Seq, h)
		if err != nil {
			t.Fatalf("snapshot %d block %d: %v", s.Seq, i, err)
		}
		if got != want[i] {
			t.Errorf("snapshot %d block %d: held by snapshot %d, want %d", s.Seq, i, got, want[i])
		}
	}
}

// TestSpecChainExample reproduces the A B C D example of docs/design.md.
func TestSpecChainExample(t *testing.T) {
	r := testRepo(t)
	if _, err := r.AddVolume(context.Background(), Volume{Name: "v", Source: "/nowhere"}); err != nil {
		t.Fatal(err)
	}
	A, B, C, D := block('A'), block('B'), block('C'), block('D')
	B1, C1, B2 := block('b'), block('c'), block('2')

	s1 := snapFile(t, r, "v", A, B, C, D)
	s2 := snapFile(t, r, "v", A, B1, C1, D)
	s3 := snapFile(t, r, "v", A, B2, C1, D)

	wantHolders(t, r, s1, 1, 1, 1, 1)
	wantHolders(t, r, s2, 1, 2, 2, 1)
	wantHolders(t, r, s3, 1, 3, 2, 1)

	for _, c := range []struct {
		s           *Snapshot
		added, blks uint64
	}{{s1, 4 * testBS, 4}, {s2, 2 * testBS, 2}, {s3, testBS, 1}} {
		if c.s.Stats.AddedBytes != c.added || c.s.Stats.AddedBlocks != c.blks {
			t.Errorf("snapshot %d added %d bytes in %d blocks, want %d in %d", c.s.Seq, c.s.Stats.AddedBytes, c.s.Stats.AddedBlocks, c.added, c.blks)
		}
	}
	if s2.Stats.StoredBytes != 2*testBS || s3.Stats.StoredBytes != testBS {
		t.Errorf("stored %d and %d bytes, want %d and %d", s2.Stats.StoredBytes, s3.Stats.StoredBytes, 2*testBS, testBS)
	}
	// Every block of every snapshot reads back exact.
	buf := make([]byte, testBS)
	for _, s := range []*Snapshot{s1, s2, s3} {
		e, _ := Lookup(context.Background(), r, &s.RootDir, "disk")
		for i, h := range e.Blocks {
			if _, err := r.ReadBlock(context.Background(), h, buf); err != nil || Sum(buf) != h {
				t.Errorf("snapshot %d block %d: %v", s.Seq, i, err)
			}
		}
	}
	// B is dropped at 2 and comes back at 4: a new run, held by 4.
	s4 := snapFile(t, r, "v", A, B, C1, D)
	wantHolders(t, r, s4, 1, 4, 2, 1)
	if _, err := r.Index().Holder(context.Background(), s4.VolumeID, 3, Sum(B)); !errors.Is(err, ErrNotFound) {
		t.Errorf("block B in snapshot 3: %v, want not found", err)
	}
}

// TestUndoInterruptedCommit applies a delta, then undoes it as Open would
// after a crash, and checks the chain is as before.
func TestUndoInterruptedCommit(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	v, _ := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	A, B, C := block('A'), block('B'), block('C')
	s1 := snapFile(t, r, "v", A, B)
	before := dumpPrefix(t, r, []byte{prefixInterval})
	refsBefore := dumpPrefix(t, r, []byte{prefixBlock})

	// Store C as a snapshot would, then apply seq 2's delta without
	// committing it: B goes, C comes.
	w, _ := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
	w.PutBlock(ctx, Sum(C), C)
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	r.updateVolume(context.Background(), "v", func(cur *Volume) error {
		cur.Applying = w.snap.Seq
		return nil
	})
	delta := r.newDeltaWriter(nil, v.ID, w.snap.Seq)
	for _, c := range []struct {
		b []byte
		n int64
	}{{B, -1}, {C, 1}} {
		if err := delta.add(ctx, Sum(c.b), c.n, testBS); err != nil {
			t.Fatal(err)
		}
	}
	if err := delta.finish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.applyDelta(ctx, nil, v.ID, w.snap.Seq); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	// Undo twice: a crash during undo is undone again.
	for i := 0; i < 2; i++ {
		if err := r.undoDelta(ctx, nil, v.ID, w.snap.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.rollback(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	// Upd is bookkeeping for the update in flight; End and Count are the chain.
	got := dumpPrefix(t, r, []byte{prefixInterval})
	if len(got) != len(before) {
		t.Errorf("%d intervals after undo, want %d", len(got), len(before))
	}
	for k, v := range before {
		a, _ := decodeIntervalRecord([]byte(got[k]))
		b, _ := decodeIntervalRecord([]byte(v))
		if a.End != b.End || a.Count != b.Count {
			t.Errorf("interval %x after undo: %+v, want %+v", k, a, b)
		}
	}
	after := dumpPrefix(t, r, []byte{prefixBlock})
	for k, v := range refsBefore {
		if after[k] != v {
			t.Errorf("block record %x changed by undo", k)
		}
	}
	wantHolders(t, r, s1, 1, 1)
	s3 := snapFile(t, r, "v", A, C)
	wantHolders(t, r, s3, 1, 3)
}

func dumpPrefix(t *testing.T, r *Repo, prefix []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	r.db.View(func(txn *badgerTxn) error {
		it := txn.NewIterator(badgerIteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, _ := it.Item().ValueCopy(nil)
			out[string(it.Item().Key())] = string(v)
		}
		return nil
	})
	return out
}

// deltaOf reads the delta journal of snapshot seq of volume vol.
func deltaOf(t *testing.T, r *Repo, vol, seq uint64) map[Hash]blockDelta {
	t.Helper()
	got := map[Hash]blockDelta{}
	err := r.eachDeltaChunk(context.Background(), vol, seq, func(hs []Hash, ds []blockDelta) error {
		for i, h := range hs {
			got[h] = ds[i]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestDeltaSpills: a delta larger than memory holds goes to the journal
// in parts, each added to what is there: a block that leaves one
// directory and comes back in another, in different parts, has no entry,
// and the chain, the reads, a deletion and gc are as with one part.
func TestDeltaSpills(t *testing.T) {
	defer func(n int) { deltaSpillAt = n }(deltaSpillAt)
	deltaSpillAt = 2
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	A1, A2, A3, M1, M2, N1 := block('1'), block('2'), block('3'), block('m'), block('n'), block('N')
	s1 := snapDirs(t, r, "v", map[string][][]byte{"a": {A1, A2, A3}, "m": {M1, M2}})
	// a moves to z; m gains a block.
	s2 := snapDirs(t, r, "v", map[string][][]byte{"m": {M1, M2, N1}, "z": {A1, A2, A3}})
	got := deltaOf(t, r, s2.VolumeID, s2.Seq)
	if len(got) != 1 || got[Sum(N1)].Count != 1 {
		t.Errorf("delta journal %v, want N1 +1 alone", got)
	}
	if s2.Stats.AddedBlocks != 1 {
		t.Errorf("%d blocks added, want 1", s2.Stats.AddedBlocks)
	}
	if p := problemsOf(t, r); len(p) > 0 {
		t.Fatalf("check: %q", p)
	}
	deleteAndGC(t, r, "v", s1.Name)
	buf := make([]byte, testBS)
	for _, dir := range []string{"m", "z"} {
		d, err := Lookup(ctx, r, &s2.RootDir, dir)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Lookup(ctx, r, d, "f")
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range f.Blocks {
			if _, err := r.ReadBlock(ctx, h, buf); err != nil {
				t.Errorf("%s/f block %d: %v", dir, i, err)
			}
		}
	}
	if p := problemsOf(t, r); len(p) > 0 {
		t.Fatalf("check after deletion and gc: %q", p)
	}
}

// snapDirs commits a snapshot whose tree holds, for each name, a
// directory with one file "f" made of blocks.
func snapDirs(t *testing.T, r *Repo, vol string, dirs map[string][][]byte) *Snapshot {
	t.Helper()
	ctx := context.Background()
	w, err := r.BeginSnapshot(ctx, vol, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var top []Entry
	for _, name := range slices.Sorted(maps.Keys(dirs)) {
		f := putFile(t, w, "f", dirs[name])
		sub, err := w.PutTree(ctx, EncodeTree([]Entry{f}))
		if err != nil {
			t.Fatal(err)
		}
		top = append(top, Entry{Name: name, Type: TypeDir, Mode: 0o755, Subtree: sub, Nlink: 2})
	}
	return commitTop(t, w, top)
}

// TestDeltaJournalInChunks: a journal of more entries than a chunk is
// read whole, by apply and by deletion (undo reads it the same way,
// eachDeltaChunk).
func TestDeltaJournalInChunks(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
	blocks := make([][]byte, 2*chunkSize+100)
	for i := range blocks {
		blocks[i] = make([]byte, testBS)
		binary.LittleEndian.PutUint64(blocks[i], uint64(i))
	}
	s := snapFile(t, r, "v", blocks...)
	if got := deltaOf(t, r, s.VolumeID, s.Seq); len(got) != len(blocks) {
		t.Errorf("journal of %d entries for %d blocks", len(got), len(blocks))
	}
	if s.Stats.AddedBlocks != uint64(len(blocks)) {
		t.Errorf("%d blocks added, want %d", s.Stats.AddedBlocks, len(blocks))
	}
	deleteAndGC(t, r, "v", s.Name)
	if b, _, p := contents(t, r); b != 0 || p != 0 {
		t.Errorf("after deleting the only snapshot and gc: %d blocks in %d packs", b, p)
	}
}

// deleteAndGC deletes snapshot name of volume vol and runs gc.
func deleteAndGC(t *testing.T, r *Repo, vol, name string) {
	t.Helper()
	ctx := context.Background()
	if err := r.DeleteSnapshot(ctx, vol, name); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
}
