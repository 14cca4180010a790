//go:build linux

package fs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mutation is one call that would change the tree, made on a node as
// root (a context without a FUSE caller is root's).
type mutation struct {
	name string
	// call makes the call; implemented is false when the node lacks the
	// method, which the bridge would answer for it (with success, for
	// unlink and rmdir).
	call func(ctx context.Context, n gofs.InodeEmbedder) (errno syscall.Errno, implemented bool)
}

func setattrIn(valid uint32, mode uint32, size uint64) *fuse.SetAttrIn {
	in := &fuse.SetAttrIn{}
	in.Valid, in.Mode, in.Size = valid, mode, size
	return in
}

func openWith(flags uint32) func(context.Context, gofs.InodeEmbedder) (syscall.Errno, bool) {
	return func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeOpener)
		if !ok {
			return 0, false
		}
		_, _, e := o.Open(ctx, flags)
		return e, true
	}
}

var mutations = []mutation{
	{"chmod", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeSetattrer)
		if !ok {
			return 0, false
		}
		return o.Setattr(ctx, nil, setattrIn(fuse.FATTR_MODE, 0o777, 0), &fuse.AttrOut{}), true
	}},
	{"chown", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeSetattrer)
		if !ok {
			return 0, false
		}
		in := setattrIn(fuse.FATTR_UID|fuse.FATTR_GID, 0, 0)
		in.Uid, in.Gid = 1234, 1234
		return o.Setattr(ctx, nil, in, &fuse.AttrOut{}), true
	}},
	{"truncate to 1", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeSetattrer)
		if !ok {
			return 0, false
		}
		return o.Setattr(ctx, nil, setattrIn(fuse.FATTR_SIZE, 0, 1), &fuse.AttrOut{}), true
	}},
	{"truncate to 0", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeSetattrer)
		if !ok {
			return 0, false
		}
		return o.Setattr(ctx, nil, setattrIn(fuse.FATTR_SIZE, 0, 0), &fuse.AttrOut{}), true
	}},
	{"setxattr", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeSetxattrer)
		if !ok {
			return 0, false
		}
		return o.Setxattr(ctx, "user.k", []byte("v"), 0), true
	}},
	{"removexattr", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeRemovexattrer)
		if !ok {
			return 0, false
		}
		return o.Removexattr(ctx, "user.k"), true
	}},
	{"open O_WRONLY", openWith(syscall.O_WRONLY)},
	{"open O_RDWR", openWith(syscall.O_RDWR)},
	{"open O_TRUNC", openWith(syscall.O_RDONLY | syscall.O_TRUNC)},
	{"open O_APPEND", openWith(syscall.O_WRONLY | syscall.O_APPEND)},
	{"fallocate", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeAllocater)
		if !ok {
			return 0, false
		}
		return o.Allocate(ctx, nil, 0, 4096, 0), true
	}},
	{"mkdir", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeMkdirer)
		if !ok {
			return 0, false
		}
		_, e := o.Mkdir(ctx, "new", 0o755, &fuse.EntryOut{})
		return e, true
	}},
	{"mknod", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeMknoder)
		if !ok {
			return 0, false
		}
		_, e := o.Mknod(ctx, "new", syscall.S_IFIFO|0o644, 0, &fuse.EntryOut{})
		return e, true
	}},
	{"link", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeLinker)
		if !ok {
			return 0, false
		}
		_, e := o.Link(ctx, n, "new", &fuse.EntryOut{})
		return e, true
	}},
	{"symlink", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeSymlinker)
		if !ok {
			return 0, false
		}
		_, e := o.Symlink(ctx, "target", "new", &fuse.EntryOut{})
		return e, true
	}},
	{"create", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeCreater)
		if !ok {
			return 0, false
		}
		_, _, _, e := o.Create(ctx, "new", syscall.O_WRONLY|syscall.O_CREAT, 0o644, &fuse.EntryOut{})
		return e, true
	}},
	{"O_TMPFILE", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeTmpfiler)
		if !ok {
			return 0, false
		}
		_, _, _, e := o.Tmpfile(ctx, syscall.O_RDWR, 0o644, &fuse.EntryOut{})
		return e, true
	}},
	{"unlink", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeUnlinker)
		if !ok {
			return 0, false
		}
		return o.Unlink(ctx, someChild(n)), true
	}},
	{"rmdir", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeRmdirer)
		if !ok {
			return 0, false
		}
		return o.Rmdir(ctx, someChild(n)), true
	}},
	{"rename", func(ctx context.Context, n gofs.InodeEmbedder) (syscall.Errno, bool) {
		o, ok := n.(gofs.NodeRenamer)
		if !ok {
			return 0, false
		}
		return o.Rename(ctx, someChild(n), n, "renamed", 0), true
	}},
}

// someChild names a child the node has, so that a removal is asked of
// something that exists.
func someChild(n gofs.InodeEmbedder) string {
	for name := range n.EmbeddedInode().Children() {
		return name
	}
	return "none"
}

// allowed is what a mutation may answer on a node other than EROFS and
// EPERM: the calls that the node exists for.
func allowed(n gofs.InodeEmbedder, call string) []syscall.Errno {
	switch n := n.(type) {
	case *volumeNode:
		if call == "mkdir" || call == "rmdir" {
			return nil // makes and deletes snapshots: anything goes
		}
	case *controlFile:
		switch {
		case call == "open O_TRUNC":
			// Never asked: go-fuse does not take FUSE_ATOMIC_O_TRUNC, so
			// the kernel truncates with a setattr, tested above.
			return nil
		case n.name == "status" && (call == "open O_WRONLY" || call == "open O_RDWR" || call == "open O_APPEND"):
			// Only the modes' verdict: status is not open for writing.
			return []syscall.Errno{syscall.EACCES}
		case n.name != "status" && (call == "open O_WRONLY" || call == "open O_RDWR" || call == "open O_APPEND"):
			return []syscall.Errno{0} // a command is written
		case n.name != "status" && call == "truncate to 0":
			return []syscall.Errno{0} // the truncation a shell's '>' asks for
		}
	}
	return []syscall.Errno{syscall.EROFS, syscall.EPERM}
}

// TestEveryNodeRefusesChanges walks every node of a mount (the fixed top,
// a volume, a snapshot and what is in it, latest, an image and what is in
// it, the control directory and its files) and makes every call that
// would change the tree on each: each node type implements every one, and
// answers EROFS or EPERM but for what it is for (a volume's mkdir and
// rmdir, writing a command). A node type added later is walked too, and
// fails here if it misses a method: go-fuse answers success for a missing
// unlink or rmdir, and drops the name until remount.
func TestEveryNodeRefusesChanges(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d/g"), []byte("y"), 0o644)
	os.Symlink("f", filepath.Join(src, "l"))
	syscall.Mkfifo(filepath.Join(src, "p"), 0o644)
	fsys, mnt, repo, _ := mountSnapshotFS(t, src, store.MinBlockSize)
	if _, err := images.Create(ctx, repo, "img", "v", "s", images.Meta{}); err != nil {
		t.Fatal(err)
	}
	// Look everything up, so that every node exists.
	filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatalf("walk %s: %v", p, err)
		}
		os.Lstat(p)
		return nil
	})

	types := map[string]bool{}
	var visit func(path string, in *gofs.Inode)
	visit = func(path string, in *gofs.Inode) {
		n := in.Operations()
		kind := fmt.Sprintf("%T", n)
		types[kind] = true
		for _, m := range mutations {
			errno, implemented := m.call(ctx, n)
			if !implemented {
				t.Errorf("%s (%s) lacks %s", path, kind, m.name)
				continue
			}
			if want := allowed(n, m.name); want != nil && !slices.Contains(want, errno) {
				t.Errorf("%s on %s (%s): %v, want one of %v", m.name, path, kind, errno, want)
			}
		}
		children := in.Children()
		names := make([]string, 0, len(children))
		for name := range children {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			visit(path+"/"+name, children[name])
		}
	}
	visit("", &fsys.root.Inode)
	for _, want := range []string{"*fs.rootNode", "*fs.volumesNode", "*fs.volumeNode", "*fs.latestLink", "*fs.entryNode",
		"*fs.imagesNode", "*fs.staticDir", "*fs.controlFile"} {
		if !types[want] {
			t.Errorf("the walk met no %s: the test no longer reaches it", want)
		}
	}
	// And nothing went.
	for _, p := range []string{".control/status", ".control/snapshot", "images", "images/img/f", "volumes", "volumes/v/s/d/g", "volumes/v/latest"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); err != nil {
			t.Errorf("%s after the calls: %v", p, err)
		}
	}
}
