package source

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/storetest"
)

// diskRepo is a repository with a disk volume "d" on the image file path.
func diskRepo(t *testing.T, path string) *store.Repo {
	t.Helper()
	return storetest.Repo(t, store.Volume{Name: "d", Kind: store.KindDisk, Source: path, BlockSize: 16 << 10})
}

// TestDiskSnapshots: a disk image's snapshot is one file, the image's
// bytes exactly; zero blocks and holes are holes and cost nothing; an
// unchanged image is carried over unread; a changed one stores only the
// changed blocks.
func TestDiskSnapshots(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<10) // 64 KiB of data
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	f.WriteAt(data, 1<<20)                 // after a 1 MiB hole
	f.WriteAt(make([]byte, 64<<10), 2<<20) // written zeros
	f.WriteAt([]byte("end"), 4<<20-3)      // the last bytes
	f.Close()
	r := diskRepo(t, path)
	snap := func() *Result {
		t.Helper()
		res, err := Snapshot(ctx, r, "d", store.SnapshotOptions{}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := snap()
	s := res.Snapshot
	if got := readBack(t, r, s, "disk.img"); !bytes.Equal(got, mustRead(t, path)) {
		t.Fatalf("the snapshot's disk.img differs from the image")
	}
	e, _ := store.Lookup(ctx, r, &s.RootDir, "disk.img")
	if !e.Sparse || len(e.Extents) != 2 || e.Extents[0] != (store.Extent{Off: 1 << 20, Len: 64 << 10}) {
		t.Errorf("extents %v (sparse %v)", e.Extents, e.Sparse)
	}
	if s.Stats.StoredBytes != 64<<10+16<<10 || s.Stats.Files != 1 {
		t.Errorf("first snapshot stored %d bytes (%+v)", s.Stats.StoredBytes, s.Stats)
	}
	if res := snap(); res.Snapshot.Stats.ReadBytes != 0 || res.Snapshot.Stats.AddedBytes != 0 {
		t.Errorf("unchanged image read %d bytes", res.Snapshot.Stats.ReadBytes)
	}
	f, _ = os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt([]byte("changed"), 1<<20+100)
	f.Close()
	s = snap().Snapshot
	if s.Stats.StoredBytes != 16<<10 || s.Stats.AddedBytes != 16<<10 {
		t.Errorf("after a 7-byte change: stored %d, added %d", s.Stats.StoredBytes, s.Stats.AddedBytes)
	}
	if got := readBack(t, r, s, "disk.img"); !bytes.Equal(got, mustRead(t, path)) {
		t.Fatalf("the second snapshot differs from the image")
	}
}

// TestZeroDiskCostsNothing: an image of zeros, written or a hole, stores
// no block.
func TestZeroDiskCostsNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "zero.img")
	os.WriteFile(path, make([]byte, 8<<20), 0o644)
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.Truncate(1 << 30) // the rest a hole
	f.Close()
	r := diskRepo(t, path)
	res, err := Snapshot(ctx, r, "d", store.SnapshotOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Snapshot.Stats; st.StoredBytes != 0 || st.ReadBytes != 8<<20 || st.LogicalBytes != 1<<30 {
		t.Errorf("zero image: %+v", st)
	}
	e, _ := store.Lookup(ctx, r, &res.Snapshot.RootDir, "zero.img")
	if !e.Sparse || len(e.Extents) != 0 || e.Size != 1<<30 {
		t.Errorf("zero image entry: sparse %v, extents %v, size %d", e.Sparse, e.Extents, e.Size)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDiskChangedWhileRead: an image written to while it is read is stored
// as read, with a warning that names it and keeps it.
func TestDiskChangedWhileRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.img")
	os.WriteFile(path, bytes.Repeat([]byte("x"), 1<<20), 0o644)
	r := diskRepo(t, path)
	testHookAfterRead = func(p string) {
		f, _ := os.OpenFile(p, os.O_WRONLY, 0)
		f.WriteAt([]byte("written meanwhile"), 4096)
		f.Close()
	}
	defer func() { testHookAfterRead = nil }()
	res, err := Snapshot(context.Background(), r, "d", store.SnapshotOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !res.Warnings[0].Kept || !strings.Contains(res.Warnings[0].String(), "changed while it was read") ||
		res.Snapshot.Stats.Warnings != 1 {
		t.Errorf("warnings: %v", res.Warnings)
	}
}
