//go:build linux

package fs

import (
	"container/list"
	"context"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Repository is what the file system reads. *store.Repo implements it.
type Repository interface {
	// Reader reads the trees and blocks of snapshots.
	store.Reader
	Volumes(ctx context.Context) ([]store.Volume, error)
	Volume(ctx context.Context, name string) (*store.Volume, error)
	Snapshots(ctx context.Context, volume string) ([]store.Snapshot, error)
	SnapshotCount(ctx context.Context, volume string) (int, error)
	Snapshot(ctx context.Context, volume, name string) (*store.Snapshot, error)
	// Trash, TrashedSnapshot and TrashDays show the snapshots in the
	// trash (volumes/<volume>/.trash).
	Trash(ctx context.Context, volume string) ([]store.Snapshot, error)
	TrashedSnapshot(ctx context.Context, volume, name string) (*store.Snapshot, error)
	TrashDays(ctx context.Context) (int, error)
	// Info says where the repository is (statfs reports its file
	// system), Index what it takes there.
	Info() store.Info
	Index() store.Index
}

// Images lists and finds images: the repository's own and a catalog's.
// *imagefile.Library implements it.
type Images interface {
	Images(ctx context.Context) ([]images.Image, error)
	// Image returns an image and the reader of its trees and blocks.
	Image(ctx context.Context, name string) (*images.Image, store.Reader, error)
}

// Controller runs the commands written to the control directory; the jobs
// run in the daemon, never in the FUSE handler. Each command returns once
// its job has begun, or failed to (everything decided at the start: no
// such volume or snapshot, busy, name taken), and wait returns the job's
// outcome. The caller is in ctx (fuse.FromContext).
type Controller interface {
	// Snapshot starts a snapshot.
	Snapshot(ctx context.Context, volume, name string) (wait func(context.Context) error, err error)
	// Delete starts deleting a snapshot.
	Delete(ctx context.Context, volume, snapshot string) (wait func(context.Context) error, err error)
	// Export starts making image from a snapshot and, when file is set,
	// writing it there as the caller (native, or tar for a name ending in
	// .tar); it returns once the image is made, and wait leaves no image
	// when the file fails.
	Export(ctx context.Context, volume, snapshot, image, file string) (wait func(context.Context) error, err error)
	// Reject records a command refused before it ran, for Status.
	Reject(ctx context.Context, file, command string, err error)
	// Status is the running and recent jobs that uid may see, one JSON
	// object a line.
	Status(uid uint32) []byte
}

// Options configure the file system.
type Options struct {
	Repo       Repository
	Images     Images
	Controller Controller
	Logger     *slog.Logger
	// OwnerUID may act through the control directory, besides root.
	OwnerUID uint32
	// TreeCache is how many decoded directory entries stay in memory
	// (0: DefaultTreeCache).
	TreeCache int
	// ReadAhead is how many blocks a sequential reader has fetched ahead
	// of it, in parallel (0: DefaultReadAhead; negative: none).
	ReadAhead int
	// Observer, if set, is told of every read, for metrics.
	Observer Observer
	// Retention, if set, says why a snapshot is kept or when retention
	// deletes it: user.chainfs.why on its top directory.
	Retention func(ctx context.Context, volume, snapshot string) (string, error)
}

// Defaults of Options.
const (
	DefaultTreeCache = 50_000
	DefaultReadAhead = 8
)

// Observer is told what the mount serves. Its methods are called on the
// read path: they must be quick and safe for concurrent use.
type Observer interface {
	// Read is called once a read request is answered: n bytes in took,
	// failed when it returned an error.
	Read(n int, took time.Duration, failed bool)
}

// Timeouts the kernel may cache for.
const (
	immutableTimeout = time.Hour   // anything below a snapshot
	listTimeout      = time.Second // the lists of volumes and snapshots
)

// FS is a mounted repository.
type FS struct {
	// started is when the file system was made: the time of its fixed
	// directories.
	started   time.Time
	repo      Repository
	retention func(ctx context.Context, volume, snapshot string) (string, error)
	images    Images
	ctl       Controller
	log       *slog.Logger
	owner     uint32
	trees     *treeCache
	// readAhead is Options.ReadAhead resolved: 0 means none.
	readAhead int
	observer  Observer

	root      *rootNode
	volumes   *gofs.Inode
	imagesDir *gofs.Inode
	access    imageAccess

	space spaceUsed
}

// spaceUsed is the repository's size for statfs, measured at most every
// two seconds and never under a lock: the measure walks the repository,
// and one statfs waiting on another's walk would stall df, and every
// caller behind it.
type spaceUsed struct {
	mu        sync.Mutex
	at        time.Time
	used      int64
	measuring bool
}

// get measures again (on this goroutine, without the lock) when the last
// figure is older than two seconds and no one else is measuring, and
// returns the newest figure; a caller that comes while another measures
// gets the last one (0 before the first) at once.
func (s *spaceUsed) get(measure func() (int64, error)) int64 {
	s.mu.Lock()
	if s.measuring || time.Since(s.at) <= 2*time.Second {
		used := s.used
		s.mu.Unlock()
		return used
	}
	s.measuring = true
	s.mu.Unlock()
	used, err := measure()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.measuring = false
	if err == nil {
		s.used, s.at = used, time.Now()
	}
	return s.used
}

// New makes the file system's root; mount it with Mount.
func New(opts Options) *FS {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	trees, ahead := opts.TreeCache, opts.ReadAhead
	if trees <= 0 {
		trees = DefaultTreeCache
	}
	if ahead == 0 {
		ahead = DefaultReadAhead
	}
	f := &FS{repo: opts.Repo, retention: opts.Retention, images: opts.Images, ctl: opts.Controller, log: log, owner: opts.OwnerUID,
		trees: newTreeCache(trees), readAhead: max(ahead, 0), observer: opts.Observer,
		access: imageAccess{known: map[string]imageGrant{}}, started: time.Now()}
	f.root = &rootNode{fs: f}
	return f
}

// Changed tells the kernel that a volume's list of snapshots changed:
// snapshot was made or deleted (with volume empty: image snapshot was made
// or removed). Call it after the change is committed, outside any FUSE
// operation on the directories concerned.
func (f *FS) Changed(volume, snapshot string) {
	if volume == "" {
		f.ImageChanged(snapshot)
	}
	if f.volumes == nil {
		return
	}
	if volume == "" {
		// The image's entry goes from the kernel's cache, and with it
		// what it cached below that no process holds: those names are
		// looked up, and checked, again.
		f.imagesDir.NotifyEntry(snapshot)
		f.imagesDir.NotifyContent(0, 0)
		return
	}
	f.volumes.NotifyEntry(volume)
	if v := f.volumes.GetChild(volume); v != nil {
		if snapshot != "" {
			v.NotifyEntry(snapshot)
		}
		v.NotifyEntry("latest")
		if l := v.GetChild("latest"); l != nil {
			// The kernel caches the link's target (symlink caching).
			l.NotifyContent(0, 0)
		}
		v.NotifyContent(0, 0)
	}
	f.volumes.NotifyContent(0, 0)
}

// treeCache keeps decoded tree blobs, shared by every snapshot, bounded by
// the number of entries held, but never below the keepRecent trees used
// last: a directory bigger than the bound stays while a walk visits its
// subdirectories, rather than being decoded again after each.
type treeCache struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // of *treeItem, most recent first
	items map[store.Hash]*list.Element
}

// keepRecent is how many of the trees used last the cache keeps whatever
// their size: a walk's path from a big directory down.
const keepRecent = 8

type treeItem struct {
	hash    store.Hash
	entries []store.Entry
}

func newTreeCache(maxEntries int) *treeCache {
	return &treeCache{max: maxEntries, order: list.New(), items: map[store.Hash]*list.Element{}}
}

// tree returns a decoded tree read from rd; decoding happens outside the
// lock. Trees are named by their content's hash, so one cache serves
// every reader.
func (f *FS) tree(ctx context.Context, rd store.Reader, h store.Hash) ([]store.Entry, error) {
	c := f.trees
	c.mu.Lock()
	if el, ok := c.items[h]; ok {
		c.order.MoveToFront(el)
		entries := el.Value.(*treeItem).entries
		c.mu.Unlock()
		return entries, nil
	}
	c.mu.Unlock()
	entries, err := rd.Tree(ctx, h)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[h]; !ok {
		c.items[h] = c.order.PushFront(&treeItem{h, entries})
		c.size += len(entries) + 1
		for c.size > c.max && c.order.Len() > keepRecent {
			el := c.order.Back()
			it := el.Value.(*treeItem)
			c.order.Remove(el)
			delete(c.items, it.hash)
			c.size -= len(it.entries) + 1
		}
	}
	return entries, nil
}

// rootNode is the mount's top directory.
type rootNode struct {
	gofs.Inode
	readOnlyNode
	fs *FS
}

var (
	_ = (gofs.NodeOnAdder)((*rootNode)(nil))
	_ = (gofs.NodeStatfser)((*rootNode)(nil))
	_ = (gofs.NodeGetattrer)((*rootNode)(nil))
	_ = (gofs.NodeLookuper)((*rootNode)(nil))
)

// OnAdd builds the fixed top of the tree (NodeOnAdder).
func (r *rootNode) OnAdd(ctx context.Context) {
	f := r.fs
	f.volumes = r.NewPersistentInode(ctx, &volumesNode{fs: f}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoVolumes})
	r.AddChild("volumes", f.volumes, false)
	f.imagesDir = r.NewPersistentInode(ctx, &imagesNode{fs: f}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoImages})
	r.AddChild("images", f.imagesDir, false)
	ctl := r.NewPersistentInode(ctx, &staticDir{mode: 0o755, started: r.fs.started}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoControl})
	r.AddChild(".control", ctl, false)
	for _, c := range []struct {
		name string
		ino  uint64
		mode uint32
	}{{"snapshot", inoCtlSnapshot, 0o200}, {"delete", inoCtlDelete, 0o200}, {"export", inoCtlExport, 0o200}, {"status", inoCtlStatus, 0o444}} {
		node := &controlFile{fs: f, name: c.name, mode: c.mode}
		ctl.AddChild(c.name, r.NewPersistentInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: c.ino}), false)
	}
}

// Lookup finds the fixed children of the root (NodeLookuper).
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return lookupFixed(ctx, &r.Inode, name, out)
}

// lookupFixed answers the lookup of a child added in code, with the
// lists' timeout: the mount sets no default, so that a timeout of 0
// (images/<name>, whose visibility depends on the caller) stays 0.
func lookupFixed(ctx context.Context, parent *gofs.Inode, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	child := parent.GetChild(name)
	if child == nil {
		return nil, uncachedMiss(out, syscall.ENOENT)
	}
	if ga, ok := child.Operations().(gofs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
		out.Attr = a.Attr
	}
	out.SetEntryTimeout(listTimeout)
	out.SetAttrTimeout(listTimeout)
	return child, 0
}

// uncachedMiss returns the errno of a failed lookup in a list that
// changes (volumes, snapshots, images) so that the kernel does not keep
// the miss: go-fuse turns an ENOENT with no entry timeout into a negative
// entry cached for the mount's NegativeTimeout, which is for the trees of
// snapshots, and passes it on as an error when a timeout is set.
func uncachedMiss(out *fuse.EntryOut, e syscall.Errno) syscall.Errno {
	out.SetEntryTimeout(listTimeout)
	return e
}

// Getattr describes the root (NodeGetattrer): volumes/, images/ and
// .control/ are its subdirectories.
func (r *rootNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fixedDir(&out.Attr, 0o555, 3, r.fs.started)
	return 0
}

// fixedDir fills the attributes of a directory of the mount's own: its
// link count is 2 and one per subdirectory, as a directory's is.
func fixedDir(a *fuse.Attr, mode uint32, subdirs int, t time.Time) {
	a.Mode = syscall.S_IFDIR | mode
	a.Nlink = uint32(2 + subdirs)
	a.SetTimes(&t, &t, &t)
}

// Statfs reports the repository's real usage, so df on the mount is true
// (NodeStatfser).
func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	f := r.fs
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.repo.Info().Dir, &st); err != nil {
		return errno(f.log, err, "statfs")
	}
	used := f.space.get(f.repo.Index().SpaceUsed)
	bsize := uint64(st.Bsize)
	avail := st.Bavail * bsize
	out.Bsize = uint32(bsize)
	out.Frsize = uint32(bsize)
	out.Blocks = (uint64(used) + avail) / bsize
	out.Bfree = avail / bsize
	out.Bavail = avail / bsize
	out.NameLen = 255
	return 0
}

// staticDir is a read-only directory whose children are added in code:
// files, no subdirectories.
type staticDir struct {
	gofs.Inode
	readOnlyNode
	mode    uint32
	started time.Time
}

var (
	_ = (gofs.NodeGetattrer)((*staticDir)(nil))
	_ = (gofs.NodeLookuper)((*staticDir)(nil))
)

// Lookup finds a child (NodeLookuper).
func (d *staticDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return lookupFixed(ctx, &d.Inode, name, out)
}

// Getattr (NodeGetattrer).
func (d *staticDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fixedDir(&out.Attr, d.mode, 0, d.started)
	return 0
}
