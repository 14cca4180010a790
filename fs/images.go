//go:build linux

package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// imagesNode is images/: one read-only tree per image.
type imagesNode struct {
	gofs.Inode
	fs *FS
}

var (
	_ = (gofs.NodeLookuper)((*imagesNode)(nil))
	_ = (gofs.NodeReaddirer)((*imagesNode)(nil))
	_ = (gofs.NodeGetattrer)((*imagesNode)(nil))
)

// Getattr (NodeGetattrer).
func (n *imagesNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.SetTimeout(listTimeout)
	return 0
}

// Readdir lists the images (NodeReaddirer).
func (n *imagesNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	images, err := n.fs.repo.Images(ctx)
	if err != nil {
		return nil, errno(n.fs.log, err, "readdir images")
	}
	list := make([]fuse.DirEntry, 0, len(images))
	for i := range images {
		list = append(list, fuse.DirEntry{Name: images[i].Name, Mode: syscall.S_IFDIR, Ino: snapshotIno(&images[i].Snapshot)})
	}
	return gofs.NewListDirStream(list), 0
}

// Lookup finds an image (NodeLookuper).
func (n *imagesNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	img, err := n.fs.repo.Image(ctx, name)
	if err != nil {
		return nil, errno(n.fs.log, err, "lookup image", "image", name)
	}
	return n.fs.snapshotRoot(ctx, &n.Inode, "image "+name, name, &img.Snapshot, out), 0
}
