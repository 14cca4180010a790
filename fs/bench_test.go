//go:build linux

package fs

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// BenchmarkMountRead reads a 64 MiB file through a mount in this process,
// 1 MiB at a time as cp and dd do. "daemon": the kernel's copy of the file
// is dropped before each read (fadvise), so every byte comes through FUSE
// from the daemon, which reads the repository (in the page cache) and
// checks each block; "page-cache": the kernel answers. cpu-s/GiB is this
// process's CPU time (the daemon's and the reader's, user and system) per
// GiB read.
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
			before := cpuTime(b)
			for b.Loop() {
				read(b, c.drop)
			}
			gib := float64(b.N) * float64(len(data)) / (1 << 30)
			b.ReportMetric((cpuTime(b)-before).Seconds()/gib, "cpu-s/GiB")
		})
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
