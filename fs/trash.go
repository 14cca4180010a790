//go:build linux

package fs

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/chainfs/chainfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// trashName is the directory, in a volume's, of its snapshots in the
// trash: volumes/<volume>/.trash/<name>/ is a deleted snapshot's tree,
// read-only like any other, under the name 'chainfs trash list' gives it.
// It is found by name and never listed, so that copying a volume's
// directory does not copy what was deleted from it.
const trashName = ".trash"

// trashDir is volumes/<volume>/.trash/.
type trashDir struct {
	gofs.Inode
	readOnlyNode
	fs     *FS
	volume string
	volID  uint64
}

var (
	_ = (gofs.NodeLookuper)((*trashDir)(nil))
	_ = (gofs.NodeReaddirer)((*trashDir)(nil))
	_ = (gofs.NodeGetattrer)((*trashDir)(nil))
)

// trashRoot looks up .trash in a volume's directory.
func (f *FS) trashRoot(ctx context.Context, parent *gofs.Inode, volume string, volID uint64, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d := &trashDir{fs: f, volume: volume, volID: volID}
	if errno := d.fill(ctx, &out.Attr); errno != 0 {
		return nil, errno
	}
	out.Ino = out.Attr.Ino
	out.SetEntryTimeout(listTimeout)
	out.SetAttrTimeout(listTimeout)
	return parent.NewInode(ctx, d, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: out.Ino}), 0
}

// fill writes the directory's attributes: its time is the newest
// deletion's.
func (d *trashDir) fill(ctx context.Context, a *fuse.Attr) syscall.Errno {
	trash, err := d.fs.repo.Trash(ctx, d.volume)
	if err != nil {
		return errno(d.fs.log, err, "stat trash", "volume", d.volume)
	}
	t := d.fs.started
	for _, s := range trash {
		if s.Trashed.Time.After(t) {
			t = s.Trashed.Time
		}
	}
	fixedDir(a, 0o555, len(trash), t)
	a.Uid = d.fs.owner
	a.Ino = inodeNumber("trash", []uint64{d.volID}, "")
	return 0
}

// Getattr (NodeGetattrer).
func (d *trashDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(listTimeout)
	return d.fill(ctx, &out.Attr)
}

// Readdir lists the snapshots in the trash (NodeReaddirer).
func (d *trashDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	trash, err := d.fs.repo.Trash(ctx, d.volume)
	if err != nil {
		return nil, errno(d.fs.log, err, "readdir trash", "volume", d.volume)
	}
	list := make([]fuse.DirEntry, len(trash))
	for i, name := range store.TrashNames(trash) {
		list[i] = fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: trashRootIno(trash[i].VolumeID, trash[i].Seq)}
	}
	return gofs.NewListDirStream(list), 0
}

// Lookup finds a snapshot in the trash (NodeLookuper).
func (d *trashDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	s, err := d.fs.repo.TrashedSnapshot(ctx, d.volume, name)
	if err != nil {
		return nil, uncachedMiss(out, errno(d.fs.log, err, "lookup trash", "volume", d.volume, "snapshot", name))
	}
	ref := snapRef{volume: d.volume, volID: s.VolumeID, seq: s.Seq, name: s.Name, trashed: true, rd: d.fs.repo}
	return d.fs.snapshotRoot(ctx, &d.Inode, ref, s.RootDir, out), 0
}

// trashRootIno is the inode number of a trashed snapshot's top directory.
func trashRootIno(volID, seq uint64) uint64 {
	return inodeNumber("trashed snapshot", []uint64{volID, seq}, "")
}

// trashWhy is user.chainfs.why of a snapshot in the trash: when it went
// there, by what, and when it goes for good.
func (f *FS) trashWhy(ctx context.Context, ref *snapRef) ([]byte, error) {
	s, err := f.repo.TrashedSnapshot(ctx, ref.volume, (&store.Snapshot{Name: ref.name, Seq: ref.seq}).TrashRef())
	if err != nil {
		return nil, err
	}
	days, err := f.repo.TrashDays(ctx)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "in the trash: deleted (%s) at %s; deleted for good after %s",
		s.Trashed.By, s.Trashed.Time.Local().Format("2006-01-02 15:04"), s.Expires(days).Local().Format(time.DateTime)), nil
}
