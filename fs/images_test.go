//go:build linux

package fs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestImageAccessBelowTop: the nodes below images/<name> check the caller
// as images/ does, at every lookup, opendir, open and getattr: a user the
// image is unshared from loses what is inside at once (Changed), or
// within imageAccessTTL without news; root keeps it.
func TestImageAccessBelowTop(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	for _, name := range []string{"a", "b", "c"} {
		os.WriteFile(filepath.Join(src, "d", name), []byte(name), 0o644)
	}
	fsys, mnt, repo, _ := mountSnapshotFS(t, src, store.MinBlockSize)
	if _, err := images.Create(ctx, repo, "img", "v", "s", images.Meta{}); err != nil {
		t.Fatal(err)
	}
	share := func(on bool) {
		t.Helper()
		_, err := images.Update(ctx, repo, "img", func(m *images.Meta) error {
			if on {
				m.Share(1001)
			} else {
				m.Unshare(1001)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	share(true)
	if _, err := os.Lstat(filepath.Join(mnt, "images/img/d/a")); err != nil {
		t.Fatal(err)
	}
	dirInode := fsys.imagesDir.GetChild("img").GetChild("d")
	dir := dirInode.Operations().(*entryNode)
	file := dirInode.GetChild("a").Operations().(*entryNode)
	as := func(uid uint32) context.Context {
		return fuse.NewContext(ctx, &fuse.Caller{Owner: fuse.Owner{Uid: uid, Gid: uid}})
	}
	// calls are the requests that reach the daemon once the kernel has
	// the directory: each answers 0 or the same errno.
	calls := func(ctx context.Context, name string) map[string]syscall.Errno {
		_, lookup := dir.Lookup(ctx, name, &fuse.EntryOut{})
		_, _, open := file.Open(ctx, syscall.O_RDONLY)
		return map[string]syscall.Errno{
			"lookup":  lookup,
			"opendir": opendir(ctx, dir),
			"open":    open,
			"getattr": file.Getattr(ctx, nil, &fuse.AttrOut{}),
		}
	}
	expect := func(when string, uid uint32, name string, want syscall.Errno) {
		t.Helper()
		for call, got := range calls(as(uid), name) {
			if got != want {
				t.Errorf("%s: %s as uid %d: %v, want %v", when, call, uid, got, want)
			}
		}
	}
	expect("shared", 1001, "b", 0)
	expect("shared", 1002, "b", syscall.EACCES)
	expect("shared", 0, "b", 0)

	share(false)
	fsys.Changed("", "img")
	expect("unshared", 1001, "c", syscall.EACCES)
	expect("unshared", 0, "c", 0)
	// An open file stays readable.
	if errno := file.Getattr(as(1001), &fileHandle{}, &fuse.AttrOut{}); errno != 0 {
		t.Errorf("getattr of an open file after unsharing: %v", errno)
	}

	// Without news of the change, the store is asked again after a while.
	share(true)
	time.Sleep(imageAccessTTL)
	expect("shared again, unannounced", 1001, "c", 0)

	if err := images.Remove(ctx, repo, "img"); err != nil {
		t.Fatal(err)
	}
	fsys.Changed("", "img")
	expect("removed", 1001, "c", syscall.ENOENT)
}

// opendir is what the bridge answers an OPENDIR with: success when the
// node has no Opendir.
func opendir(ctx context.Context, n gofs.InodeEmbedder) syscall.Errno {
	switch o := n.(type) {
	case gofs.NodeOpendirHandler:
		_, _, errno := o.OpendirHandle(ctx, syscall.O_RDONLY)
		return errno
	case gofs.NodeOpendirer:
		return o.Opendir(ctx)
	}
	return 0
}
