//go:build linux

package fs

import (
	"context"
	"syscall"

	"github.com/chainfs/chainfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// imagesNode is images/: one read-only tree per image the caller may see
// (store.Image.VisibleTo with the uid FUSE gives). Every other name is
// ENOENT for that caller, and no image's entry is cached by the kernel,
// which caches for all callers alike.
type imagesNode struct {
	gofs.Inode
	readOnlyNode
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

// callerUID is the uid of the process a FUSE request is for; requests the
// daemon makes itself count as root's.
func callerUID(ctx context.Context) uint32 {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid
	}
	return 0
}

// Readdir lists the images the caller sees (NodeReaddirer).
func (n *imagesNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	images, err := n.fs.images.Images(ctx)
	if err != nil {
		return nil, errno(n.fs.log, err, "readdir images")
	}
	uid := callerUID(ctx)
	list := make([]fuse.DirEntry, 0, len(images))
	for i := range images {
		if images[i].VisibleTo(uid) {
			list = append(list, fuse.DirEntry{Name: images[i].Name, Mode: syscall.S_IFDIR, Ino: rootIno(imageID(&images[i]))})
		}
	}
	return gofs.NewListDirStream(list), 0
}

// imageID is what an image's inode numbers are made from: its hidden
// volume and snapshot, or for a catalog image a number from its name and
// its top tree, so that a catalog file replaced under the same name is
// new to the kernel, not a cached old tree.
func imageID(img *store.Image) (volID, seq uint64) {
	if img.Type == store.ImagePublic {
		root := img.Snapshot.RootDir.Subtree
		return inodeNumber("catalog", nil, img.Name+"\x00"+string(root[:])), 0
	}
	return img.Snapshot.VolumeID, img.Snapshot.Seq
}

// Lookup finds an image the caller sees (NodeLookuper).
func (n *imagesNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	img, rd, err := n.fs.images.Image(ctx, name)
	if err != nil {
		return nil, uncachedMiss(out, errno(n.fs.log, err, "lookup image", "image", name))
	}
	if !img.VisibleTo(callerUID(ctx)) {
		return nil, uncachedMiss(out, syscall.ENOENT)
	}
	volID, seq := imageID(img)
	node := n.fs.snapshotRoot(ctx, &n.Inode, snapRef{volume: "image " + name, volID: volID, seq: seq, name: name, rd: rd}, img.Snapshot.RootDir, out)
	out.SetEntryTimeout(0)
	return node, 0
}
