//go:build linux

package fs

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"

	"github.com/chainfs/chainfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// snapRef names the snapshot (or image) a node belongs to and what its
// trees and blocks are read from.
type snapRef struct {
	volume string
	// image is the image's name, "" for a volume's snapshot: who may see
	// an image is checked at every lookup and open below it.
	image string
	volID uint64
	seq   uint64
	name  string
	// trashed says the snapshot is in the trash (.trash): its name may
	// be another snapshot's now, so it is found by seq.
	trashed bool
	rd      store.Reader
}

// entryNode is any file, directory, symlink or special file of a
// snapshot, which never changes. The kernel keeps a node for every name
// it has looked up, hundreds of thousands after an ls -R, so a node keeps
// its attributes and where its entry lies, not the entry: its decoded
// directory stays in the tree cache, bounded, and what only some requests
// want (a symlink's target, xattrs, the block list) is found there again
// (entry).
type entryNode struct {
	gofs.Inode
	readOnlyNode
	fs   *FS
	snap *snapRef // shared by every node of the snapshot
	attr fuse.Attr
	// tree is a directory's own tree, and for anything else the tree it
	// lies in (a directory's is its parent node's tree). The top
	// directory of a snapshot lies in none and keeps its entry in root.
	tree      store.Hash
	root      *store.Entry
	hasXattrs bool
	path      string // in the snapshot, for inode numbers and log lines
	ino       uint64
}

var (
	_ = (gofs.NodeGetattrer)((*entryNode)(nil))
	_ = (gofs.NodeLookuper)((*entryNode)(nil))
	_ = (gofs.NodeReaddirer)((*entryNode)(nil))
	_ = (gofs.NodeOpendirHandler)((*entryNode)(nil))
	_ = (gofs.NodeOpener)((*entryNode)(nil))
	_ = (gofs.NodeReadlinker)((*entryNode)(nil))
	_ = (gofs.NodeGetxattrer)((*entryNode)(nil))
	_ = (gofs.NodeListxattrer)((*entryNode)(nil))
	_ = (gofs.NodeLseeker)((*entryNode)(nil))
)

// newEntryNode makes the node of e, found in tree dir (the zero hash for
// a snapshot's top directory, whose entry the node then keeps).
func newEntryNode(f *FS, snap *snapRef, e *store.Entry, dir store.Hash, path string) *entryNode {
	n := &entryNode{fs: f, snap: snap, tree: dir, hasXattrs: len(e.Xattrs) > 0, path: path}
	if e.Type == store.TypeDir {
		n.tree = e.Subtree
	}
	if dir == (store.Hash{}) {
		n.root = e
	}
	n.ino = entryIno(snap, e, path)
	fillAttr(&n.attr, e)
	n.attr.Ino = n.ino
	return n
}

// entry finds the node's entry again: in the tree cache, or decoded once
// more. Only what a request holds pins the decoded directory.
func (n *entryNode) entry(ctx context.Context) (*store.Entry, syscall.Errno) {
	if n.root != nil {
		return n.root, 0
	}
	dir := n.tree
	if n.attr.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		var p *entryNode
		if _, parent := n.Parent(); parent != nil {
			p, _ = parent.Operations().(*entryNode)
		}
		if p == nil {
			return nil, n.errno(fmt.Errorf("a directory without its parent: %w", store.ErrCorrupt), "find entry")
		}
		dir = p.tree
	}
	entries, err := n.fs.tree(ctx, n.snap.rd, dir)
	if err != nil {
		return nil, n.errno(err, "read directory")
	}
	name := n.path[strings.LastIndexByte(n.path, '/')+1:]
	i := sort.Search(len(entries), func(i int) bool { return entries[i].Name >= name })
	if i == len(entries) || entries[i].Name != name {
		return nil, n.errno(fmt.Errorf("%s: not in its directory's tree %s: %w", name, dir.Short(), store.ErrCorrupt), "find entry")
	}
	return &entries[i], 0
}

// entryIno is the inode number of an entry: the names of a hard-link group
// share theirs.
func entryIno(snap *snapRef, e *store.Entry, path string) uint64 {
	if e.IsHardLink() {
		return inodeNumber("link", []uint64{snap.volID, snap.seq, e.Dev, e.Ino}, "")
	}
	return inodeNumber("entry", []uint64{snap.volID, snap.seq}, path)
}

// fill writes the entry's attributes exactly as the source had them.
func (n *entryNode) fill(a *fuse.Attr) { *a = n.attr }

// fillAttr writes e's attributes exactly as the source had them, all but
// the inode number.
func fillAttr(a *fuse.Attr, e *store.Entry) {
	a.Mode = e.Type.Bits() | e.Mode
	a.Uid, a.Gid = e.UID, e.GID
	a.Atime, a.Atimensec = uint64(e.Atime.Sec), e.Atime.Nsec
	a.Mtime, a.Mtimensec = uint64(e.Mtime.Sec), e.Mtime.Nsec
	a.Ctime, a.Ctimensec = uint64(e.Ctime.Sec), e.Ctime.Nsec
	a.Rdev = uint32(e.Rdev)
	a.Nlink = 1
	if e.Type != store.TypeDir {
		a.Nlink = max(e.Nlink, 1)
		a.Size = e.Size
	}
	if e.Type == store.TypeSymlink {
		a.Size = uint64(len(e.Target))
	}
	allocated := e.Size
	if e.Sparse {
		allocated = 0
		for _, x := range e.Extents {
			allocated += x.Len
		}
	}
	if e.Type == store.TypeRegular {
		a.Blocks = (allocated + 511) / 512
	}
	a.Blksize = 4096
	if e.BlockSize != 0 {
		a.Blksize = e.BlockSize
	}
}

// Getattr (NodeGetattrer). Below an image, only a caller who still sees
// it, or who has the file open, gets the attributes.
func (n *entryNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if fh == nil {
		if errno := n.fs.mayReadImage(ctx, n.snap); errno != 0 {
			return errno
		}
	}
	n.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (n *entryNode) childPath(name string) string {
	if n.path == "" {
		return name
	}
	return n.path + "/" + name
}

func (n *entryNode) children(ctx context.Context) ([]store.Entry, syscall.Errno) {
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, syscall.ENOTDIR
	}
	entries, err := n.fs.tree(ctx, n.snap.rd, n.tree)
	if err != nil {
		return nil, n.errno(err, "read directory")
	}
	return entries, 0
}

func (n *entryNode) errno(err error, op string) syscall.Errno {
	return errno(n.fs.log, err, op, "volume", n.snap.volume, "snapshot", n.snap.name, "path", "/"+n.path)
}

// Lookup (NodeLookuper).
func (n *entryNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.mayReadImage(ctx, n.snap); errno != 0 {
		// Not a miss to keep: the name is there for those who see the
		// image.
		return nil, uncachedMiss(out, errno)
	}
	entries, errno := n.children(ctx)
	if errno != 0 {
		return nil, errno
	}
	i := sort.Search(len(entries), func(i int) bool { return entries[i].Name >= name })
	if i == len(entries) || entries[i].Name != name {
		// No timeout set: the mount's NegativeTimeout applies, since
		// what a snapshot lacks it lacks for good.
		return nil, syscall.ENOENT
	}
	child := newEntryNode(n.fs, n.snap, &entries[i], n.tree, n.childPath(name))
	child.fill(&out.Attr)
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: entries[i].Type.Bits(), Ino: child.ino}), 0
}

// OpendirHandle checks that the caller still sees the image the
// directory belongs to, and lets the kernel keep the listing: a
// directory of a snapshot never changes, and a second ls -R of it asks
// the daemon for nothing but the opens (NodeOpendirHandler).
func (n *entryNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.fs.mayReadImage(ctx, n.snap); errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle is an open directory of a snapshot. Its listing is made at
// the first read, which a listing the kernel keeps never comes to.
type dirHandle struct {
	n  *entryNode
	ds gofs.DirStream
}

var (
	_ = (gofs.FileReaddirenter)((*dirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*dirHandle)(nil))
)

func (d *dirHandle) stream(ctx context.Context) syscall.Errno {
	if d.ds != nil {
		return 0
	}
	ds, errno := d.n.Readdir(ctx)
	d.ds = ds
	return errno
}

// Readdirent (FileReaddirenter).
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := d.stream(ctx); errno != 0 {
		return nil, errno
	}
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

// Seekdir (FileSeekdirer).
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := d.stream(ctx); errno != 0 {
		return errno
	}
	return d.ds.(gofs.FileSeekdirer).Seekdir(ctx, off)
}

// Readdir lists the directory in name order, with the inode numbers
// Lookup gives (NodeReaddirer).
func (n *entryNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries, errno := n.children(ctx)
	if errno != 0 {
		return nil, errno
	}
	list := make([]fuse.DirEntry, len(entries))
	for i := range entries {
		e := &entries[i]
		list[i] = fuse.DirEntry{Name: e.Name, Mode: e.Type.Bits(), Ino: entryIno(n.snap, e, n.childPath(e.Name))}
	}
	return gofs.NewListDirStream(list), 0
}

// Readlink (NodeReadlinker).
func (n *entryNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if errno := n.fs.mayReadImage(ctx, n.snap); errno != 0 {
		return nil, errno
	}
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, syscall.EINVAL
	}
	e, errno := n.entry(ctx)
	if errno != 0 {
		return nil, errno
	}
	return []byte(e.Target), 0
}

// The mount's own attributes of a snapshot's top directory: the reason of
// the snapshot's hold, and why retention keeps it or when it deletes it.
// They are not listed (Listxattr), so that copies of the tree with its
// attributes (rsync -X, cp -a, tar --xattrs) take the source's only; they
// shadow attributes of those names in the source.
const (
	holdXattr = "user.chainfs.hold"
	whyXattr  = "user.chainfs.why"
)

// Getxattr (NodeGetxattrer).
func (n *entryNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if errno := n.fs.mayReadImage(ctx, n.snap); errno != 0 {
		return 0, errno
	}
	if n.ownXattr(attr) {
		return n.snapshotXattr(ctx, attr, dest)
	}
	if !n.hasXattrs {
		return 0, syscall.ENODATA
	}
	e, errno := n.entry(ctx)
	if errno != 0 {
		return 0, errno
	}
	for _, x := range e.Xattrs {
		if x.Name == attr {
			return xattrValue(dest, x.Value)
		}
	}
	return 0, syscall.ENODATA
}

// ownXattr reports whether name is one of the mount's own attributes here:
// on a volume's snapshot's top directory, where the source's of that name
// are neither read nor listed.
func (n *entryNode) ownXattr(name string) bool {
	return (name == holdXattr || name == whyXattr) && n.root != nil && n.snap.image == ""
}

// xattrValue answers a getxattr with value.
func xattrValue(dest, value []byte) (uint32, syscall.Errno) {
	if len(dest) < len(value) {
		return uint32(len(value)), syscall.ERANGE
	}
	return uint32(copy(dest, value)), 0
}

// snapshotXattr answers the mount's own attributes from the snapshot's
// record as it is now, so that a hold or a release shows at once: ENODATA
// when the snapshot is not held, or no retention is known. Only root and
// the repository's owner, who may place and release holds, are told; a
// reason may name a case.
func (n *entryNode) snapshotXattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !n.fs.ownerOrRoot(ctx) {
		return 0, syscall.ENODATA
	}
	if n.snap.trashed {
		if attr != whyXattr {
			return 0, syscall.ENODATA // in the trash, it cannot be held
		}
		why, err := n.fs.trashWhy(ctx, n.snap)
		if err != nil {
			return 0, n.errno(err, "explain the trash")
		}
		return xattrValue(dest, why)
	}
	if attr == whyXattr {
		if n.fs.retention == nil {
			return 0, syscall.ENODATA
		}
		why, err := n.fs.retention(ctx, n.snap.volume, n.snap.name)
		if err != nil {
			return 0, n.errno(err, "explain retention")
		}
		return xattrValue(dest, []byte(why))
	}
	s, err := n.fs.repo.Snapshot(ctx, n.snap.volume, n.snap.name)
	if err != nil {
		return 0, n.errno(err, "read hold")
	}
	if s.Hold == nil {
		return 0, syscall.ENODATA
	}
	return xattrValue(dest, []byte(s.Hold.Reason))
}

// Listxattr (NodeListxattrer).
func (n *entryNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if errno := n.fs.mayReadImage(ctx, n.snap); errno != 0 {
		return 0, errno
	}
	if !n.hasXattrs {
		return 0, 0
	}
	e, errno := n.entry(ctx)
	if errno != 0 {
		return 0, errno
	}
	size := 0
	for _, x := range e.Xattrs {
		if !n.ownXattr(x.Name) {
			size += len(x.Name) + 1
		}
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, x := range e.Xattrs {
		if !n.ownXattr(x.Name) {
			off += copy(dest[off:], x.Name)
			dest[off] = 0
			off++
		}
	}
	return uint32(size), 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the source's extents
// (NodeLseeker).
func (n *entryNode) Lseek(ctx context.Context, f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	var e *store.Entry
	if h, ok := f.(*fileHandle); ok {
		e = h.entry
	} else {
		var errno syscall.Errno
		if e, errno = n.entry(ctx); errno != 0 {
			return 0, errno
		}
	}
	if off >= e.Size {
		return 0, syscall.ENXIO
	}
	extents := e.Extents
	if !e.Sparse {
		extents = []store.Extent{{Off: 0, Len: e.Size}}
	}
	switch whence {
	case seekData:
		for _, x := range extents {
			if off < x.Off+x.Len {
				return max(off, x.Off), 0
			}
		}
		return 0, syscall.ENXIO
	case seekHole:
		for _, x := range extents {
			if off < x.Off {
				return off, 0
			}
			if off < x.Off+x.Len {
				return x.Off + x.Len, 0
			}
		}
		return off, 0
	}
	return 0, syscall.EINVAL
}

// Open opens a regular file for reading (NodeOpener). Snapshots never
// change, so the kernel keeps the file's pages across opens; a close has
// nothing to flush, so the kernel does not ask (one request less for
// each file a tar or rsync reads).
func (n *entryNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&openFlagsWrite != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.attr.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EINVAL
	}
	if errno := n.fs.mayReadImage(ctx, n.snap); errno != 0 {
		return nil, 0, errno
	}
	e, errno := n.entry(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	blocks, err := store.OpenBlocks(ctx, n.snap.rd, e)
	if err != nil {
		return nil, 0, n.errno(err, "open")
	}
	return newFileHandle(n, e, blocks), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}
