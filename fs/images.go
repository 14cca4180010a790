//go:build linux

package fs

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// imagesNode is images/: one read-only tree per image the caller may see
// (images.Image.VisibleTo with the uid FUSE gives). Every other name is
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

// Getattr (NodeGetattrer). Its link count is 1, "not counted", as a
// directory's may be: which images are its subdirectories depends on who
// asks, and the kernel would show one caller's count to another.
func (n *imagesNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fixedDir(&out.Attr, 0o555, 0, n.fs.started)
	out.Nlink = 1
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
	imgs, err := n.fs.images.Images(ctx)
	if err != nil {
		return nil, errno(n.fs.log, err, "readdir images")
	}
	uid := callerUID(ctx)
	list := make([]fuse.DirEntry, 0, len(imgs))
	for i := range imgs {
		if imgs[i].VisibleTo(uid) {
			list = append(list, fuse.DirEntry{Name: imgs[i].Name, Mode: syscall.S_IFDIR, Ino: rootIno(imageID(&imgs[i]))})
		}
	}
	return gofs.NewListDirStream(list), 0
}

// imageID is what an image's inode numbers are made from: its hidden
// volume and snapshot, or for a catalog image a number from its name and
// its top tree, so that a catalog file replaced under the same name is
// new to the kernel, not a cached old tree.
func imageID(img *images.Image) (volID, seq uint64) {
	if img.Type == images.Public {
		root := img.Snapshot.RootDir.Subtree
		return inodeNumber("catalog", nil, img.Name+"\x00"+string(root[:])), 0
	}
	return img.Snapshot.VolumeID, img.Snapshot.Seq
}

// Lookup finds an image the caller sees (NodeLookuper).
func (n *imagesNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	gen := n.fs.access.generation()
	img, rd, err := n.fs.images.Image(ctx, name)
	if err != nil {
		return nil, uncachedMiss(out, errno(n.fs.log, err, "lookup image", "image", name))
	}
	if !img.VisibleTo(callerUID(ctx)) {
		return nil, uncachedMiss(out, syscall.ENOENT)
	}
	// What the checks below the image use, fresh.
	n.fs.access.remember(name, img, gen)
	volID, seq := imageID(img)
	node := n.fs.snapshotRoot(ctx, &n.Inode, snapRef{volume: "image " + name, image: name, volID: volID, seq: seq, name: name, rd: rd}, img.Snapshot.RootDir, out)
	out.SetEntryTimeout(0)
	return node, 0
}

// imageAccessTTL is how long a decision on who sees an image is used
// without news of a change; FS.ImageChanged ends it at once.
const imageAccessTTL = time.Second

// imageAccess keeps the images' sharing, for the checks below
// images/<name>: they run at every lookup and open there, and asking the
// store each time would cost more than the request.
type imageAccess struct {
	mu sync.RWMutex
	// gen counts changes: a read of the store that began before a change
	// does not keep its answer.
	gen   uint64
	known map[string]imageGrant
}

// imageGrant is what the store said of an image and when.
type imageGrant struct {
	img *images.Image // nil: no such image
	at  time.Time
}

func (a *imageAccess) generation() uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.gen
}

// remember keeps img (nil: none) as image name's, unless a change came
// since generation gen.
func (a *imageAccess) remember(name string, img *images.Image, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen == gen {
		a.known[name] = imageGrant{img: img, at: time.Now()}
	}
}

// forget drops what is known of image name.
func (a *imageAccess) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	delete(a.known, name)
}

// ImageChanged tells the file system that image name was made, changed
// (shared, unshared, published...) or removed: the next lookup or open
// below it checks the caller against the new sharing. It is quick and
// never waits for the kernel, so a store's Watcher may call it, before
// Changed tells the kernel.
func (f *FS) ImageChanged(name string) { f.access.forget(name) }

// mayReadImage checks that the caller still sees the image the node of
// ref belongs to, as images/ checks at the top: a process whose working
// directory is inside an image unshared from it must not go on finding
// and opening files there. Files it has open stay readable, as in Unix.
// EACCES when the image is no longer shared with the caller, ENOENT when
// it is gone or another image took its name.
func (f *FS) mayReadImage(ctx context.Context, ref *snapRef) syscall.Errno {
	if ref.image == "" {
		return 0
	}
	uid := callerUID(ctx)
	if uid == 0 {
		return 0 // root sees every image
	}
	a := &f.access
	a.mu.RLock()
	g, ok := a.known[ref.image]
	gen := a.gen
	a.mu.RUnlock()
	if !ok || time.Since(g.at) >= imageAccessTTL {
		img, _, err := f.images.Image(ctx, ref.image)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return errno(f.log, err, "check image access", "image", ref.image)
		}
		a.remember(ref.image, img, gen)
		g.img = img
	}
	if g.img == nil {
		return syscall.ENOENT
	}
	if volID, seq := imageID(g.img); volID != ref.volID || seq != ref.seq {
		return syscall.ENOENT
	}
	if !g.img.VisibleTo(uid) {
		return syscall.EACCES
	}
	return 0
}
