package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/chainfs/chainfs/fs/source/ignore"
	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// Options configure one snapshot run.
type Options struct {
	// Full re-reads every file instead of carrying unchanged ones over.
	Full bool
	// Workers is how many files are read and hashed at once. The default,
	// four per CPU, keeps the disk busy on cold small files, whose reads
	// wait on the disk rather than the CPU.
	Workers int
	// Skip names directories never entered, such as the repository itself
	// or a chainfs mount point, so a snapshot never contains itself.
	Skip []string
	// Progress, if set, is updated as the walk goes.
	Progress *Progress
	// Logger receives one line per warning; nil discards them.
	Logger *slog.Logger
	// Started, if set, is called once the snapshot has begun (the volume
	// is claimed and the name taken) with the snapshot's name.
	Started func(name string)
	// Seed, for the first snapshot of a volume whose source was just
	// written from an image, is the image's top directory: a file whose
	// type, size, mtime, mode and owner match the image's entry at its
	// path takes the image's blocks unread, so the snapshot links them.
	Seed *store.Entry
	// Root, if set, is the source as its caller opened and holds it (a
	// volume just written from an image: what was written, not what its
	// path names by now); vol.Source then only names it.
	Root *os.File
	// AllowEmpty takes the snapshot even if the source looks replaced
	// (ErrSourceReplaced): empty where the previous snapshot was not, or
	// on another file system than the volume's record. The file system
	// the source is on now is recorded as the volume's.
	AllowEmpty bool
}

// Progress counts what a running snapshot has done; safe to read while it
// runs.
type Progress struct {
	Files     atomic.Uint64
	Dirs      atomic.Uint64
	ReadBytes atomic.Uint64
	// CarriedBytes is the size of files carried over unread.
	CarriedBytes atomic.Uint64
	// Expected is the logical size of the parent snapshot, an estimate of
	// the total (0 for a first snapshot).
	Expected atomic.Uint64
}

// Warning is an entry left out of a snapshot and why, or one kept though
// it may be inconsistent (a disk that changed while it was read).
type Warning struct {
	Path string
	Err  error
	// Kept says the entry is in the snapshot nonetheless.
	Kept bool
}

func (w Warning) String() string {
	if w.Kept {
		return fmt.Sprintf("%s: %v", w.Path, w.Err)
	}
	return fmt.Sprintf("left out %s: %v", w.Path, w.Err)
}

// Result is a committed snapshot and the entries that were left out.
type Result struct {
	Snapshot *store.Snapshot
	Warnings []Warning
}

// maxAttempts is how often a file that changes while it is read is read.
const maxAttempts = 3

// segmentBlocks is how many blocks one reader takes at a time from a file;
// large files are read by several readers at once.
const segmentBlocks = 32

// prefetch is how much of a file is asked for when its read is queued:
// all of a small file, the start of a large one, whose reader then has the
// kernel's sequential readahead.
const prefetch = 1 << 20

// Snapshot makes a snapshot of a volume from its source.
func Snapshot(ctx context.Context, repo *store.Repo, volume string, so store.SnapshotOptions, opts Options) (*Result, error) {
	w, err := repo.BeginSnapshot(ctx, volume, so)
	if err != nil {
		return nil, err
	}
	if opts.Started != nil {
		opts.Started(w.Name())
	}
	res, err := run(ctx, repo, w, opts)
	if err != nil {
		w.Abort()
		return nil, fmt.Errorf("snapshot %s/%s: %w", volume, w.Name(), err)
	}
	return res, nil
}

type devIno struct{ dev, ino uint64 }

// walker holds the state of one snapshot run.
type walker struct {
	cancel context.CancelCauseFunc
	repo   *store.Repo
	w      *store.SnapshotWriter
	vol    *store.Volume
	opts   Options
	prog   *Progress
	log    *slog.Logger
	excl   *ignore.Matcher
	skip   map[devIno]bool
	bs     int64

	rootDev uint64
	jobs    chan *fileRead
	slots   chan struct{} // one per reader goroutine allowed at once
	// dirSlots bounds the directories walked beside the one walking
	// them: a cold walk waits on the disk for every inode, and several
	// at once keep its queue full. One worker walks one at a time.
	dirSlots chan struct{}
	// ahead bounds the files queue holds open before their reads
	// (aheadSlots).
	ahead   chan struct{}
	bufs    sync.Pool
	workers sync.WaitGroup

	mu       sync.Mutex
	warnings []Warning
	links    map[devIno]*fileRead // hard-link groups met so far

	files, dirs, symlinks, others, logical atomic.Uint64
	// seeded says the tree compared against is an image's (Options.Seed),
	// not a parent snapshot's of the same files.
	seeded bool
}

func run(ctx context.Context, repo *store.Repo, w *store.SnapshotWriter, opts Options) (*Result, error) {
	vol := w.Volume()
	if vol.Kind == store.KindDisk {
		prog := opts.Progress
		if prog == nil {
			prog = new(Progress)
		}
		return runDisk(ctx, repo, w, opts, prog)
	}
	if vol.Kind != store.KindTree {
		return nil, fmt.Errorf("volume %s: %s volumes are not snapshotted: %w", vol.Name, vol.Kind, store.ErrInvalid)
	}
	excl, err := ignore.Compile(vol.Excludes)
	if err != nil {
		return nil, fmt.Errorf("volume %s excludes: %w", vol.Name, err)
	}
	if opts.Workers <= 0 {
		opts.Workers = 4 * runtime.NumCPU()
	}
	prog := opts.Progress
	if prog == nil {
		prog = new(Progress)
	}
	if p := w.Parent(); p != nil {
		prog.Expected.Store(p.Stats.LogicalBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wk := &walker{cancel: cancel, repo: repo, w: w, vol: vol, opts: opts, prog: prog, log: log,
		excl: excl, skip: map[devIno]bool{}, bs: int64(vol.BlockSize),
		jobs: make(chan *fileRead, opts.Workers*4), slots: make(chan struct{}, opts.Workers),
		dirSlots: make(chan struct{}, opts.Workers-1), ahead: make(chan struct{}, aheadSlots(opts.Workers*6)),
		links: map[devIno]*fileRead{}}
	wk.bufs.New = func() any { b := make([]byte, vol.BlockSize); return &b }
	for _, p := range append(opts.Skip, repo.Info().Dir) {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			wk.skip[devIno{st.Dev, st.Ino}] = true
		}
	}

	rootFd, rootPath, err := openRoot(vol, opts.Root, true)
	if errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("source %s: not a directory: %w", vol.Source, store.ErrInvalid)
	} else if err != nil {
		return nil, err
	}
	defer unix.Close(rootFd)
	var st unix.Stat_t
	if err := unix.Fstat(rootFd, &st); err != nil {
		return nil, fmt.Errorf("source %s: %w", vol.Source, err)
	}
	wk.rootDev = st.Dev
	fsNow, err := FileSystemOf(rootPath)
	if err != nil {
		// Not knowing the mounts (no /proc) must not stop every snapshot;
		// the emptiness check below still holds.
		log.Warn("cannot tell the source's file system; not compared", "volume", vol.Name, "err", err)
	} else if vol.SourceFS != nil && !vol.SourceFS.Same(fsNow) && !opts.AllowEmpty {
		return nil, fmt.Errorf("source %s is on %s, not on %s as when the volume was added: is its disk not mounted? Mount it, or pass --allow-empty to snapshot it as it is: %w",
			vol.Source, fsNow, vol.SourceFS, ErrSourceReplaced)
	}
	rootDir := entryFromStat("", &st)
	if rootDir.Xattrs, err = readXattrsFd(rootFd); err != nil {
		return nil, fmt.Errorf("source %s: xattrs: %w", vol.Source, err)
	}
	var prevRoot *store.Entry
	if p := w.Parent(); p != nil {
		prevRoot = &p.RootDir
	} else if opts.Seed != nil {
		prevRoot, wk.seeded = opts.Seed, true
	}

	for i := 0; i < opts.Workers; i++ {
		wk.workers.Add(1)
		go wk.worker(ctx)
	}
	rootDir.Subtree, err = wk.dir(ctx, rootPath, vol.Source, "", prevRoot)
	close(wk.jobs)
	wk.workers.Wait()
	if cause := context.Cause(ctx); cause != nil {
		return nil, cause
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", vol.Source, err)
	}
	stats := store.SnapshotStats{
		Files: wk.files.Load(), Dirs: wk.dirs.Load() + 1, Symlinks: wk.symlinks.Load(), Others: wk.others.Load(),
		LogicalBytes: wk.logical.Load(), ReadBytes: prog.ReadBytes.Load(), Warnings: uint64(len(wk.warnings)),
	}
	if p := w.Previous(); p != nil && !opts.AllowEmpty && holdsNoFiles(&stats) && !holdsNoFiles(&p.Stats) {
		return nil, fmt.Errorf("source %s holds no files where the previous snapshot %s held %s: is its disk not mounted, or wiped? Pass --allow-empty to snapshot it as it is: %w",
			vol.Source, p.Name, count(p.Stats.Files+p.Stats.Symlinks+p.Stats.Others, "file", "files"), ErrSourceReplaced)
	}
	snap, err := w.Commit(ctx, rootDir, stats)
	if err != nil {
		return nil, err
	}
	if fsNow != nil && (vol.SourceFS == nil || !vol.SourceFS.Same(fsNow)) {
		// A volume added by an older version gets its record now; one
		// snapshotted on another file system by request keeps the new one.
		err := repo.UpdateVolume(ctx, vol.Name, func(v *store.Volume) error { v.SourceFS = fsNow; return nil })
		if err != nil {
			log.Warn("cannot record the source's file system", "volume", vol.Name, "err", err)
		}
	}
	// Directories are walked at once: the warnings come in path order,
	// not in the order the walk met them.
	slices.SortStableFunc(wk.warnings, func(a, b Warning) int { return strings.Compare(a.Path, b.Path) })
	return &Result{Snapshot: snap, Warnings: wk.warnings}, nil
}

// holdsNoFiles reports whether a snapshot holds nothing but directories:
// an empty source, or a freshly made file system with its lost+found.
func holdsNoFiles(st *store.SnapshotStats) bool {
	return st.Files+st.Symlinks+st.Others == 0
}

// count is "1 file", "2 files".
func count(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (wk *walker) warn(path string, err error) {
	wk.log.Info("left out of snapshot", "volume", wk.vol.Name, "path", path, "err", err)
	wk.mu.Lock()
	wk.warnings = append(wk.warnings, Warning{Path: path, Err: err})
	wk.mu.Unlock()
}

// fatal stops the whole run: the repository, not the source, failed.
func (wk *walker) fatal(err error) { wk.cancel(err) }

// putTree stores a directory's tree; failing to is the repository's
// failure (a full disk), not the directory's, so it stops the run.
func (wk *walker) putTree(ctx context.Context, entries []store.Entry) (store.Hash, error) {
	h, err := wk.w.PutTree(ctx, store.EncodeTree(entries))
	if err != nil {
		wk.fatal(err)
	}
	return h, err
}

// openNoatime opens a source file or directory without touching its atime,
// which the snapshot records and the next snapshot compares.
func openNoatime(path string, flags int) (int, error) {
	fd, err := unix.Open(path, flags|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		// O_NOATIME is refused on files the caller does not own.
		fd, err = unix.Open(path, flags|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	return fd, err
}

// openFile opens a file to read its data. It was a regular file when its
// directory was read; one swapped since for a symlink is not followed, and
// one swapped for a FIFO opens without waiting for a writer (the read's
// fstat then refuses it) and never becomes a controlling terminal. Local
// file systems ignore O_NONBLOCK on a regular file's reads; a read that
// meets it (EAGAIN) clears it (preadFull).
func openFile(path string) (int, error) {
	return openNoatime(path, unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY)
}

// blocking clears O_NONBLOCK, which openFile set only for the open, and
// reports whether it was set: a FUSE server or a kernel file may honour
// it on reads of a regular file, and answer EAGAIN.
func blocking(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		return false
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	return err == nil
}

// dir snapshots one directory and returns its tree: open is what the
// directory is opened by, path what messages call it. An error means the
// directory itself could not be read; errors below it are warnings. The
// directory stays open until the reads of its files are done: they, and
// every call below it that takes a path, reach its entries through it
// (procAlias), so no path is ever longer than PATH_MAX however deep the
// tree.
func (wk *walker) dir(ctx context.Context, open, path, rel string, prev *store.Entry) (store.Hash, error) {
	if err := ctx.Err(); err != nil {
		return store.Hash{}, err
	}
	flags := unix.O_DIRECTORY
	if rel != "" {
		// A directory swapped for a symlink since its stat is not
		// followed; the source itself is reached through the inode
		// openRoot resolved (a /proc/self/fd link).
		flags |= unix.O_NOFOLLOW
	}
	fd, err := openNoatime(open, flags)
	if err != nil {
		return store.Hash{}, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	// Subdirectories walked beside this one reach their entries through
	// fd, and send file reads to the workers: they end before it closes
	// and before the run closes the workers' queue, even when cancelled.
	var subdirs sync.WaitGroup
	defer subdirs.Wait()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return store.Hash{}, err
	}
	sort.Strings(names)
	var prevEntries []store.Entry
	if prev != nil && prev.Type == store.TypeDir {
		if prevEntries, err = wk.repo.Tree(ctx, prev.Subtree); err != nil {
			wk.fatal(fmt.Errorf("parent snapshot: %w", err))
			return store.Hash{}, err
		}
	}
	entries := make([]store.Entry, 0, len(names))
	reads := map[int]*fileRead{} // index in entries → its data being read
	pi := 0
	for _, name := range names {
		childPath := path + "/" + name
		child := procAlias(fd, name, childPath)
		childRel := name
		if rel != "" {
			childRel = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			wk.warn(childPath, err)
			continue
		}
		e := entryFromStat(name, &st)
		if e.Type == 0 || wk.excl.Excluded(childRel, e.Type == store.TypeDir) {
			continue
		}
		if e.Type == store.TypeDir && wk.skip[devIno{st.Dev, st.Ino}] {
			continue
		}
		for pi < len(prevEntries) && prevEntries[pi].Name < name {
			pi++
		}
		var p *store.Entry
		if pi < len(prevEntries) && prevEntries[pi].Name == name {
			p = &prevEntries[pi]
		} else if e.Type == store.TypeDir && !wk.seeded {
			// A directory renamed in place keeps its inode, and its files
			// keep theirs and their ctimes: compare against its old tree.
			p = findDirByIno(prevEntries, e.Ino)
		}
		carry := !wk.opts.Full && (unchanged(p, &e) || wk.seeded && sameAsSeed(p, &e))
		if carry && !wk.seeded {
			e.Xattrs = p.Xattrs
		} else if e.Xattrs, err = readXattrs(child); err != nil {
			wk.warn(childPath, fmt.Errorf("xattrs: %w", err))
			continue
		}
		switch e.Type {
		case store.TypeDir:
			if wk.vol.OneFileSystem && st.Dev != wk.rootDev {
				// A mount point: kept, but not entered.
				if e.Subtree, err = wk.putTree(ctx, nil); err != nil {
					return store.Hash{}, err
				}
				wk.dirs.Add(1)
			} else if fr := wk.startDir(ctx, &subdirs, child, childPath, childRel, &e, p); fr != nil {
				reads[len(entries)] = fr
			} else if ctx.Err() != nil {
				return store.Hash{}, ctx.Err()
			} else {
				continue
			}
		case store.TypeSymlink:
			if e.Target, err = readlink(child, e.Size); err != nil {
				wk.warn(childPath, err)
				continue
			}
			wk.symlinks.Add(1)
		case store.TypeRegular:
			if e.Nlink > 1 {
				if fr := wk.linkGroup(ctx, childPath, child, &e, p, carry); fr != nil {
					reads[len(entries)] = fr
				}
			} else if carry {
				copyContent(&e, p)
				wk.prog.CarriedBytes.Add(e.Size)
			} else {
				reads[len(entries)] = wk.startRead(ctx, childPath, child, &e)
			}
		default:
			wk.others.Add(1)
		}
		entries = append(entries, e)
	}
	if len(reads) > 0 {
		kept := entries[:0]
		for i := range entries {
			if fr := reads[i]; fr != nil {
				select {
				case <-fr.done:
				case <-ctx.Done():
					return store.Hash{}, ctx.Err()
				}
				if err := fr.result(); err != nil {
					if ctx.Err() != nil {
						return store.Hash{}, ctx.Err()
					}
					wk.warn(fr.path, err)
					continue
				}
				fr.fill(&entries[i])
			}
			kept = append(kept, entries[i])
		}
		entries = kept
	}
	for i := range entries {
		if entries[i].Type == store.TypeRegular {
			wk.files.Add(1)
			wk.logical.Add(entries[i].Size)
		}
	}
	wk.prog.Dirs.Add(1)
	return wk.putTree(ctx, entries)
}

// startDir walks a subdirectory: beside this walk when a slot is free,
// else here and now. It returns nil if the subdirectory was walked here and
// failed (a warning) or the run was cancelled.
func (wk *walker) startDir(ctx context.Context, subdirs *sync.WaitGroup, open, path, rel string, e, prev *store.Entry) *fileRead {
	fr := &fileRead{path: path, entry: *e, done: make(chan struct{})}
	walk := func() {
		defer close(fr.done)
		fr.entry.Subtree, fr.err = wk.dir(ctx, open, path, rel, prev)
		if fr.err == nil {
			wk.dirs.Add(1)
		}
	}
	select {
	case wk.dirSlots <- struct{}{}:
		subdirs.Add(1)
		go func() {
			defer func() { <-wk.dirSlots; subdirs.Done() }()
			walk()
		}()
		return fr
	default:
	}
	walk()
	if fr.err != nil {
		if ctx.Err() == nil {
			wk.warn(path, fr.err)
		}
		return nil
	}
	return fr
}

// linkGroup handles one name of a multiply linked file: the first name met
// is read (or carried over) and every later name of the same inode takes
// its content, so the group stays one file in the snapshot.
func (wk *walker) linkGroup(ctx context.Context, path, open string, e *store.Entry, prev *store.Entry, carry bool) *fileRead {
	key := devIno{e.Dev, e.Ino}
	// Directories are walked at once: the first name is claimed under the
	// lock, so that a group is read once.
	wk.mu.Lock()
	fr, met := wk.links[key]
	if !met {
		fr = &fileRead{path: path, open: open, entry: *e, done: make(chan struct{})}
		wk.links[key] = fr
	}
	wk.mu.Unlock()
	if met {
		return &fileRead{path: path, done: fr.done, shared: fr}
	}
	if carry {
		copyContent(e, prev)
		fr.entry = *e
		close(fr.done)
		return nil
	}
	wk.queue(ctx, fr)
	return fr
}

func findDirByIno(entries []store.Entry, ino uint64) *store.Entry {
	for i := range entries {
		if entries[i].Type == store.TypeDir && entries[i].Ino == ino {
			return &entries[i]
		}
	}
	return nil
}

func copyContent(dst, src *store.Entry) {
	dst.BlockSize, dst.Blocks, dst.Content, dst.HasContent = src.BlockSize, src.Blocks, src.Content, src.HasContent
	dst.Sparse, dst.Extents = src.Sparse, src.Extents
}

func readlink(path string, size uint64) (string, error) {
	buf := make([]byte, max(size+1, 256))
	for {
		n, err := unix.Readlink(path, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, len(buf)*2)
	}
}

// testHookAfterRead, set by tests, runs between reading a file and the
// stat that checks it did not change meanwhile.
var testHookAfterRead func(path string)

// fileRead is a regular file whose data is being read by the workers, or a
// subdirectory being walked (its entry's Subtree once done).
type fileRead struct {
	path  string      // for messages
	open  string      // what it is opened by (procAlias)
	entry store.Entry // metadata as stat'ed at the read, content once done
	done  chan struct{}
	err   error

	shared *fileRead // for a later name of a hard-link group: the read it waits for

	fd    int           // the file, when queue opened it
	ahead chan struct{} // set with fd: the slot queue took, which end gives back
}

// result is the read's error, or that of the read it shares.
func (fr *fileRead) result() error {
	if fr.shared != nil {
		return fr.shared.err
	}
	return fr.err
}

// fill copies what the read found into the directory entry: the content
// and the metadata of the version that was read.
func (fr *fileRead) fill(e *store.Entry) {
	src := fr
	if fr.shared != nil {
		src = fr.shared
	}
	name, xattrs := e.Name, e.Xattrs
	*e = src.entry
	e.Name, e.Xattrs = name, xattrs
}

func (wk *walker) startRead(ctx context.Context, path, open string, e *store.Entry) *fileRead {
	fr := &fileRead{path: path, open: open, entry: *e, done: make(chan struct{})}
	wk.queue(ctx, fr)
	return fr
}

// aheadSlots is how many files queue may hold open: want, or a sixteenth
// of the open-file limit when that is less, so that a low limit is left to
// what must be open (the directories being walked, packs, the metadata
// store). A slot is held until the read ends, so want counts the reads
// queued (four a worker), being read (one) and waiting to be queued (one
// a walker): six a worker; with fewer, the reads queued last go without.
func aheadSlots(want int) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int(min(uint64(want), lim.Cur/16))
}

// queue hands a read to the workers. The file is opened here and its
// first bytes asked for (FADV_WILLNEED) while the read waits its turn:
// otherwise a tree of small files has one disk read in flight per worker,
// each waited for before its hashing starts, and the cores idle. A file
// that does not open here is opened by the worker, which says why.
func (wk *walker) queue(ctx context.Context, fr *fileRead) {
	if err := ctx.Err(); err != nil {
		fr.end(err) // opening and reading ahead the rest would be for nothing
		return
	}
	if fr.entry.Size > 0 {
		select {
		case wk.ahead <- struct{}{}:
			if fd, err := openFile(fr.open); err == nil {
				unix.Fadvise(fd, 0, min(int64(fr.entry.Size), prefetch), unix.FADV_WILLNEED) // advice
				fr.fd, fr.ahead = fd, wk.ahead
			} else {
				<-wk.ahead
			}
		default: // as many are open ahead as may be: the worker opens this one
		}
	}
	select {
	case wk.jobs <- fr:
	case <-ctx.Done():
		fr.end(ctx.Err())
	}
}

// end closes the file queue opened and gives back its slot, and finishes
// the read with err.
func (fr *fileRead) end(err error) {
	if fr.ahead != nil {
		unix.Close(fr.fd)
		<-fr.ahead
	}
	fr.err = err
	close(fr.done)
}

func (wk *walker) worker(ctx context.Context) {
	defer wk.workers.Done()
	for fr := range wk.jobs {
		if err := ctx.Err(); err != nil {
			fr.end(err)
		} else {
			fr.end(wk.readFile(ctx, fr))
		}
	}
}

// readFile reads a file's data into the store, again if it changed while
// it was read.
func (wk *walker) readFile(ctx context.Context, fr *fileRead) error {
	fd := fr.fd
	if fr.ahead == nil {
		var err error
		if fd, err = openFile(fr.open); err != nil {
			return err
		}
		defer unix.Close(fd)
	}
	for attempt := 1; ; attempt++ {
		var before, after unix.Stat_t
		if err := unix.Fstat(fd, &before); err != nil {
			return err
		}
		if fileType(before.Mode) != store.TypeRegular {
			return fmt.Errorf("no longer a regular file")
		}
		extents, sparse, err := dataExtents(fd, before.Size)
		if err != nil {
			return err
		}
		blocks, err := wk.readBlocks(ctx, fd, &before, extents, sparse)
		if err != nil {
			return err
		}
		if testHookAfterRead != nil {
			testHookAfterRead(fr.path)
		}
		if err := unix.Fstat(fd, &after); err != nil {
			return err
		}
		if blocks != nil && sameVersion(&before, &after) {
			e := entryFromStat(fr.entry.Name, &before)
			e.BlockSize = uint32(wk.bs)
			e.Sparse, e.Extents = sparse, extents
			if err := e.SetBlocks(blocks, func(b []byte) (store.Hash, error) { return wk.w.PutTree(ctx, b) }); err != nil {
				wk.fatal(err)
				return err
			}
			fr.entry = e
			return nil
		}
		if attempt == maxAttempts {
			return fmt.Errorf("changed while it was read, %d times; left out rather than stored torn", maxAttempts)
		}
		wk.log.Info("file changed while read, reading again", "path", fr.path, "attempt", attempt)
	}
}

// readBlocks reads and stores every block of an open file. Several
// goroutines share a large file, each taking the next segment. It returns
// nil blocks (and no error) when the file turned out shorter than its stat
// said, so that the caller reads it again.
func (wk *walker) readBlocks(ctx context.Context, fd int, st *unix.Stat_t, extents []store.Extent, sparse bool) ([]store.Hash, error) {
	size := st.Size
	n := int((size + wk.bs - 1) / wk.bs)
	blocks := make([]store.Hash, n)
	if n == 0 {
		return blocks, nil
	}
	segments := (n + segmentBlocks - 1) / segmentBlocks
	var next atomic.Int64
	var short atomic.Bool
	var firstErr error
	var errOnce sync.Once
	read := func() {
		bufp := wk.bufs.Get().(*[]byte)
		defer wk.bufs.Put(bufp)
		for {
			seg := int(next.Add(1) - 1)
			if seg >= segments || short.Load() || ctx.Err() != nil {
				return
			}
			for i := seg * segmentBlocks; i < min(n, (seg+1)*segmentBlocks); i++ {
				off := int64(i) * wk.bs
				length := min(wk.bs, size-off)
				if sparse && !hasData(extents, off, length) {
					blocks[i] = store.HoleHash
					continue
				}
				buf := (*bufp)[:length]
				got, err := preadFull(fd, buf, off)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					short.Store(true)
					return
				}
				if got < len(buf) {
					short.Store(true)
					return
				}
				h := wk.w.Sum(buf)
				if err := wk.w.PutBlock(ctx, h, buf); err != nil {
					wk.fatal(err)
					return
				}
				blocks[i] = h
				wk.prog.ReadBytes.Add(uint64(length))
			}
		}
	}
	// Take extra readers for a large file while cores are free; never wait
	// for one, so a worker can always make progress alone.
	var helpers sync.WaitGroup
	for extra := 1; extra < segments && extra < cap(wk.slots); extra++ {
		select {
		case wk.slots <- struct{}{}:
			helpers.Add(1)
			go func() {
				defer func() { <-wk.slots; helpers.Done() }()
				read()
			}()
		default:
		}
	}
	read()
	helpers.Wait()
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if short.Load() {
		return nil, nil
	}
	return blocks, nil
}

// dataExtents returns a file's data ranges when it has holes. A file
// without holes costs one lseek.
func dataExtents(fd int, size int64) ([]store.Extent, bool, error) {
	if size == 0 {
		return nil, false, nil
	}
	hole, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil, false, nil // the file system cannot tell: read it all
	}
	if err != nil {
		return nil, false, err
	}
	if hole >= size {
		return nil, false, nil
	}
	var extents []store.Extent
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break
		}
		if err != nil {
			return nil, false, err
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, false, err
		}
		hole = min(hole, size)
		extents = append(extents, store.Extent{Off: uint64(data), Len: uint64(hole - data)})
		off = hole
	}
	return extents, true, nil
}

// hasData reports whether [off, off+length) overlaps a data extent.
func hasData(extents []store.Extent, off, length int64) bool {
	// The first extent that ends after off.
	i := sort.Search(len(extents), func(i int) bool { return int64(extents[i].Off+extents[i].Len) > off })
	return i < len(extents) && int64(extents[i].Off) < off+length
}

// preadFull reads buf from off, short only at the end of the file.
func preadFull(fd int, buf []byte, off int64) (int, error) {
	got := 0
	for got < len(buf) {
		n, err := unix.Pread(fd, buf[got:], off+int64(got))
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) && blocking(fd) {
			continue
		}
		if err != nil {
			return got, err
		}
		if n == 0 {
			break
		}
		got += n
	}
	return got, nil
}
