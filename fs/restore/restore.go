// Package restore writes a snapshot, or one path in it, back to a file
// system: data (holes kept as holes), modes, owners (when run as root),
// times to the nanosecond, xattrs and ACLs, hard links, symlinks, fifos,
// sockets and device nodes. Every block is checked against its BLAKE3 hash
// as it is read; a file whose data fails the check is reported by name and
// removed, never left with wrong bytes.
//
// # Writing beside other users
//
// A restore often runs as root into a directory that other users can
// write (a home directory, /tmp, a 0777 directory of the snapshot itself).
// Such a user may rename what the restore just made and put a symlink in
// its place; a restore that worked by path would then write, chown and
// chmod through that symlink, anywhere. So only the TARGET is resolved by
// path, once, as the admin wrote it (it may rightly hold symlinks such as
// /home -> /data/home); from then on every step is relative to a directory
// descriptor the restore holds:
//
//   - a directory is made with mkdirat(parent, name, 0700) and opened with
//     openat(O_DIRECTORY|O_NOFOLLOW); fstat must show what was made (the
//     restore's own uid, no access for others, empty), else its subtree is
//     a problem and nothing is written into it. Owned by the restore and
//     closed to others until its subtree is complete, it cannot be changed
//     under the restore; its own metadata is set last, through its fd.
//   - files are made with openat(O_CREAT|O_EXCL|O_NOFOLLOW) and their
//     metadata set through the fd (fchown, fsetxattr, fchmod, futimens);
//     symlinks, fifos, sockets and devices with symlinkat and mknodat, then
//     reopened with O_PATH|O_NOFOLLOW, checked with fstat, and set through
//     that fd (see setMetaMade for the /proc/self/fd detail).
//   - hard links re-resolve the group's first name beneath the target
//     (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or one O_NOFOLLOW
//     openat per component), check its inode, and link that inode.
//   - an existing entry is replaced (Overwrite) by a new one made under a
//     temporary name in the same held directory and renamed over it: never
//     written through, never truncated in place (another user may hold a
//     hard link to it).
//
// Depth is no limit but the open-file limit (a descriptor is held per
// level): no call takes a path longer than one name, so trees deeper than
// PATH_MAX restore as any other.
//
// A directory's fd is held while its subtree is written, and closed when
// the subtree is complete (a pending count of its children in flight): the
// open fds are bounded by the depth plus the files in flight, not by the
// tree's size.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/chainfs/chainfs/fs/resolve"
	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// Overwrite says what a restore does with an entry that already exists.
type Overwrite int

const (
	// OverwriteNever leaves existing entries as they were, and existing
	// directories with their owner, mode, times and xattrs; what is new is
	// written into them.
	OverwriteNever Overwrite = iota
	// OverwriteIfChanged replaces an entry unless its content and metadata
	// already match the snapshot's (a regular file's blocks are hashed and
	// compared), so that repairing a few files of a large tree writes a few
	// files.
	OverwriteIfChanged
	// OverwriteAlways replaces every entry.
	OverwriteAlways
)

var overwriteNames = [...]string{"never", "if-changed", "always"}

func (o Overwrite) String() string {
	if o < 0 || int(o) >= len(overwriteNames) {
		return fmt.Sprintf("overwrite(%d)", int(o))
	}
	return overwriteNames[o]
}

// ParseOverwrite reads "never", "if-changed" or "always".
func ParseOverwrite(s string) (Overwrite, error) {
	for i, n := range overwriteNames {
		if s == n {
			return Overwrite(i), nil
		}
	}
	return 0, fmt.Errorf("overwrite %q: want never, if-changed or always: %w", s, store.ErrInvalid)
}

// Options configure a restore.
type Options struct {
	// Overwrite says what becomes of entries that exist (default: never).
	Overwrite Overwrite
	// Delete removes, from every directory the snapshot holds, the entries
	// it does not hold: a roll-back. Only for a directory. It never
	// removes what Spare spares, nor anything on another file system than
	// the directory it is in (a mount point's contents were never the
	// snapshot's to judge).
	Delete bool
	// Spare reports whether Delete must leave an entry the snapshot does
	// not hold because the snapshot left it out on purpose: what the
	// volume excludes, the repository itself, the daemon's mount. rel is
	// the entry's path below the restored directory; st is its lstat.
	Spare func(rel string, st *unix.Stat_t) bool
	// Owners restores uid and gid; the default (nil) is to do so when
	// running as root.
	Owners *bool
	// Workers is how many files are written at once (default: one per CPU).
	Workers int
	// Progress, if set, is updated as the restore goes.
	Progress *Progress
	// Logger receives one line per problem; nil discards them.
	Logger *slog.Logger
}

// Progress counts what a running restore has done.
type Progress struct {
	Files        atomic.Uint64
	Bytes        atomic.Uint64
	ExpectedSize atomic.Uint64
}

// Problem is a path that could not be restored exactly.
type Problem struct {
	Path string
	Err  error
}

func (p Problem) String() string { return fmt.Sprintf("%s: %v", p.Path, p.Err) }

// Result says what a restore did.
type Result struct {
	// Counted as a snapshot counts them: Dirs includes the top directory,
	// and Others are neither files, directories nor symlinks.
	Files, Dirs, Symlinks, Others uint64
	Bytes                         uint64
	// Existing counts entries that existed and were left as they were
	// (OverwriteNever); a directory in the way of a file counts once.
	Existing uint64
	// Unchanged counts existing entries that already matched the snapshot
	// (OverwriteIfChanged) and were not rewritten.
	Unchanged uint64
	// Deleted counts entries removed because the snapshot does not hold
	// them (Delete); a directory counts once.
	Deleted uint64
	// Spared counts entries Delete left although the snapshot does not
	// hold them: spared (Options.Spare) or on another file system.
	Spared   uint64
	Problems []Problem
}

// Restore writes path of snap (empty: all of it) to target. A directory
// is restored into target, which may exist; a single file becomes target,
// or target/name when target is a directory.
func Restore(ctx context.Context, repo *store.Repo, snap *store.Snapshot, path, target string, opts Options) (*Result, error) {
	e, err := store.Lookup(ctx, repo, &snap.RootDir, path)
	if err != nil {
		return nil, fmt.Errorf("restore %s/%s/%s: %w", snap.Volume, snap.Name, path, err)
	}
	total := e.Size
	if e.Type == store.TypeDir && (path == "" || path == "/") {
		total = snap.Stats.LogicalBytes
	} else if e.Type == store.TypeDir {
		total = 0
	}
	return Entry(ctx, repo, e, total, target, opts)
}

// Entry writes e, read from rd, to target: a directory with everything
// below it into target, a single file as target (or target/name when
// target is a directory). total is the data expected, for progress (0
// when unknown).
func Entry(ctx context.Context, rd store.Reader, e *store.Entry, total uint64, target string, opts Options) (*Result, error) {
	if err := checkOptions(e, target, &opts); err != nil {
		return nil, err
	}
	top, fileName, err := openTop(e, target)
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", target, err)
	}
	return run(ctx, rd, e, total, top, fileName, opts)
}

// Into writes e, read from rd, into dir, a directory that its caller
// resolved, checked and holds open (MakeDir): a directory's entries (dir
// taking e's metadata unless OverwriteNever), a single file as e.Name in
// dir. It is Entry for a writer that must not look its target up twice.
func Into(ctx context.Context, rd store.Reader, e *store.Entry, total uint64, dir *os.File, opts Options) (*Result, error) {
	if err := checkOptions(e, dir.Name(), &opts); err != nil {
		return nil, err
	}
	fd, err := unix.Dup(int(dir.Fd()))
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", dir.Name(), err)
	}
	top := &dirState{e: *e, fd: fd, rel: dir.Name(), existed: e.Type == store.TypeDir}
	top.pending.Store(1)
	return run(ctx, rd, e, total, top, e.Name, opts)
}

// checkOptions refuses what opts cannot do with e and fills in defaults.
func checkOptions(e *store.Entry, target string, opts *Options) error {
	if opts.Delete && e.Type != store.TypeDir {
		return fmt.Errorf("restore %s to %s: delete removes what a directory does not hold, and a %s is no directory: %w",
			e.Name, target, e.Type, store.ErrInvalid)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.Owners == nil {
		root := os.Geteuid() == 0
		opts.Owners = &root
	}
	if opts.Progress == nil {
		opts.Progress = new(Progress)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// run restores e into top, which it closes: a directory's entries, or a
// single file as fileName.
func run(ctx context.Context, rd store.Reader, e *store.Entry, total uint64, top *dirState, fileName string, opts Options) (*Result, error) {
	target := top.rel
	opts.Progress.ExpectedSize.Store(total)
	if e.Type == store.TypeDir && opts.Overwrite != OverwriteNever {
		top.meta = true // the target too takes the snapshot's metadata
	}
	// The root of every re-resolution (hard links): a descriptor of its
	// own, as top's is closed when its subtree is complete.
	rootFd, err := unix.Dup(top.fd)
	if err != nil {
		unix.Close(top.fd)
		return nil, fmt.Errorf("restore to %s: %w", target, err)
	}
	defer unix.Close(rootFd)
	r := &restorer{repo: rd, opts: opts, root: rootFd, base: target, euid: uint32(os.Geteuid()),
		links: map[[2]uint64]linkFirst{}, jobs: make(chan fileJob, opts.Workers*4)}
	top.rel = ""
	if top.existed && opts.Overwrite != OverwriteNever {
		// The target is the caller's choice, another user's home too, and
		// what goes in keeps its own modes. Only to take the snapshot's
		// metadata is it first made the restore's, as below.
		if err := r.claimExisting(top.fd, e); err != nil {
			unix.Close(top.fd)
			return nil, fmt.Errorf("restore to %s: %w", target, err)
		}
	}
	for i := 0; i < opts.Workers; i++ {
		r.wg.Add(1)
		go r.worker(ctx)
	}
	if e.Type == store.TypeDir {
		r.count(&r.res.Dirs) // the top
		r.children(ctx, top)
	} else {
		file := *e
		file.Name = fileName
		r.entry(ctx, top, &file)
	}
	r.release(top)
	close(r.jobs)
	r.wg.Wait()
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	return &r.res, nil
}

// openTop opens what a restore writes into: for a directory, target
// itself (made if missing, its snapshot metadata then set at the end, an
// existing one keeping its own unless Overwrite); for a single file, the
// directory it goes into, and the file's name there. target is resolved as
// the admin wrote it, once.
func openTop(e *store.Entry, target string) (top *dirState, name string, err error) {
	d := &dirState{e: *e}
	d.pending.Store(1) // the walk of its children
	if e.Type == store.TypeDir {
		var made bool
		d.fd, made, err = openTarget(target, 0o700, true)
		d.rel, d.meta, d.existed = target, made, !made
		return d, "", err
	}
	// A file goes into target when that is a directory, else becomes
	// target. The directory it goes into keeps its metadata: the snapshot
	// has none for it.
	if d.fd, _, err = openTarget(target, 0, false); err == nil {
		d.rel = target
		return d, e.Name, nil
	}
	if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
		return nil, "", err
	}
	dir, name := filepath.Split(target)
	if name == "" || name == "." || name == ".." {
		return nil, "", errors.New("not a file name")
	}
	if dir == "" {
		dir = "."
	}
	// As a directory's target is, a file's is made where it is asked for.
	if d.fd, _, err = openTarget(dir, 0o755, true); err != nil {
		return nil, "", err
	}
	d.rel = filepath.Clean(dir)
	return d, name, nil
}

type restorer struct {
	repo store.Reader
	opts Options
	root int    // the target directory: hard links are re-resolved beneath it
	base string // the target as given, to name problems
	euid uint32
	jobs chan fileJob
	wg   sync.WaitGroup

	mu    sync.Mutex
	res   Result
	links map[[2]uint64]linkFirst // source dev/ino → first restored name
}

// linkFirst is where the first name of a hard-link group was restored:
// its path below the target and the inode it got.
type linkFirst struct {
	rel string
	ino uint64
}

// dirState is a directory being restored: held open until its subtree is
// complete, when its metadata is set through its fd.
type dirState struct {
	fd     int
	rel    string // below the target
	e      store.Entry
	parent *dirState
	// existed says the directory was there before the restore (its
	// entries are compared, and with Delete pruned).
	existed bool
	// meta says e's metadata is set when the subtree is complete: on
	// what the restore made, and with Overwrite on what existed. Without
	// Overwrite an existing directory keeps its owner, mode, xattrs and
	// times; its mtime moves only as the kernel moves it for the entries
	// written into it.
	meta bool
	// pending counts what must finish before the metadata is set: the walk
	// of its children, files in flight and subdirectories not complete.
	pending atomic.Int64
}

type fileJob struct {
	dir *dirState
	e   store.Entry
	rel string
	// fd is the new file, or -1 when one of that name exists and the worker
	// decides (Overwrite) whether to replace it.
	fd int
}

// afterMkdir, when set (by tests only), runs after each directory is made
// and before it is opened: the moment another user could swap it.
var afterMkdir func(parentFd int, name string)

func (r *restorer) path(rel string) string {
	if rel == "" {
		return r.base
	}
	return filepath.Join(r.base, rel)
}

func (r *restorer) problem(rel string, err error) {
	path := r.path(rel)
	r.opts.Logger.Info("not restored", "path", path, "err", err)
	r.mu.Lock()
	r.res.Problems = append(r.res.Problems, Problem{Path: path, Err: err})
	r.mu.Unlock()
}

func (r *restorer) count(n *uint64) {
	r.mu.Lock()
	*n++
	r.mu.Unlock()
}

// release ends one pending item of d; the last sets d's metadata (when the
// restore owns it), closes it and releases its parent.
func (r *restorer) release(d *dirState) {
	for ; d != nil && d.pending.Add(-1) == 0; d = d.parent {
		if d.meta {
			if err := r.setMeta(d.fd, &d.e); err != nil {
				r.problem(d.rel, err)
			}
		}
		unix.Close(d.fd)
	}
}

// children restores the entries of directory d.
func (r *restorer) children(ctx context.Context, d *dirState) {
	entries, err := r.repo.Tree(ctx, d.e.Subtree)
	if err != nil {
		r.problem(d.rel, err)
		return
	}
	if d.existed && r.opts.Delete {
		r.deleteExtra(d, entries)
	}
	for i := range entries {
		if ctx.Err() != nil {
			return
		}
		r.entry(ctx, d, &entries[i])
	}
}

// entry restores e into directory d.
func (r *restorer) entry(ctx context.Context, d *dirState, e *store.Entry) {
	rel := filepath.Join(d.rel, e.Name)
	if e.Type == store.TypeDir {
		sub, err := r.openDir(d, e, rel)
		if err != nil {
			r.problem(rel, err)
			return
		}
		if sub == nil {
			return
		}
		r.count(&r.res.Dirs)
		d.pending.Add(1)
		r.children(ctx, sub)
		r.release(sub)
		return
	}
	var key [2]uint64
	if e.IsHardLink() {
		key = [2]uint64{e.Dev, e.Ino}
		r.mu.Lock()
		first, ok := r.links[key]
		r.mu.Unlock()
		if ok {
			r.link(d, e, rel, first)
			return
		}
	}
	if e.Type == store.TypeRegular {
		r.regular(ctx, d, e, rel, key)
		return
	}
	ino, err := r.other(d, e)
	if err != nil {
		r.problem(rel, err)
		return
	}
	if ino != 0 && e.IsHardLink() {
		r.mu.Lock()
		r.links[key] = linkFirst{rel: rel, ino: ino}
		r.mu.Unlock()
	}
}

// openDir makes (or, existing, opens) directory e in d. It returns nil
// and no error for an entry left as it was.
func (r *restorer) openDir(d *dirState, e *store.Entry, rel string) (*dirState, error) {
	sub := &dirState{e: *e, rel: rel, parent: d}
	sub.pending.Store(1)
	for attempt := 0; ; attempt++ {
		err := unix.Mkdirat(d.fd, e.Name, 0o700)
		if err == nil {
			if afterMkdir != nil {
				afterMkdir(d.fd, e.Name)
			}
			if sub.fd, err = r.openMade(d.fd, e.Name); err != nil {
				return nil, err
			}
			sub.meta = true
			return sub, nil
		}
		if !errors.Is(err, unix.EEXIST) || attempt > 0 {
			return nil, err
		}
		fd, err := unix.Openat(d.fd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			if err := r.claimExisting(fd, e); err != nil {
				unix.Close(fd)
				return nil, err
			}
			sub.fd, sub.existed, sub.meta = fd, true, r.opts.Overwrite != OverwriteNever
			return sub, nil
		}
		if !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP) {
			return nil, err
		}
		// Not a directory (a symlink is one of those): in the way.
		if r.opts.Overwrite == OverwriteNever {
			r.count(&r.res.Existing)
			return nil, nil
		}
		if err := unix.Unlinkat(d.fd, e.Name, 0); err != nil {
			return nil, fmt.Errorf("remove what is in the way: %w", err)
		}
	}
}

// claimExisting decides whether the restore may write into fd, an
// existing directory where the snapshot has directory e. One that belongs
// to neither the restore's user nor e's owner is another user's: what the
// restore put there would be that user's to read, rename or replace,
// although in the snapshot a directory closed to them may have kept it.
// Without Overwrite it is left as it was, nothing written into it; with
// it, it is first made the restore's and closed to others, its ACLs
// dropped (its final metadata is set when it is complete), which no
// descriptor that user already holds gets around: every lookup in it is
// judged anew.
func (r *restorer) claimExisting(fd int, e *store.Entry) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Uid == r.euid || *r.opts.Owners && st.Uid == e.UID {
		return nil
	}
	if r.opts.Overwrite == OverwriteNever {
		return fmt.Errorf("exists and belongs to uid %d, not to the snapshot's owner: left as it was, nothing restored into it (--overwrite if-changed|always makes it the snapshot's)", st.Uid)
	}
	if err := unix.Fchown(fd, int(r.euid), -1); err != nil {
		return fmt.Errorf("take over uid %d's directory: %w", st.Uid, err)
	}
	if err := dropACLs(fd, nil); err != nil {
		return fmt.Errorf("close uid %d's directory: %w", st.Uid, err)
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return fmt.Errorf("close uid %d's directory: %w", st.Uid, err)
	}
	return nil
}

// openMade opens the directory the restore just made (0700) as name in
// parent, and checks that it is still that one (checkMade): a user who
// can write parent may have renamed it away and put their own (or a
// symlink) in its place.
func (r *restorer) openMade(parent int, name string) (int, error) {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("replaced while the restore made it: %w", err)
	}
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err == nil {
		err = checkMade(fd, &st, r.euid, 0o700)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// regular restores a regular file: made here and handed to a worker, or,
// when one of its name exists, handed to a worker that decides.
func (r *restorer) regular(ctx context.Context, d *dirState, e *store.Entry, rel string, key [2]uint64) {
	fd, err := unix.Openat(d.fd, e.Name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if r.opts.Overwrite == OverwriteNever {
			r.count(&r.res.Existing)
			return
		}
		fd, err = -1, nil
	}
	if err != nil {
		r.problem(rel, err)
		return
	}
	job := fileJob{dir: d, e: *e, rel: rel, fd: fd}
	d.pending.Add(1)
	if !e.IsHardLink() {
		select {
		case r.jobs <- job:
		case <-ctx.Done():
			if fd >= 0 {
				unix.Close(fd)
			}
			r.release(d)
		}
		return
	}
	// The first of a hard-link group: its name must hold the inode before
	// the next name links it, so a replacement is done here and now (rare:
	// hard links that exist already, with Overwrite).
	var ino uint64
	if fd >= 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil {
			ino = st.Ino
		}
		r.jobs <- job
	} else {
		ino = r.file(ctx, job, make([]byte, e.BlockSize))
	}
	if ino != 0 {
		r.mu.Lock()
		r.links[key] = linkFirst{rel: rel, ino: ino}
		r.mu.Unlock()
	}
}

func (r *restorer) worker(ctx context.Context) {
	defer r.wg.Done()
	var buf []byte // grown to the largest block met
	for job := range r.jobs {
		if need := int(job.e.BlockSize); len(buf) < need {
			buf = make([]byte, need)
		}
		r.file(ctx, job, buf)
	}
}

// file writes a regular file: into job.fd, or, replacing an existing one,
// into a new file renamed over it. It returns the inode it left at the
// name, 0 if none.
func (r *restorer) file(ctx context.Context, job fileJob, buf []byte) (ino uint64) {
	defer r.release(job.dir)
	dirfd, name := job.dir.fd, job.e.Name
	var tmp string
	if job.fd < 0 {
		if r.opts.Overwrite == OverwriteIfChanged {
			if same, ino := r.sameFile(ctx, dirfd, name, &job.e, buf); same {
				r.count(&r.res.Unchanged)
				return ino
			}
		}
		var err error
		tmp, job.fd, err = createTemp(dirfd, func(tmp string) (int, error) {
			return unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		})
		if err != nil {
			r.problem(job.rel, err)
			return 0
		}
		name = tmp
	}
	err := r.writeFile(ctx, job, buf)
	if err == nil {
		err = r.setMeta(job.fd, &job.e)
	}
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(job.fd, &st)
	}
	if errors.Is(err, store.ErrCorrupt) {
		// Never leave a file with bytes that failed their check: not at
		// this name, removed below, nor at the names of its hard links,
		// which may already have linked this inode.
		unix.Ftruncate(job.fd, 0)
	}
	unix.Close(job.fd)
	if err == nil && tmp != "" {
		err = r.replace(dirfd, tmp, job.e.Name, job.rel)
	}
	if err != nil {
		if tmp != "" {
			unix.Unlinkat(dirfd, tmp, 0)
		} else if errors.Is(err, store.ErrCorrupt) {
			unix.Unlinkat(dirfd, name, 0)
		}
		r.problem(job.rel, err)
		return 0
	}
	r.mu.Lock()
	r.res.Files++
	r.res.Bytes += job.e.Size
	r.mu.Unlock()
	r.opts.Progress.Files.Add(1)
	return st.Ino
}

// writeFile writes a file's blocks, skipping holes, and sets its size so
// that trailing holes stay holes.
func (r *restorer) writeFile(ctx context.Context, job fileJob, buf []byte) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	blocks, err := store.OpenBlocks(ctx, r.repo, &job.e)
	if err != nil {
		return err
	}
	err = blocks.Each(ctx, func(i int, h store.Hash) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if h.IsHole() {
			return nil
		}
		n, err := r.repo.ReadBlock(ctx, h, buf[:job.e.BlockLen(i)])
		if err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		if n != int(job.e.BlockLen(i)) {
			return fmt.Errorf("block %d: %d bytes, want %d: %w", i, n, job.e.BlockLen(i), store.ErrCorrupt)
		}
		if err := writeData(job.fd, &job.e, buf[:n], int64(i)*int64(job.e.BlockSize)); err != nil {
			return err
		}
		r.opts.Progress.Bytes.Add(uint64(n))
		return nil
	})
	if err != nil {
		return err
	}
	return unix.Ftruncate(job.fd, int64(job.e.Size))
}

// writeData writes one block at off; of a sparse file only the parts that
// were data in the source, so that its holes come back exactly.
func writeData(fd int, e *store.Entry, b []byte, off int64) error {
	if !e.Sparse {
		return pwriteFull(fd, b, off)
	}
	end := off + int64(len(b))
	for _, x := range e.Extents {
		lo, hi := max(off, int64(x.Off)), min(end, int64(x.Off+x.Len))
		if lo >= hi {
			continue
		}
		if err := pwriteFull(fd, b[lo-off:hi-off], lo); err != nil {
			return err
		}
	}
	return nil
}

func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// other restores a symlink, fifo, socket or device node, and returns its
// inode (0 when left as it was).
func (r *restorer) other(d *dirState, e *store.Entry) (uint64, error) {
	var mk func(name string) error
	switch e.Type {
	case store.TypeSymlink:
		mk = func(name string) error { return unix.Symlinkat(e.Target, d.fd, name) }
	case store.TypeFIFO, store.TypeCharDev, store.TypeBlockDev, store.TypeSocket:
		mk = func(name string) error { return unix.Mknodat(d.fd, name, e.Type.Bits()|0o600, int(e.Rdev)) }
	default:
		return 0, fmt.Errorf("unknown entry type %d", e.Type)
	}
	name, tmp := e.Name, ""
	err := mk(name)
	if errors.Is(err, unix.EEXIST) {
		switch r.opts.Overwrite {
		case OverwriteNever:
			r.count(&r.res.Existing)
			return 0, nil
		case OverwriteIfChanged:
			if same, ino := r.sameOther(d.fd, e); same {
				r.count(&r.res.Unchanged)
				return ino, nil
			}
		}
		if tmp, _, err = createTemp(d.fd, func(tmp string) (int, error) { return 0, mk(tmp) }); err != nil {
			return 0, err
		}
		name = tmp
	}
	if err != nil {
		return 0, err
	}
	ino, err := r.setMetaMade(d.fd, name, e)
	if err == nil && tmp != "" {
		err = r.replace(d.fd, tmp, e.Name, filepath.Join(d.rel, e.Name))
	}
	if err != nil {
		if tmp != "" {
			unix.Unlinkat(d.fd, tmp, 0)
		}
		return 0, err
	}
	if e.Type == store.TypeSymlink {
		r.count(&r.res.Symlinks)
	} else {
		r.count(&r.res.Others)
	}
	return ino, nil
}

// link restores a further name of a hard-link group: a link to the inode
// restored at the group's first name.
func (r *restorer) link(d *dirState, e *store.Entry, rel string, first linkFirst) {
	err := r.linkFirst(d, e, first)
	if err != nil {
		r.problem(rel, err)
	}
}

func (r *restorer) linkFirst(d *dirState, e *store.Entry, first linkFirst) error {
	fd, err := resolve.Beneath(r.root, first.rel)
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", first.rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("hard link to %s: %w", first.rel, err)
	}
	// The inode number alone could be another file's that took a freed
	// number: its owner must be the restore's (a worker may not have set
	// the snapshot's yet) or the snapshot's.
	if st.Ino != first.ino || st.Uid != r.euid && !(*r.opts.Owners && st.Uid == e.UID) {
		return fmt.Errorf("hard link to %s: replaced since it was restored", first.rel)
	}
	err = linkFd(fd, d.fd, e.Name)
	if errors.Is(err, unix.EEXIST) {
		var cur unix.Stat_t
		switch {
		case r.opts.Overwrite == OverwriteNever:
			r.count(&r.res.Existing)
			return nil
		case unix.Fstatat(d.fd, e.Name, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil && cur.Ino == st.Ino && cur.Dev == st.Dev:
			r.count(&r.res.Unchanged)
			return nil
		}
		var tmp string
		if tmp, _, err = createTemp(d.fd, func(tmp string) (int, error) { return 0, linkFd(fd, d.fd, tmp) }); err == nil {
			err = r.replace(d.fd, tmp, e.Name, filepath.Join(d.rel, e.Name))
		}
	}
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", first.rel, err)
	}
	switch e.Type {
	case store.TypeRegular:
		r.count(&r.res.Files)
	case store.TypeSymlink:
		r.count(&r.res.Symlinks)
	default:
		r.count(&r.res.Others)
	}
	return nil
}
