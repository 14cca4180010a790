//go:build linux

package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS is the file system as the kernel sees it, without a mount: the
// requests go-fuse would pass on, called directly.
type rawFS struct {
	t   *testing.T
	raw fuse.RawFileSystem
	// caller is who asks.
	caller fuse.Caller
}

func newRawFS(t *testing.T, src string) *rawFS {
	t.Helper()
	repo := snapshotRepo(t, src, 0)
	fsys := New(Options{Repo: repo, Images: &imagefile.Library{Repo: repo}, Controller: &fakeController{}})
	return &rawFS{t: t, raw: gofs.NewNodeFS(fsys.root, nodeOptions(MountOptions{}))}
}

func (r *rawFS) header(node uint64) fuse.InHeader {
	return fuse.InHeader{NodeId: node, Caller: r.caller}
}

// walk looks a path up from the root, one name at a time; it returns the
// last entry and the status of the first lookup that failed.
func (r *rawFS) walk(path string) (fuse.EntryOut, fuse.Status) {
	var out fuse.EntryOut
	node := uint64(1)
	for _, name := range strings.Split(path, "/") {
		h := r.header(node)
		out = fuse.EntryOut{}
		if st := r.raw.Lookup(nil, &h, name, &out); st != fuse.OK {
			return out, st
		}
		node = out.NodeId
	}
	return out, fuse.OK
}

// read opens a file node and reads it whole, in requests of size.
func (r *rawFS) read(node uint64, size uint32) ([]byte, fuse.Status) {
	open := fuse.OpenIn{InHeader: r.header(node), Flags: uint32(os.O_RDONLY)}
	var oo fuse.OpenOut
	if st := r.raw.Open(nil, &open, &oo); st != fuse.OK {
		return nil, st
	}
	defer r.raw.Release(nil, &fuse.ReleaseIn{InHeader: r.header(node), Fh: oo.Fh})
	var data []byte
	buf := make([]byte, size)
	for {
		in := fuse.ReadIn{InHeader: r.header(node), Fh: oo.Fh, Offset: uint64(len(data)), Size: size}
		res, st := r.raw.Read(nil, &in, buf)
		if st != fuse.OK {
			return nil, st
		}
		b, st := res.Bytes(buf)
		if st != fuse.OK {
			return nil, st
		}
		res.Done()
		if len(b) == 0 {
			return data, fuse.OK
		}
		data = append(data, b...)
	}
}

// TestNodesWithoutMount: lookups, attributes and reads answered as the
// kernel would get them, compared with the source to the byte and the
// nanosecond; a missing name is ENOENT; nothing can be made, changed or
// removed.
func TestNodesWithoutMount(t *testing.T) {
	src := t.TempDir()
	big := make([]byte, 3<<20+123)
	for i := range big {
		big[i] = byte(i * 7)
	}
	os.MkdirAll(filepath.Join(src, "d"), 0o750)
	os.WriteFile(filepath.Join(src, "d", "big"), big, 0o640)
	os.WriteFile(filepath.Join(src, "empty"), nil, 0o600)
	os.Symlink("d/big", filepath.Join(src, "link"))
	when := time.Date(2021, 5, 6, 7, 8, 9, 123456789, time.UTC)
	os.Chtimes(filepath.Join(src, "d", "big"), when, when)
	r := newRawFS(t, src)

	for _, p := range []string{"d", "d/big", "empty", "link"} {
		out, st := r.walk("volumes/v/s/" + p)
		if st != fuse.OK {
			t.Fatalf("lookup %s: %v", p, st)
		}
		var want syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(src, p), &want); err != nil {
			t.Fatal(err)
		}
		var ao fuse.AttrOut
		in := fuse.GetAttrIn{InHeader: r.header(out.NodeId)}
		if st := r.raw.GetAttr(nil, &in, &ao); st != fuse.OK {
			t.Fatalf("getattr %s: %v", p, st)
		}
		a := ao.Attr
		if a.Mode != want.Mode || a.Uid != want.Uid || a.Gid != want.Gid || (want.Mode&syscall.S_IFMT != syscall.S_IFDIR && a.Size != uint64(want.Size)) ||
			a.Mtime != uint64(want.Mtim.Sec) || a.Mtimensec != uint32(want.Mtim.Nsec) || out.Attr.Mode != a.Mode {
			t.Errorf("%s: attr %+v, source mode %o uid %d size %d mtime %d.%09d", p, a, want.Mode, want.Uid, want.Size, want.Mtim.Sec, want.Mtim.Nsec)
		}
	}
	out, _ := r.walk("volumes/v/s/d/big")
	for _, size := range []uint32{4096, 128 << 10, 1 << 20} {
		got, st := r.read(out.NodeId, size)
		if st != fuse.OK || !bytes.Equal(got, big) {
			t.Errorf("read in requests of %d: %d bytes, %v", size, len(got), st)
		}
	}
	link, _ := r.walk("volumes/v/s/link")
	h := r.header(link.NodeId)
	if target, st := r.raw.Readlink(nil, &h); st != fuse.OK || string(target) != "d/big" {
		t.Errorf("readlink: %q %v", target, st)
	}

	// A miss is ENOENT, or a negative entry (node 0) the kernel keeps.
	for _, p := range []string{"volumes/v/s/nosuch", "volumes/nosuch", "volumes/v/nosuch", "images/nosuch"} {
		if out, st := r.walk(p); st != fuse.ENOENT && (st != fuse.OK || out.NodeId != 0) {
			t.Errorf("%s: %v node %d, want ENOENT", p, st, out.NodeId)
		}
	}

	dir, _ := r.walk("volumes/v/s/d")
	mk := fuse.MkdirIn{InHeader: r.header(dir.NodeId), Mode: 0o755}
	if st := r.raw.Mkdir(nil, &mk, "new", &fuse.EntryOut{}); st == fuse.OK {
		t.Error("mkdir in a snapshot succeeded")
	}
	cr := fuse.CreateIn{InHeader: r.header(dir.NodeId), Mode: 0o644, Flags: uint32(os.O_WRONLY | os.O_CREATE)}
	if st := r.raw.Create(nil, &cr, "new", &fuse.CreateOut{}); st == fuse.OK {
		t.Error("create in a snapshot succeeded")
	}
	uh := r.header(dir.NodeId)
	if st := r.raw.Unlink(nil, &uh, "big"); st == fuse.OK {
		t.Error("unlink in a snapshot succeeded")
	}
	wo := fuse.OpenIn{InHeader: r.header(out.NodeId), Flags: uint32(os.O_WRONLY)}
	if st := r.raw.Open(nil, &wo, &fuse.OpenOut{}); st != fuse.EROFS {
		t.Errorf("open for writing: %v, want EROFS", st)
	}
}

// TestErrnoMapping: each error of the store reaches the caller as the one
// errno that says it; what is not known is EIO, logged.
func TestErrnoMapping(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("snapshot v/x: %w", store.ErrNotFound), syscall.ENOENT},
		{context.Canceled, syscall.EINTR},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), syscall.EINTR},
		{store.ErrBusy, syscall.EBUSY},
		{store.ErrInUse, syscall.EBUSY},
		{store.ErrInvalid, syscall.EINVAL},
		{store.ErrExists, syscall.EEXIST},
		{store.ErrHasSnapshots, syscall.ENOTEMPTY},
		{&store.HeldError{Volume: "v", Snapshot: "s"}, syscall.EPERM},
		{fmt.Errorf("write: %w", syscall.ENOSPC), syscall.ENOSPC},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, syscall.EACCES},
		{fmt.Errorf("block: %w", store.ErrCorrupt), syscall.EIO},
		{errors.New("something else"), syscall.EIO},
	} {
		logged.Reset()
		if got := errno(log, c.err, "test"); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
		if silent := logged.Len() == 0; silent != (c.want != syscall.EIO) {
			t.Errorf("%v: logged %q", c.err, logged.String())
		}
	}
}
