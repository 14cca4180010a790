package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/storetest"
)

// testRepo is a repository of region north with a snapshot of volume v:
// one file, "f".
func testRepo(t *testing.T) (*store.Repo, *store.Snapshot) {
	t.Helper()
	r := storetest.RepoWith(t, store.Options{Region: "north"}, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize})
	return r, storetest.Commit(t, r, "v", store.SnapshotOptions{}, oneFile(t))
}

// oneFile stores a file "f" of one block.
func oneFile(t *testing.T) func(storetest.Writer) []store.Entry {
	return func(w storetest.Writer) []store.Entry {
		return []store.Entry{storetest.PutFile(t, w, "f", storetest.Block('a'))}
	}
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
	imported, err := w.Commit(ctx, storetest.PutRoot(t, w, oneFile(t)(w)...), store.SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}
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
