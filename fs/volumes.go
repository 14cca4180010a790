//go:build linux

package fs

import (
	"context"
	"syscall"

	"github.com/chainfs/chainfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// volumesNode is volumes/: one directory per volume, read from the store
// at every listing.
type volumesNode struct {
	gofs.Inode
	readOnlyNode
	fs *FS
}

var (
	_ = (gofs.NodeLookuper)((*volumesNode)(nil))
	_ = (gofs.NodeReaddirer)((*volumesNode)(nil))
	_ = (gofs.NodeGetattrer)((*volumesNode)(nil))
)

// Getattr (NodeGetattrer): a volume is a subdirectory.
func (n *volumesNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	vols, err := n.fs.repo.Volumes(ctx)
	if err != nil {
		return errno(n.fs.log, err, "stat volumes")
	}
	fixedDir(&out.Attr, 0o555, len(vols), n.fs.started)
	out.SetTimeout(listTimeout)
	return 0
}

// Readdir lists the volumes (NodeReaddirer).
func (n *volumesNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	vols, err := n.fs.repo.Volumes(ctx)
	if err != nil {
		return nil, errno(n.fs.log, err, "readdir volumes")
	}
	list := make([]fuse.DirEntry, 0, len(vols))
	for _, v := range vols {
		list = append(list, fuse.DirEntry{Name: v.Name, Mode: syscall.S_IFDIR, Ino: volumeIno(v.ID)})
	}
	return gofs.NewListDirStream(list), 0
}

func volumeIno(id uint64) uint64 { return inodeNumber("volume", []uint64{id}, "") }

// Lookup finds a volume (NodeLookuper).
func (n *volumesNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	v, err := n.fs.repo.Volume(ctx, name)
	if err != nil {
		return nil, uncachedMiss(out, errno(n.fs.log, err, "lookup volume", "volume", name))
	}
	node := &volumeNode{fs: n.fs, name: v.Name, id: v.ID}
	if errno := node.fill(ctx, &out.Attr); errno != 0 {
		return nil, errno
	}
	out.Ino = volumeIno(v.ID)
	out.SetEntryTimeout(listTimeout)
	out.SetAttrTimeout(listTimeout)
	return n.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: out.Ino}), 0
}

// volumeNode is volumes/<volume>/: its snapshots and "latest". Of the
// calls that change a tree, it does Mkdir and Rmdir.
type volumeNode struct {
	gofs.Inode
	readOnlyNode
	fs   *FS
	name string
	id   uint64
}

var (
	_ = (gofs.NodeLookuper)((*volumeNode)(nil))
	_ = (gofs.NodeReaddirer)((*volumeNode)(nil))
	_ = (gofs.NodeGetattrer)((*volumeNode)(nil))
	_ = (gofs.NodeMkdirer)((*volumeNode)(nil))
	_ = (gofs.NodeRmdirer)((*volumeNode)(nil))
)

// Getattr (NodeGetattrer). The owner may make snapshots with mkdir. Each
// snapshot is a subdirectory, and its time is the newest's, when the
// directory last changed.
func (n *volumeNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(listTimeout)
	return n.fill(ctx, &out.Attr)
}

// fill writes the volume directory's attributes: two reads, however many
// snapshots there are.
func (n *volumeNode) fill(ctx context.Context, a *fuse.Attr) syscall.Errno {
	count, err := n.fs.repo.SnapshotCount(ctx, n.name)
	if err != nil {
		return errno(n.fs.log, err, "stat volume", "volume", n.name)
	}
	t := n.fs.started
	if count > 0 {
		newest, err := n.fs.repo.Snapshot(ctx, n.name, "latest")
		if err != nil {
			return errno(n.fs.log, err, "stat volume", "volume", n.name)
		}
		t = newest.Time
	}
	fixedDir(a, 0o755, count, t)
	a.Uid = n.fs.owner
	return 0
}

// Readdir lists the snapshots, oldest first, and latest (NodeReaddirer).
func (n *volumeNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	snaps, err := n.fs.repo.Snapshots(ctx, n.name)
	if err != nil {
		return nil, errno(n.fs.log, err, "readdir volume", "volume", n.name)
	}
	list := make([]fuse.DirEntry, 0, len(snaps)+1)
	for _, s := range snaps {
		list = append(list, fuse.DirEntry{Name: s.Name, Mode: syscall.S_IFDIR, Ino: snapshotIno(&s)})
	}
	if len(snaps) > 0 {
		list = append(list, fuse.DirEntry{Name: "latest", Mode: syscall.S_IFLNK, Ino: latestIno(n.id)})
	}
	return gofs.NewListDirStream(list), 0
}

func snapshotIno(s *store.Snapshot) uint64 { return rootIno(s.VolumeID, s.Seq) }

// rootIno is the inode number of a snapshot's or an image's top directory.
func rootIno(volID, seq uint64) uint64 { return inodeNumber("snapshot", []uint64{volID, seq}, "") }

func latestIno(volID uint64) uint64 { return inodeNumber("latest", []uint64{volID}, "") }

// Lookup finds a snapshot by name, latest, .versions or .trash
// (NodeLookuper).
func (n *volumeNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	switch name {
	case versionsName:
		return n.fs.versionsRoot(ctx, &n.Inode, n.name, n.id, out)
	case trashName:
		return n.fs.trashRoot(ctx, &n.Inode, n.name, n.id, out)
	}
	snap, err := n.fs.repo.Snapshot(ctx, n.name, name)
	if err != nil {
		return nil, uncachedMiss(out, errno(n.fs.log, err, "lookup snapshot", "volume", n.name, "snapshot", name))
	}
	if name == "latest" {
		latestAttr(&out.Attr, snap)
		out.Ino = latestIno(n.id)
		// Cached like the list it belongs to (Changed tells the kernel at
		// once): every path through latest would else cost a lookup and
		// a readlink, ten times the cost of a walk of the tree itself.
		out.SetEntryTimeout(listTimeout)
		out.SetAttrTimeout(listTimeout)
		return n.NewInode(ctx, &latestLink{fs: n.fs, volume: n.name}, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: out.Ino}), 0
	}
	return n.fs.snapshotRoot(ctx, &n.Inode, snapRef{volume: n.name, volID: snap.VolumeID, seq: snap.Seq, name: snap.Name, rd: n.fs.repo}, snap.RootDir, out), 0
}

// snapshotRoot makes the node of a snapshot's (or an image's) top
// directory. Its entry may go (the snapshot deleted), so only its
// attributes get the long timeout.
func (f *FS) snapshotRoot(ctx context.Context, parent *gofs.Inode, ref snapRef, rootDir store.Entry, out *fuse.EntryOut) *gofs.Inode {
	root := newEntryNode(f, &ref, &rootDir, store.Hash{}, "")
	root.ino = rootIno(ref.volID, ref.seq)
	if ref.trashed {
		// Not the node it had when listed: that one finds it by name.
		root.ino = trashRootIno(ref.volID, ref.seq)
	}
	root.attr.Ino = root.ino
	root.fill(&out.Attr)
	out.SetEntryTimeout(listTimeout)
	out.SetAttrTimeout(immutableTimeout)
	return parent.NewInode(ctx, root, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: root.ino})
}

// Mkdir makes a snapshot named name, as ZFS's .zfs/snapshot does
// (NodeMkdirer).
func (n *volumeNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.mayControl(ctx); errno != 0 {
		return nil, errno
	}
	// mkdir holds this directory's lock in the kernel until it returns, so
	// it waits for the snapshot here; .control/snapshot does not block.
	wait, err := n.fs.ctl.Snapshot(ctx, n.name, name)
	if err == nil {
		err = wait(ctx)
	}
	if err != nil {
		return nil, errno(n.fs.log, err, "mkdir snapshot", "volume", n.name, "snapshot", name)
	}
	return n.Lookup(ctx, name, out)
}

// Rmdir deletes a snapshot (NodeRmdirer).
func (n *volumeNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.fs.mayControl(ctx); errno != 0 {
		return errno
	}
	if name == "latest" {
		return syscall.ENOTDIR
	}
	wait, err := n.fs.ctl.Delete(ctx, n.name, name)
	if err == nil {
		err = wait(ctx)
	}
	if err != nil {
		return errno(n.fs.log, err, "rmdir snapshot", "volume", n.name, "snapshot", name)
	}
	return 0
}

// latestLink is volumes/<volume>/latest, a symlink to the newest snapshot,
// read afresh at every readlink.
type latestLink struct {
	gofs.Inode
	readOnlyNode
	fs     *FS
	volume string
}

var (
	_ = (gofs.NodeReadlinker)((*latestLink)(nil))
	_ = (gofs.NodeGetattrer)((*latestLink)(nil))
)

// Readlink names the newest snapshot (NodeReadlinker).
func (l *latestLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	snap, err := l.fs.repo.Snapshot(ctx, l.volume, "latest")
	if err != nil {
		return nil, errno(l.fs.log, err, "readlink latest", "volume", l.volume)
	}
	return []byte(snap.Name), 0
}

// Getattr (NodeGetattrer).
func (l *latestLink) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	snap, err := l.fs.repo.Snapshot(ctx, l.volume, "latest")
	if err != nil {
		return errno(l.fs.log, err, "getattr latest", "volume", l.volume)
	}
	latestAttr(&out.Attr, snap)
	out.SetTimeout(listTimeout)
	return 0
}

// latestAttr fills the attributes of latest, a symlink to snap made when
// snap was.
func latestAttr(a *fuse.Attr, snap *store.Snapshot) {
	a.Mode = syscall.S_IFLNK | 0o777
	a.Size = uint64(len(snap.Name))
	a.Nlink = 1
	a.SetTimes(&snap.Time, &snap.Time, &snap.Time)
}

// ownerOrRoot reports whether a request comes from root or the
// repository's owner (or from the daemon itself).
func (f *FS) ownerOrRoot(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	return !ok || c.Uid == 0 || c.Uid == f.owner
}

// mayControl lets root and the repository's owner act.
func (f *FS) mayControl(ctx context.Context) syscall.Errno {
	if !f.ownerOrRoot(ctx) {
		return syscall.EACCES
	}
	if f.ctl == nil {
		return syscall.EROFS
	}
	return 0
}
