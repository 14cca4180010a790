package source

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/check"
)

// TestBlocksForRepair: a block is read back from the same path of a tree
// volume's source and from a disk volume's disk; a symlink on the way or
// at the end and a file that is not a regular file are not read.
func TestBlocksForRepair(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	data := append(bytes.Repeat([]byte{'a'}, 4096), bytes.Repeat([]byte{'b'}, 100)...)
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	entry := store.Entry{Name: "f", Type: store.TypeRegular, Size: uint64(len(data)), BlockSize: 4096}
	tree := &store.Volume{Name: "v", Kind: store.KindTree, Source: src}
	site := check.Site{Volume: tree, Path: "/d/f", Entry: entry, Index: 1}
	got, from, err := Blocks{}.ReadBlock(ctx, site)
	if err != nil || !bytes.Equal(got, data[4096:]) || from != filepath.Join(src, "d", "f")+" (block 1)" {
		t.Fatalf("tree block: %q from %s, %v", got, from, err)
	}

	// A symlink where a directory or the file was.
	elsewhere := t.TempDir()
	os.WriteFile(filepath.Join(elsewhere, "f"), data, 0o644)
	os.Symlink(elsewhere, filepath.Join(src, "link"))
	os.Symlink(filepath.Join(elsewhere, "f"), filepath.Join(src, "d", "g"))
	for _, p := range []string{"/link/f", "/d/g", "/../" + filepath.Base(src) + "/d/f"} {
		if _, _, err := (Blocks{}).ReadBlock(ctx, check.Site{Volume: tree, Path: p, Entry: entry, Index: 0}); err == nil {
			t.Errorf("%s: read through a symlink or out of the source", p)
		}
	}
	// A FIFO is not opened for long nor read.
	if err := syscall.Mkfifo(filepath.Join(src, "d", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (Blocks{}).ReadBlock(ctx, check.Site{Volume: tree, Path: "/d/fifo", Entry: entry}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo: %v", err)
	}

	// A disk volume's block is at its offset in the disk.
	disk := &store.Volume{Name: "d", Kind: store.KindDisk, Source: filepath.Join(src, "d", "f")}
	got, _, err = Blocks{}.ReadBlock(ctx, check.Site{Volume: disk, Path: "/disk", Entry: entry, Index: 0})
	if err != nil || !bytes.Equal(got, data[:4096]) {
		t.Errorf("disk block: %d bytes, %v", len(got), err)
	}
}
