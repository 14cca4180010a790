package integration

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// gate is a one-file FUSE source whose file does not answer reads until
// the test opens the gate: it holds a snapshot in the middle of its work
// for as long as a test needs, with no timing guesses.
type gate struct {
	dir     string
	reading chan struct{} // closed at the first read
	release chan struct{}
	once    sync.Once
}

type gateRoot struct {
	gofs.Inode
	g *gate
}

type gateFile struct {
	gofs.Inode
	g *gate
}

var (
	_ = (gofs.NodeOnAdder)((*gateRoot)(nil))
	_ = (gofs.NodeOpener)((*gateFile)(nil))
	_ = (gofs.NodeReader)((*gateFile)(nil))
	_ = (gofs.NodeGetattrer)((*gateFile)(nil))
)

func (r *gateRoot) OnAdd(ctx context.Context) {
	f := r.NewPersistentInode(ctx, &gateFile{g: r.g}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild("gated-file", f, false)
}

func (f *gateFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Size, out.Mtime, out.Ctime = syscall.S_IFREG|0o644, 4096, 1_700_000_000, 1_700_000_000
	return 0
}

func (f *gateFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *gateFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.g.once.Do(func() { close(f.g.reading) })
	select {
	case <-f.g.release:
	case <-ctx.Done():
		return nil, syscall.EINTR
	}
	if off >= 4096 {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), 4096-off)
	for i := range dest[:n] {
		dest[i] = 'g'
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// mountGate mounts a gate at dir, unmounted when the test ends.
func mountGate(t *testing.T, dir string) *gate {
	t.Helper()
	g := &gate{dir: dir, reading: make(chan struct{}), release: make(chan struct{})}
	sh(t, "mkdir -p "+dir)
	server, err := gofs.Mount(dir, &gateRoot{g: g}, &gofs.Options{MountOptions: fuse.MountOptions{DirectMount: true, FsName: "gate"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.open()
		server.Unmount()
	})
	return g
}

// waitRead waits until a reader is held at the gate.
func (g *gate) waitRead(t *testing.T) {
	t.Helper()
	select {
	case <-g.reading:
	case <-time.After(30 * time.Second):
		t.Fatal("nothing read the gated file within 30 s")
	}
}

func (g *gate) open() {
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}
