package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// smallPackRepo is a repository whose packs are finished every 64 KiB, so
// tests see writers with finished packs.
func smallPackRepo(t *testing.T) *Repo {
	t.Helper()
	r := newRepoAt(t, t.TempDir()+"/repo", Options{PackSize: 64 << 10})
	t.Cleanup(func() { r.Close() })
	return r
}

// contents counts block records, tree blobs and pack files.
func contents(t *testing.T, r *Repo) (blocks, trees, packs int) {
	t.Helper()
	if err := r.scanBlocks(func(Hash, blockRecord) error { blocks++; return nil }); err != nil {
		t.Fatal(err)
	}
	r.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixTree}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			trees++
		}
		return nil
	})
	ids, err := r.blocks.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return blocks, trees, len(ids)
}

// writeImageData stores n distinct blocks and a tree naming them in w.
func writeImageData(t *testing.T, w *SnapshotWriter, seed byte, n int) Entry {
	t.Helper()
	ctx := context.Background()
	e := Entry{Name: "data", Type: TypeRegular, Mode: 0o644, Size: uint64(n * testBS), BlockSize: testBS, Nlink: 1}
	for i := 0; i < n; i++ {
		b := block(seed)
		copy(b, fmt.Sprint(i))
		h := Sum(b)
		if err := w.PutBlock(ctx, h, b); err != nil {
			t.Fatal(err)
		}
		e.Blocks = append(e.Blocks, h)
	}
	if n > maxInlineBlocks {
		h, err := w.PutTree(ctx, EncodeContent(e.Blocks))
		if err != nil {
			t.Fatal(err)
		}
		e.Content, e.HasContent, e.Blocks = h, true, nil
	}
	root, err := w.PutTree(ctx, EncodeTree([]Entry{e}))
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Type: TypeDir, Mode: 0o755, Subtree: root}
}

// imageOf makes image name of snapshot s, as store/images does, with the
// metadata {"owner":7}.
func imageOf(t *testing.T, r *Repo, name string, s *Snapshot) *ImageVolume {
	t.Helper()
	ctx := context.Background()
	w, err := r.ImageVolumes().Begin(ctx, name, json.RawMessage(`{"owner":7}`), "v/"+s.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, s.RootDir, s.Stats); err != nil {
		t.Fatal(err)
	}
	iv, err := r.ImageVolumes().Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return iv
}

// listedAndNot runs test with the blocks of a writer's finished packs
// listed for reclaim, and not (reclaimListMax): found by a scan.
func listedAndNot(t *testing.T, test func(t *testing.T)) {
	t.Run("listed", test)
	t.Run("scanned", func(t *testing.T) {
		defer func(n int) { reclaimListMax = n }(reclaimListMax)
		reclaimListMax = 1
		test(t)
	})
}

// TestAbortedImageLeavesNothing: an image writer that stored several
// packs' worth of blocks and its trees, then aborted, leaves no image, no
// block, no tree and no pack behind.
func TestAbortedImageLeavesNothing(t *testing.T) { listedAndNot(t, abortedImageLeavesNothing) }

func abortedImageLeavesNothing(t *testing.T) {
	r := smallPackRepo(t)
	ctx := context.Background()
	iv := r.ImageVolumes()
	w, err := iv.Begin(ctx, "broken", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	writeImageData(t, w, 'x', 40) // 160 KiB: two finished packs and an open one
	if len(w.finished) < 2 {
		t.Fatalf("%d finished packs, want at least 2", len(w.finished))
	}
	w.Abort()
	if _, err := iv.Get(ctx, "broken"); !errors.Is(err, ErrNotFound) {
		t.Errorf("aborted image before its volume went: %v", err)
	}
	if err := iv.Remove(ctx, "broken"); err != nil {
		t.Fatal(err)
	}
	if b, tr, p := contents(t, r); b+tr+p != 0 {
		t.Errorf("after abort: %d blocks, %d trees, %d packs left", b, tr, p)
	}
	// The name is free again.
	w, err = iv.Begin(ctx, "broken", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	root := writeImageData(t, w, 'y', 3)
	if _, err := w.Commit(ctx, root, SnapshotStats{}); err != nil {
		t.Fatal(err)
	}
	if img, err := iv.Get(ctx, "broken"); err != nil || img.Snapshot.Root != root.Subtree || img.Volume.Kind != KindImage {
		t.Errorf("image: %+v %v", img, err)
	}
}

// TestAbortKeepsWhatOthersLinked: blocks of an aborted writer's finished
// pack that a snapshot committed meanwhile links stay, with their pack.
func TestAbortKeepsWhatOthersLinked(t *testing.T) { listedAndNot(t, abortKeepsWhatOthersLinked) }

func abortKeepsWhatOthersLinked(t *testing.T) {
	r := smallPackRepo(t)
	ctx := context.Background()
	if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	w, err := r.ImageVolumes().Begin(ctx, "img", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	writeImageData(t, w, 'x', 20) // one finished pack
	if len(w.finished) == 0 {
		t.Fatal("no finished pack")
	}
	// A snapshot links the first block, which is already recorded.
	first := block('x')
	copy(first, "0")
	s := snapFile(t, r, "v", first)
	w.Abort()
	if b, _, p := contents(t, r); b < 1 || p < 1 {
		t.Errorf("after abort: %d blocks in %d packs; the committed snapshot's block must stay", b, p)
	}
	if p := problemsOf(t, r); len(p) > 0 {
		t.Fatalf("check: %q", p)
	}
	got, err := Lookup(ctx, r, &s.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, testBS)
	if _, err := r.ReadBlock(ctx, got.Blocks[0], buf); err != nil {
		t.Errorf("linked block: %v", err)
	}
}

// TestUnfinishedImageRemovedAtOpen: an image whose making was cut short
// by a crash (volume recorded, never committed) is gone at the next Open
// and its name is free.
func TestUnfinishedImageRemovedAtOpen(t *testing.T) {
	dir := t.TempDir() + "/repo"
	ctx := context.Background()
	r := newRepoAt(t, dir, Options{})
	if _, err := r.addVolume(context.Background(), Volume{Name: imagePrefix + "cut", Kind: KindImage, Image: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Volume(ctx, imagePrefix+"cut"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unfinished image's volume: %v", err)
	}
	s := Entry{Type: TypeDir, Mode: 0o755}
	w, err := r.ImageVolumes().Begin(ctx, "cut", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	s.Subtree, _ = w.PutTree(ctx, EncodeTree(nil))
	if _, err := w.Commit(ctx, s, SnapshotStats{}); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotEndHook: the hook hears of every snapshot of a volume that
// began, committed or not, and of no image.
func TestSnapshotEndHook(t *testing.T) {
	r := smallPackRepo(t)
	ctx := context.Background()
	if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	var ends []SnapshotEnd
	r.Watch(Watcher{SnapshotEnded: func(e SnapshotEnd) { ends = append(ends, e) }})
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{Name: "kept", Auto: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, writeImageData(t, w, 1, 3), SnapshotStats{ReadBytes: 3 * testBS}); err != nil {
		t.Fatal(err)
	}
	w, err = r.BeginSnapshot(ctx, "v", SnapshotOptions{Name: "dropped"})
	if err != nil {
		t.Fatal(err)
	}
	writeImageData(t, w, 2, 2)
	w.Abort()
	iw, err := r.ImageVolumes().Begin(ctx, "img", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iw.Commit(ctx, writeImageData(t, iw, 3, 1), SnapshotStats{}); err != nil {
		t.Fatal(err)
	}
	if len(ends) != 2 {
		t.Fatalf("%d ends, want 2 (no image): %+v", len(ends), ends)
	}
	if e := ends[0]; e.Volume != "v" || e.Name != "kept" || !e.Auto || e.Snapshot == nil ||
		e.Snapshot.Stats.ReadBytes != 3*testBS || e.Snapshot.Stats.StoredBytes != 3*testBS || e.Took <= 0 {
		t.Errorf("committed: %+v", e)
	}
	if e := ends[1]; e.Name != "dropped" || e.Snapshot != nil {
		t.Errorf("aborted: %+v", e)
	}
}

// TestImageVolumeIsNoVolume: no call of the volume API reaches an image's
// volume, whatever name it is given: ImageVolumes is the one door.
func TestImageVolumeIsNoVolume(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s := snapFile(t, r, "v", block('a'))
	iv := imageOf(t, r, "img", s)
	hidden := iv.Volume.Name
	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an image's volume: %v, want ErrNotFound", what, err)
		}
	}
	_, err := r.Volume(ctx, hidden)
	notFound("Volume", err)
	_, err = r.Snapshots(ctx, hidden)
	notFound("Snapshots", err)
	_, err = r.Snapshot(ctx, hidden, "image")
	notFound("Snapshot", err)
	_, err = r.BeginSnapshot(ctx, hidden, SnapshotOptions{})
	notFound("BeginSnapshot", err)
	notFound("DeleteSnapshot", r.DeleteSnapshot(ctx, hidden, "image"))
	notFound("UpdateVolume", r.UpdateVolume(ctx, hidden, func(*Volume) error { return nil }))
	notFound("RemoveVolume", r.RemoveVolume(ctx, hidden, true))
	if vols, _ := r.Volumes(ctx); len(vols) != 1 {
		t.Errorf("Volumes lists the image's: %+v", vols)
	}
	if got, err := r.ImageVolumes().Get(ctx, "img"); err != nil || got.Snapshot.Root != s.Root {
		t.Errorf("the image itself: %+v %v", got, err)
	}
	// And an image's API reaches no volume.
	if _, err := r.ImageVolumes().Get(ctx, "v"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a volume as an image: %v", err)
	}
}

// TestRenameImage: a renamed image is found by its new name only, with
// its metadata and blocks, which gc keeps after the snapshot it came from
// is deleted; a taken or invalid name is refused and changes nothing; the
// renamed image is removed as any other.
func TestRenameImage(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s := snapFile(t, r, "v", block('a'), block('b'))
	before := imageOf(t, r, "old", s)
	imageOf(t, r, "other", s)
	if err := r.ImageVolumes().Rename(ctx, "old", "other"); !errors.Is(err, ErrExists) {
		t.Errorf("rename onto a taken name: %v", err)
	}
	if err := r.ImageVolumes().Rename(ctx, "old", ".x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("rename to an invalid name: %v", err)
	}
	if err := r.ImageVolumes().Rename(ctx, "nosuch", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rename of no image: %v", err)
	}
	if err := r.ImageVolumes().Rename(ctx, "old", "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImageVolumes().Get(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the old name after the rename: %v", err)
	}
	iv, err := r.ImageVolumes().Get(ctx, "new")
	if err != nil || iv.Name != "new" || string(iv.Volume.Image) != `{"owner":7}` || iv.Volume.ID != before.Volume.ID ||
		iv.Snapshot.Root != before.Snapshot.Root || iv.Snapshot.Volume != iv.Volume.Name {
		t.Fatalf("the image under its new name: %+v, %v", iv, err)
	}
	deleteAndGC(t, r, "v", s.Name)
	if err := r.ImageVolumes().Remove(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, testBS)
	for _, b := range [][]byte{block('a'), block('b')} {
		if _, err := r.ReadBlock(ctx, Sum(b), buf); err != nil {
			t.Errorf("block %c of the renamed image after gc: %v", b[0], err)
		}
	}
	if err := r.ImageVolumes().Remove(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if list, _ := r.ImageVolumes().List(ctx); len(list) != 0 {
		t.Errorf("images left: %+v", list)
	}
}
