// Package restore writes a snapshot, or one path in it, back to a file
// system: data (holes kept as holes), modes, owners (when run as root),
// times to the nanosecond, xattrs and ACLs, hard links, symlinks, fifos,
// sockets and device nodes. Every block is checked against its BLAKE3 hash
// as it is read; a file whose data fails the check is reported by name and
// removed, never left with wrong bytes.
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

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// Options configure a restore.
type Options struct {
	// Overwrite replaces existing files; without it an existing file is an
	// error and is left untouched.
	Overwrite bool
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
	Files, Dirs, Others uint64
	Bytes               uint64
	Problems            []Problem
}

// Restore writes path of snap (empty: all of it) to target. A directory
// is restored into target, which may exist; a single file becomes target,
// or target/name when target is a directory.
func Restore(ctx context.Context, repo *store.Repo, snap *store.Snapshot, path, target string, opts Options) (*Result, error) {
	e, err := repo.Lookup(ctx, snap, path)
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
	var err error
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
	opts.Progress.ExpectedSize.Store(total)
	if e.Type != store.TypeDir {
		if st, serr := os.Stat(target); serr == nil && st.IsDir() {
			target = filepath.Join(target, e.Name)
		} else if errors.Is(serr, os.ErrNotExist) {
			// As a directory's target is, a file's is made where it is
			// asked for.
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return nil, fmt.Errorf("restore %s: %w", target, err)
			}
		}
	}
	r := &restorer{ctx: ctx, repo: rd, opts: opts, links: map[[2]uint64]string{},
		jobs: make(chan fileJob, opts.Workers*4)}
	for i := 0; i < opts.Workers; i++ {
		r.wg.Add(1)
		go r.worker()
	}
	if e.Type == store.TypeDir {
		err = r.topDir(e, target)
	} else {
		r.entry(e, target)
	}
	close(r.jobs)
	r.wg.Wait()
	if err == nil {
		r.finishDirs()
	}
	if err != nil {
		return nil, err
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	return &r.res, nil
}

type restorer struct {
	ctx  context.Context
	repo store.Reader
	opts Options
	jobs chan fileJob
	wg   sync.WaitGroup

	mu    sync.Mutex
	res   Result
	links map[[2]uint64]string // source dev/ino → first restored path
	dirs  []dirMeta            // directories whose metadata is set last
}

type fileJob struct {
	e    store.Entry
	path string
	f    *os.File
}

type dirMeta struct {
	e    store.Entry
	path string
}

func (r *restorer) problem(path string, err error) {
	r.opts.Logger.Info("not restored", "path", path, "err", err)
	r.mu.Lock()
	r.res.Problems = append(r.res.Problems, Problem{Path: path, Err: err})
	r.mu.Unlock()
}

// topDir restores a directory's contents into target.
func (r *restorer) topDir(e *store.Entry, target string) error {
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("restore to %s: %w", target, err)
	}
	if st, err := os.Stat(target); err != nil || !st.IsDir() {
		return fmt.Errorf("restore to %s: not a directory", target)
	}
	r.children(e, target)
	r.mu.Lock()
	r.dirs = append(r.dirs, dirMeta{e: *e, path: target})
	r.mu.Unlock()
	return nil
}

func (r *restorer) children(e *store.Entry, dir string) {
	entries, err := r.repo.Tree(r.ctx, e.Subtree)
	if err != nil {
		r.problem(dir, err)
		return
	}
	for i := range entries {
		if r.ctx.Err() != nil {
			return
		}
		r.entry(&entries[i], filepath.Join(dir, entries[i].Name))
	}
}

// entry restores one entry at path.
func (r *restorer) entry(e *store.Entry, path string) {
	if e.Type == store.TypeDir {
		err := at(path, func(p string) error {
			err := unix.Mkdir(p, 0o700)
			if errors.Is(err, unix.EEXIST) {
				var st unix.Stat_t
				if unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
					err = nil
				} else if r.opts.Overwrite {
					if err = os.RemoveAll(p); err == nil {
						err = unix.Mkdir(p, 0o700)
					}
				}
			}
			return err
		})
		if err != nil {
			r.problem(path, err)
			return
		}
		r.children(e, path)
		r.mu.Lock()
		r.dirs = append(r.dirs, dirMeta{e: *e, path: path})
		r.res.Dirs++
		r.mu.Unlock()
		return
	}
	if e.IsHardLink() {
		key := [2]uint64{e.Dev, e.Ino}
		r.mu.Lock()
		first, ok := r.links[key]
		if !ok {
			r.links[key] = path
		}
		r.mu.Unlock()
		if ok {
			err := at(path, func(p string) error {
				return at(first, func(f string) error {
					return r.create(p, func() error { return unix.Link(f, p) })
				})
			})
			if err != nil {
				r.problem(path, err)
				return
			}
			r.mu.Lock()
			r.res.Files++
			r.mu.Unlock()
			return
		}
	}
	var err error
	switch e.Type {
	case store.TypeRegular:
		var f *os.File
		err = at(path, func(p string) error {
			return r.create(p, func() (err error) {
				f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				return err
			})
		})
		if err == nil {
			select {
			case r.jobs <- fileJob{e: *e, path: path, f: f}:
			case <-r.ctx.Done():
				f.Close()
			}
			return
		}
	case store.TypeSymlink:
		err = at(path, func(p string) error {
			return r.create(p, func() error { return unix.Symlink(e.Target, p) })
		})
	case store.TypeFIFO, store.TypeCharDev, store.TypeBlockDev, store.TypeSocket:
		err = at(path, func(p string) error {
			return r.create(p, func() error { return unix.Mknod(p, e.Type.Bits()|0o600, int(e.Rdev)) })
		})
	default:
		err = fmt.Errorf("unknown entry type %d", e.Type)
	}
	if err == nil {
		err = r.setMeta(path, e, -1)
	}
	if err != nil {
		r.problem(path, err)
		return
	}
	r.mu.Lock()
	r.res.Others++
	r.mu.Unlock()
}

// create runs mk, and with Overwrite removes what is in the way first.
func (r *restorer) create(path string, mk func() error) error {
	err := mk()
	if errors.Is(err, os.ErrExist) || errors.Is(err, unix.EEXIST) {
		if !r.opts.Overwrite {
			return fmt.Errorf("exists (use --overwrite to replace it)")
		}
		if err = os.RemoveAll(path); err == nil {
			err = mk()
		}
	}
	return err
}

func (r *restorer) worker() {
	defer r.wg.Done()
	var buf []byte // grown to the largest block met
	for job := range r.jobs {
		if need := int(job.e.BlockSize); len(buf) < need {
			buf = make([]byte, need)
		}
		err := r.writeFile(job, buf)
		if err == nil {
			err = r.setMeta(job.path, &job.e, int(job.f.Fd()))
		}
		job.f.Close()
		if err != nil {
			if errors.Is(err, store.ErrCorrupt) {
				// Never leave a file with bytes that failed their check.
				at(job.path, os.Remove)
			}
			r.problem(job.path, err)
			continue
		}
		r.mu.Lock()
		r.res.Files++
		r.res.Bytes += job.e.Size
		r.mu.Unlock()
		r.opts.Progress.Files.Add(1)
	}
}

// writeFile writes a file's blocks, skipping holes, and sets its size so
// that trailing holes stay holes.
func (r *restorer) writeFile(job fileJob, buf []byte) error {
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	blocks, err := store.OpenBlocks(r.ctx, r.repo, &job.e)
	if err != nil {
		return err
	}
	err = blocks.Each(r.ctx, func(i int, h store.Hash) error {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if h.IsHole() {
			return nil
		}
		n, err := r.repo.ReadBlock(r.ctx, h, buf[:job.e.BlockLen(i)])
		if err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		if n != int(job.e.BlockLen(i)) {
			return fmt.Errorf("block %d: %d bytes, want %d: %w", i, n, job.e.BlockLen(i), store.ErrCorrupt)
		}
		if err := writeData(job.f, &job.e, buf[:n], int64(i)*int64(job.e.BlockSize)); err != nil {
			return err
		}
		r.opts.Progress.Bytes.Add(uint64(n))
		return nil
	})
	if err != nil {
		return err
	}
	return job.f.Truncate(int64(job.e.Size))
}

// writeData writes one block at off; of a sparse file only the parts that
// were data in the source, so that its holes come back exactly.
func writeData(f *os.File, e *store.Entry, b []byte, off int64) error {
	if !e.Sparse {
		_, err := f.WriteAt(b, off)
		return err
	}
	end := off + int64(len(b))
	for _, x := range e.Extents {
		lo, hi := max(off, int64(x.Off)), min(end, int64(x.Off+x.Len))
		if lo >= hi {
			continue
		}
		if _, err := f.WriteAt(b[lo-off:hi-off], lo); err != nil {
			return err
		}
	}
	return nil
}

// setMeta sets owner, xattrs, mode and times, in the order that keeps each
// from undoing another: chown clears setuid, an ACL rewrites group bits,
// and every change moves ctime but not mtime. fd < 0 works on the path
// without following a symlink.
func (r *restorer) setMeta(path string, e *store.Entry, fd int) error {
	return at(path, func(p string) error { return r.setMetaAt(p, e, fd) })
}

func (r *restorer) setMetaAt(path string, e *store.Entry, fd int) error {
	if *r.opts.Owners {
		var err error
		if fd >= 0 {
			err = unix.Fchown(fd, int(e.UID), int(e.GID))
		} else {
			err = unix.Lchown(path, int(e.UID), int(e.GID))
		}
		if err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	for _, x := range e.Xattrs {
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, x.Name, x.Value, 0)
		} else {
			err = unix.Lsetxattr(path, x.Name, x.Value, 0)
		}
		if err != nil {
			return fmt.Errorf("xattr %s: %w", x.Name, err)
		}
	}
	if e.Type != store.TypeSymlink {
		var err error
		if fd >= 0 {
			err = unix.Fchmod(fd, e.Mode)
		} else {
			err = unix.Fchmodat(unix.AT_FDCWD, path, e.Mode, 0)
		}
		if err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := []unix.Timespec{
		{Sec: e.Atime.Sec, Nsec: int64(e.Atime.Nsec)},
		{Sec: e.Mtime.Sec, Nsec: int64(e.Mtime.Nsec)},
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("times: %w", err)
	}
	return nil
}

// finishDirs sets directory metadata deepest first, after everything in
// them is written, so that writing a child does not move a parent's mtime.
func (r *restorer) finishDirs() {
	// r.dirs is in post-order: children before their parent, so a parent
	// made read-only or untraversable last cannot block its children.
	for _, d := range r.dirs {
		if err := r.setMeta(d.path, &d.e, -1); err != nil {
			r.problem(d.path, err)
		}
	}
}
