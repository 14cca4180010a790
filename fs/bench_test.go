//go:build linux

package fs

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// BenchmarkMountRead reads a 64 MiB file through a mount in this process,
// 1 MiB at a time as cp and dd do. "daemon": the kernel's copy of the file
// is dropped before each read (fadvise), so every byte comes through FUSE
// from the daemon, which reads the repository (in the page cache) and
// checks each block; "page-cache": the kernel answers.
func BenchmarkMountRead(b *testing.B) {
	src := b.TempDir()
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	if err := os.WriteFile(filepath.Join(src, "f"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	mnt, _, _ := mountSnapshot(b, src, store.DefaultBlockSize)
	path := filepath.Join(mnt, "volumes/v/s/f")
	buf := make([]byte, 1<<20)
	read := func(b *testing.B, drop bool) {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if drop {
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		if err != nil || n != int64(len(data)) {
			b.Fatalf("read %d bytes, %v", n, err)
		}
	}
	for _, c := range []struct {
		name string
		drop bool
	}{{"daemon", true}, {"page-cache", false}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			read(b, c.drop) // the repository's packs into the page cache
			for b.Loop() {
				read(b, c.drop)
			}
		})
	}
}
