package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/chainfs/chainfs/store"
)

const testBS = store.MinBlockSize

func testRepo(t *testing.T) (*store.Repo, *store.Snapshot) {
	t.Helper()
	dir := t.TempDir() + "/repo"
	if _, err := store.Init(store.Options{Dir: dir, Region: "north"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := store.Open(ctx, store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, err := r.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	w, err := r.BeginSnapshot(ctx, "v", store.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r, commitFile(t, w.PutBlock, w.PutTree, func(root store.Entry) (*store.Snapshot, error) {
		return w.Commit(ctx, root, store.SnapshotStats{})
	})
}

// commitFile stores a tree of one file "f" of one block and commits it.
func commitFile[S any](t *testing.T, put func(context.Context, store.Hash, []byte) error, putTree func(context.Context, []byte) (store.Hash, error), commit func(store.Entry) (S, error)) S {
	t.Helper()
	ctx := context.Background()
	b := bytes.Repeat([]byte{'a'}, testBS)
	h := store.Sum(b)
	if err := put(ctx, h, b); err != nil {
		t.Fatal(err)
	}
	root, err := putTree(ctx, store.EncodeTree([]store.Entry{{Name: "f", Type: store.TypeRegular, Mode: 0o644, Size: testBS, BlockSize: testBS, Nlink: 1, Blocks: []store.Hash{h}}}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := commit(store.Entry{Type: store.TypeDir, Mode: 0o755, Subtree: root})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestImageLifecycle: an image made from a snapshot shares its tree and
// records where it came from and its region; a taken name is refused; an
// aborted import leaves no image and frees its name; removing one frees
// its name too.
func TestImageLifecycle(t *testing.T) {
	r, s := testRepo(t)
	ctx := context.Background()
	img, err := Create(ctx, r, "golden", "v", "latest", Meta{Owner: 1000, Description: "base"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Snapshot.Root != s.Root || img.Owner != 1000 || img.Type != Custom || img.Region != "north" ||
		img.Origin != (Origin{Kind: "snapshot", Volume: "v", Snapshot: s.Name, Region: "north"}) || img.Description != "base" {
		t.Errorf("image %+v", img)
	}
	if _, err := Create(ctx, r, "golden", "v", "latest", Meta{}); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second golden: %v", err)
	}
	if _, err := Create(ctx, r, ".hidden", "v", "latest", Meta{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a name starting with a dot: %v", err)
	}

	w, err := Begin(ctx, r, "imported", Meta{Origin: Origin{Kind: "import", Source: "disk.tar"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.UpdateMeta(ctx, func(m *Meta) { m.Description = "from the header" }); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if _, err := Get(ctx, r, "imported"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("aborted image: %v", err)
	}
	w, err = Begin(ctx, r, "imported", Meta{Origin: Origin{Kind: "import", Source: "disk.tar"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.UpdateMeta(ctx, func(m *Meta) { m.Description = "from the header" }); err != nil {
		t.Fatal(err)
	}
	imported := commitFile(t, w.PutBlock, w.PutTree, func(root store.Entry) (*Image, error) {
		return w.Commit(ctx, root, store.SnapshotStats{})
	})
	if imported.Description != "from the header" || imported.Origin.String() != "import disk.tar" || imported.Origin.Region != "north" {
		t.Errorf("imported %+v", imported)
	}

	all, err := List(ctx, r)
	if err != nil || len(all) != 2 || all[0].Name != "golden" || all[1].Name != "imported" {
		t.Errorf("list: %+v %v", all, err)
	}
	if vols, _ := r.Volumes(ctx); len(vols) != 1 {
		t.Errorf("images show as volumes: %+v", vols)
	}
	if err := Remove(ctx, r, "golden"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, r, "golden"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removed twice: %v", err)
	}
	if _, err := Create(ctx, r, "golden", "v", "latest", Meta{}); err != nil {
		t.Errorf("the name after removal: %v", err)
	}
}

// TestImageVisibility: who sees an image follows its type.
func TestImageVisibility(t *testing.T) {
	r, _ := testRepo(t)
	ctx := context.Background()
	img, err := Create(ctx, r, "img", "v", "latest", Meta{Owner: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sees := func(img *Image, uids ...uint32) string {
		out := ""
		for _, u := range uids {
			if img.VisibleTo(u) {
				out += fmt.Sprint(u, " ")
			}
		}
		return out
	}
	all := []uint32{0, 1000, 1001, 1002}
	if got := sees(img, all...); got != "0 1000 " || img.Type != Custom {
		t.Errorf("custom %s: seen by %s", img.Type, got)
	}
	img, err = Update(ctx, r, "img", func(m *Meta) error { m.Share(1002, 1000, 1002); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := sees(img, all...); got != "0 1000 1002 " || img.Type != Shared || len(img.SharedWith) != 1 {
		t.Errorf("shared %s %v: seen by %s", img.Type, img.SharedWith, got)
	}
	img, _ = Update(ctx, r, "img", func(m *Meta) error { m.Community = true; return nil })
	if got := sees(img, all...); got != "0 1000 1001 1002 " || img.Type != Community {
		t.Errorf("community %s: seen by %s", img.Type, got)
	}
	img, _ = Update(ctx, r, "img", func(m *Meta) error { m.Community = false; m.Unshare(1002); return nil })
	if got := sees(img, all...); got != "0 1000 " || img.Type != Custom || img.SharedWith != nil {
		t.Errorf("back to custom %s: seen by %s", img.Type, got)
	}
	if (&Image{Type: Public}).VisibleTo(1001) != true {
		t.Error("a public image is not seen by all")
	}
}

// TestLegacyImage: an image made before images had a record of their own
// takes its metadata from its snapshot's tags, and the first update
// starts from that.
func TestLegacyImage(t *testing.T) {
	r, s := testRepo(t)
	ctx := context.Background()
	// An image whose record has no metadata: made through the store alone.
	w, err := r.ImageVolumes().Begin(ctx, "old", nil, "v/"+s.Name, "the old way")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, s.RootDir, s.Stats); err != nil {
		t.Fatal(err)
	}
	img, err := Get(ctx, r, "old")
	if err != nil || img.Description != "the old way" || img.Origin.Kind != "snapshot" || img.Type != Custom {
		t.Fatalf("legacy image %+v %v", img, err)
	}
	img, err = Update(ctx, r, "old", func(m *Meta) error { m.Community = true; return nil })
	if err != nil || !img.Community || img.Description != "the old way" {
		t.Errorf("legacy image after an update: %+v %v", img, err)
	}
	iv, _ := r.ImageVolumes().Get(ctx, "old")
	var m Meta
	if err := json.Unmarshal(iv.Volume.Image, &m); err != nil || !m.Community {
		t.Errorf("record after the update: %s %v", iv.Volume.Image, err)
	}
}
