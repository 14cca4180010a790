//go:build linux

package fs

import (
	"context"
	"errors"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/report"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// versionsName is the directory, in a volume's, of its files' versions:
// volumes/<volume>/.versions/<path>/ holds each distinct version of the
// file at path once, named after the earliest snapshot that holds it
// (report.Versions). It is found by name and never listed, so that a walk
// of volumes/ does not descend into every file's history.
const versionsName = ".versions"

// versionsDir is .versions/<path>/ for a path that is a directory (""
// for .versions itself): its names are those of the newest snapshot that
// holds the directory, each a versionsDir or a fileVersions in turn.
//
// Every directory of .versions is the repository owner's alone (and
// root's): a version of a file is shown outside the snapshot that holds
// it, where the directories around it, as they were then, would keep
// other users out, and no one set of attributes stands for all of them.
type versionsDir struct {
	gofs.Inode
	readOnlyNode
	versionsPlace
}

// versionsPlace is what every directory of .versions knows: the path it
// stands for, in which volume, and its attributes (versionsAttr).
type versionsPlace struct {
	fs     *FS
	volume string
	volID  uint64
	path   string
	attr   fuse.Attr
}

// Getattr (NodeGetattrer).
func (p *versionsPlace) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr = p.attr
	out.SetTimeout(listTimeout)
	return 0
}

// fileVersions is .versions/<path>/ for a path that is a file, symlink or
// special file: one entry per version, named after its snapshot.
type fileVersions struct {
	gofs.Inode
	readOnlyNode
	versionsPlace

	// The versions last listed, kept as long as the lists of snapshots
	// are: ls -l looks each one up after the listing.
	mu       sync.Mutex
	listed   []report.Version
	listedAt time.Time
}

var (
	_ = (gofs.NodeLookuper)((*versionsDir)(nil))
	_ = (gofs.NodeReaddirer)((*versionsDir)(nil))
	_ = (gofs.NodeGetattrer)((*versionsDir)(nil))
	_ = (gofs.NodeLookuper)((*fileVersions)(nil))
	_ = (gofs.NodeReaddirer)((*fileVersions)(nil))
	_ = (gofs.NodeGetattrer)((*fileVersions)(nil))
)

// newestHolding finds p in the newest snapshot of volume that holds it.
func (f *FS) newestHolding(ctx context.Context, volume, p string) (*store.Entry, error) {
	snaps, err := f.repo.Snapshots(ctx, volume)
	if err != nil {
		return nil, err
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		e, err := store.Lookup(ctx, f.repo, &snaps[i].RootDir, p)
		if err == nil {
			return e, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return nil, store.ErrNotFound
}

// versionsRoot is the node of .versions in volume's directory.
func (f *FS) versionsRoot(ctx context.Context, parent *gofs.Inode, volume string, volID uint64, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if _, err := f.newestHolding(ctx, volume, ""); err != nil {
		return nil, uncachedMiss(out, errno(f.log, err, "lookup versions", "volume", volume))
	}
	d := &versionsDir{versionsPlace: versionsPlace{fs: f, volume: volume, volID: volID, attr: f.versionsAttr(versionsOfDir, volID, "")}}
	return f.versionsNode(ctx, parent, d, d.attr, out), 0
}

// Kinds of .versions directories, apart in inode numbers: a path that is
// a file in one snapshot and a directory in another is a new node when it
// changes.
const (
	versionsOfDir  = "versions of a directory"
	versionsOfFile = "versions of a file"
)

// versionsAttr is the attributes of .versions/<p>/: the repository
// owner's, closed to others (versionsDir). Its link count is 1, not
// counted, as it may be for a directory.
func (f *FS) versionsAttr(kind string, volID uint64, p string) fuse.Attr {
	a := fuse.Attr{Mode: syscall.S_IFDIR | 0o500, Nlink: 1, Owner: fuse.Owner{Uid: f.owner}}
	a.SetTimes(&f.started, &f.started, &f.started)
	a.Ino = inodeNumber(kind, []uint64{volID}, p)
	return a
}

// versionsNode answers a lookup of a .versions directory: its entry and
// attributes last as long as the lists of snapshots do.
func (f *FS) versionsNode(ctx context.Context, parent *gofs.Inode, node gofs.InodeEmbedder, a fuse.Attr, out *fuse.EntryOut) *gofs.Inode {
	out.Attr = a
	out.SetEntryTimeout(listTimeout)
	out.SetAttrTimeout(listTimeout)
	return parent.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: a.Ino})
}

// Readdir lists the names of the directory in the newest snapshot that
// holds it, each a directory of .versions (NodeReaddirer).
func (d *versionsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	dir, err := d.fs.newestHolding(ctx, d.volume, d.path)
	if err != nil {
		return nil, errno(d.fs.log, err, "readdir versions", "volume", d.volume, "path", d.path)
	}
	entries, err := d.fs.repo.Tree(ctx, dir.Subtree)
	if err != nil {
		return nil, errno(d.fs.log, err, "readdir versions", "volume", d.volume, "path", d.path)
	}
	list := make([]fuse.DirEntry, 0, len(entries))
	for _, e := range entries {
		kind := versionsOfFile
		if e.Type == store.TypeDir {
			kind = versionsOfDir
		}
		list = append(list, fuse.DirEntry{Name: e.Name, Mode: syscall.S_IFDIR,
			Ino: inodeNumber(kind, []uint64{d.volID}, path.Join(d.path, e.Name))})
	}
	return gofs.NewListDirStream(list), 0
}

// at is the place of a .versions directory below this one.
func (p *versionsPlace) at(kind, sub string) versionsPlace {
	return versionsPlace{fs: p.fs, volume: p.volume, volID: p.volID, path: sub, attr: p.fs.versionsAttr(kind, p.volID, sub)}
}

// Lookup finds a name of the directory in the newest snapshot that holds
// it, or an older one (a file deleted since) (NodeLookuper).
func (d *versionsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := path.Join(d.path, name)
	e, err := d.fs.newestHolding(ctx, d.volume, p)
	if err != nil {
		return nil, uncachedMiss(out, errno(d.fs.log, err, "lookup versions", "volume", d.volume, "path", p))
	}
	if e.Type == store.TypeDir {
		child := &versionsDir{versionsPlace: d.at(versionsOfDir, p)}
		return d.fs.versionsNode(ctx, &d.Inode, child, child.attr, out), 0
	}
	child := &fileVersions{versionsPlace: d.at(versionsOfFile, p)}
	return d.fs.versionsNode(ctx, &d.Inode, child, child.attr, out), 0
}

// versions lists the file's versions, or gives those listed within the
// lists' timeout.
func (v *fileVersions) versions(ctx context.Context) ([]report.Version, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.listed != nil && time.Since(v.listedAt) < listTimeout {
		return v.listed, nil
	}
	snaps, err := v.fs.repo.Snapshots(ctx, v.volume)
	if err != nil {
		return nil, err
	}
	vs, err := report.Versions(ctx, v.fs.repo, snaps, v.path)
	if err != nil {
		return nil, err
	}
	v.listed, v.listedAt = vs, time.Now()
	return vs, nil
}

// Readdir lists the versions by the snapshot each first appears in
// (NodeReaddirer).
func (v *fileVersions) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	vs, err := v.versions(ctx)
	if err != nil {
		return nil, errno(v.fs.log, err, "readdir versions", "volume", v.volume, "path", v.path)
	}
	list := make([]fuse.DirEntry, 0, len(vs))
	for i := range vs {
		ver := &vs[i]
		ino := entryIno(&snapRef{volID: v.volID, seq: ver.Seq}, &ver.Entry, v.path)
		list = append(list, fuse.DirEntry{Name: ver.Snapshot, Mode: ver.Entry.Type.Bits(), Ino: ino})
	}
	return gofs.NewListDirStream(list), 0
}

// Lookup finds a version by its snapshot's name: the file as that
// snapshot holds it, the same node as under volumes/<volume>/<snapshot>/
// (NodeLookuper).
func (v *fileVersions) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	vs, err := v.versions(ctx)
	if err != nil {
		return nil, uncachedMiss(out, errno(v.fs.log, err, "lookup versions", "volume", v.volume, "path", v.path))
	}
	for i := range vs {
		ver := &vs[i]
		if ver.Snapshot != name {
			continue
		}
		ref := &snapRef{volume: v.volume, volID: v.volID, seq: ver.Seq, name: ver.Snapshot, rd: v.fs.repo}
		node := newEntryNode(v.fs, ref, &ver.Entry, ver.Dir, v.path)
		node.fill(&out.Attr)
		out.SetEntryTimeout(listTimeout)
		out.SetAttrTimeout(immutableTimeout)
		return v.NewInode(ctx, node, gofs.StableAttr{Mode: ver.Entry.Type.Bits(), Ino: node.ino}), 0
	}
	return nil, uncachedMiss(out, syscall.ENOENT)
}
