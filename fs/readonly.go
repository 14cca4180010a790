//go:build linux

package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// readOnlyNode answers every call that would change the tree with EROFS.
// Every node type embeds it, and overrides only what it really does
// (volumeNode's Mkdir and Rmdir, the control files' Open for writing and
// Setattr, the snapshot entries' Open for reading). It must be every
// node's: go-fuse answers an unlink or rmdir of a node that lacks the
// method with success, and drops the name from its tree until remount.
//
// Writes are not here: they only reach a file opened for writing, which
// Open refuses but for control files, whose handles do the writing
// (a node's Write would take their place). CopyFileRange is left out for
// the same reason: it writes to a file open for writing, and without it
// the kernel falls back to writes.
type readOnlyNode struct{}

var (
	_ = (gofs.NodeSetattrer)(readOnlyNode{})
	_ = (gofs.NodeSetxattrer)(readOnlyNode{})
	_ = (gofs.NodeRemovexattrer)(readOnlyNode{})
	_ = (gofs.NodeOpener)(readOnlyNode{})
	_ = (gofs.NodeAllocater)(readOnlyNode{})
	_ = (gofs.NodeMkdirer)(readOnlyNode{})
	_ = (gofs.NodeMknoder)(readOnlyNode{})
	_ = (gofs.NodeLinker)(readOnlyNode{})
	_ = (gofs.NodeSymlinker)(readOnlyNode{})
	_ = (gofs.NodeCreater)(readOnlyNode{})
	_ = (gofs.NodeTmpfiler)(readOnlyNode{})
	_ = (gofs.NodeUnlinker)(readOnlyNode{})
	_ = (gofs.NodeRmdirer)(readOnlyNode{})
	_ = (gofs.NodeRenamer)(readOnlyNode{})
)

// openFlagsWrite are the open flags that would change a file.
const openFlagsWrite = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_TRUNC | syscall.O_APPEND

// Setattr (NodeSetattrer).
func (readOnlyNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Setxattr (NodeSetxattrer).
func (readOnlyNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// Removexattr (NodeRemovexattrer).
func (readOnlyNode) Removexattr(ctx context.Context, attr string) syscall.Errno { return syscall.EROFS }

// Open refuses writing; the nodes that have contents to read override it
// (NodeOpener). The kernel opens directories with OPENDIR, not here.
func (readOnlyNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&openFlagsWrite != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, 0, syscall.EINVAL
}

// Allocate (NodeAllocater).
func (readOnlyNode) Allocate(ctx context.Context, f gofs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	return syscall.EROFS
}

// Mkdir (NodeMkdirer).
func (readOnlyNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Mknod (NodeMknoder).
func (readOnlyNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Link (NodeLinker).
func (readOnlyNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Symlink (NodeSymlinker).
func (readOnlyNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Create (NodeCreater).
func (readOnlyNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

// Tmpfile (NodeTmpfiler).
func (readOnlyNode) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

// Unlink (NodeUnlinker).
func (readOnlyNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

// Rmdir (NodeRmdirer).
func (readOnlyNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

// Rename (NodeRenamer).
func (readOnlyNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}
