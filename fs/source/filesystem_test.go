package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// TestEmptiedSourceRefused: a tree whose files are all gone where the
// previous snapshot had some is refused (a fresh file system's lost+found
// counts as empty); with AllowEmpty it is taken, and the next empty one is
// then ordinary.
func TestEmptiedSourceRefused(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	r := testRepo(t, src)
	if _, err := Snapshot(ctx, r, "v", store.SnapshotOptions{Name: "good"}, Options{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "f"))
	os.Mkdir(filepath.Join(src, "lost+found"), 0o700)
	_, err := Snapshot(ctx, r, "v", store.SnapshotOptions{Name: "empty"}, Options{})
	if !errors.Is(err, ErrSourceReplaced) {
		t.Fatalf("snapshot of an emptied source: %v, want ErrSourceReplaced", err)
	}
	if _, err := r.Snapshot(ctx, "v", "empty"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused snapshot exists: %v", err)
	}
	if _, err := Snapshot(ctx, r, "v", store.SnapshotOptions{Name: "empty"}, Options{AllowEmpty: true}); err != nil {
		t.Fatalf("with AllowEmpty: %v", err)
	}
	if _, err := Snapshot(ctx, r, "v", store.SnapshotOptions{Name: "still-empty"}, Options{}); err != nil {
		t.Errorf("an empty source after an empty snapshot: %v", err)
	}
}

// TestSourceOnAnotherFileSystem: a volume recorded on another file system
// than its source's now is refused; AllowEmpty takes it and records the
// file system it is on now. A volume without a record (an older version's)
// gets one at its first snapshot.
func TestSourceOnAnotherFileSystem(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	r := testRepo(t, src)
	if _, err := Snapshot(ctx, r, "v", store.SnapshotOptions{Name: "first"}, Options{}); err != nil {
		t.Fatal(err)
	}
	here, err := FileSystemOf(src)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.Volume(ctx, "v"); v.SourceFS == nil || !v.SourceFS.Same(here) {
		t.Fatalf("first snapshot recorded %+v, want %+v", v.SourceFS, here)
	}
	other := &store.SourceFS{Mount: filepath.Join(src, "elsewhere"), Type: "ext4", Device: "/dev/sdz1"}
	if err := r.UpdateVolume(ctx, "v", func(v *store.Volume) error { v.SourceFS = other; return nil }); err != nil {
		t.Fatal(err)
	}
	_, err = Snapshot(ctx, r, "v", store.SnapshotOptions{Name: "moved"}, Options{})
	if !errors.Is(err, ErrSourceReplaced) {
		t.Fatalf("snapshot from another file system: %v, want ErrSourceReplaced", err)
	}
	if _, err := Snapshot(ctx, r, "v", store.SnapshotOptions{Name: "moved"}, Options{AllowEmpty: true}); err != nil {
		t.Fatalf("with AllowEmpty: %v", err)
	}
	if v, _ := r.Volume(ctx, "v"); v.SourceFS == nil || !v.SourceFS.Same(here) {
		t.Errorf("after AllowEmpty the record is %+v, want %+v", v.SourceFS, here)
	}
}

func TestFileSystemOfMountPoint(t *testing.T) {
	root, err := FileSystemOf("/")
	if err != nil {
		t.Fatal(err)
	}
	if root.Mount != "/" || root.Type == "" {
		t.Errorf("FileSystemOf(/) = %+v", root)
	}
	proc, err := FileSystemOf("/proc/self")
	if err != nil {
		t.Fatal(err)
	}
	if proc.Mount != "/proc" || proc.Type != "proc" {
		t.Errorf("FileSystemOf(/proc/self) = %+v", proc)
	}
}

// TestFileSystemOfOddMountPoint: a mount point whose name holds what the
// mount table escapes (space, tab, newline, backslash) is named exactly.
func TestFileSystemOfOddMountPoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := filepath.Join(t.TempDir(), "a b\\c\td\ne")
	os.Mkdir(dir, 0o755)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	fs, err := FileSystemOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Mount != dir || fs.Type != "tmpfs" {
		t.Errorf("FileSystemOf(%q) = %+v", dir, fs)
	}
}

// TestDiskEmptiedRefused: a disk image truncated to 0 bytes, or zeroed,
// where the previous snapshot held data is refused unless AllowEmpty.
func TestDiskEmptiedRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(path, []byte("a disk's data"), 0o644)
	r := diskRepo(t, path)
	if _, err := Snapshot(ctx, r, "d", store.SnapshotOptions{Name: "good"}, Options{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, make([]byte, 64<<10), 0o644)
	if _, err := Snapshot(ctx, r, "d", store.SnapshotOptions{Name: "zeros"}, Options{}); !errors.Is(err, ErrSourceReplaced) {
		t.Errorf("snapshot of a zeroed disk: %v, want ErrSourceReplaced", err)
	}
	os.Truncate(path, 0)
	if _, err := Snapshot(ctx, r, "d", store.SnapshotOptions{Name: "nothing"}, Options{}); !errors.Is(err, ErrSourceReplaced) {
		t.Errorf("snapshot of an empty disk: %v, want ErrSourceReplaced", err)
	}
	if _, err := Snapshot(ctx, r, "d", store.SnapshotOptions{Name: "nothing"}, Options{AllowEmpty: true}); err != nil {
		t.Errorf("with AllowEmpty: %v", err)
	}
}
