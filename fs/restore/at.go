package restore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unsafe"

	"github.com/chainfs/chainfs/fs/resolve"
	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// openTarget opens directory path as the admin wrote it (resolve.Open),
// making what is missing (the last with mode, its parents 0755, each
// checked to be the one made) when create; made says path itself was
// made.
func openTarget(path string, mode uint32, create bool) (fd int, made bool, err error) {
	fd, made, err = resolve.Open(path, resolve.Options{Create: create, Mode: mode, DirOnly: true, Made: checkMadeAt})
	if err != nil {
		return -1, false, err
	}
	// The O_PATH descriptor becomes one to read and write through; "."
	// is the directory itself, no name to swap.
	dir, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(fd)
	if err != nil {
		return -1, false, err
	}
	return dir, made, nil
}

// errReplaced is what checkMade finds when a directory just made is no
// longer the one made.
var errReplaced = errors.New("replaced by another directory while the restore made it; nothing written into it")

// checkMadeAt is checkMade for an O_PATH descriptor, which cannot be read.
func checkMadeAt(fd int, st *unix.Stat_t, mode uint32) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errReplaced
	}
	dir, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return checkMade(dir, st, uint32(unix.Geteuid()), mode)
}

// checkMade checks that dir, a directory this process just made with
// mode and opened by name, is still that one: a user who can write its
// parent may have renamed it away and put their own in its place. Only
// euid makes a directory owned by it; one with no permission bits beyond
// mode (setgid is the parent's to pass on) and empty is one made here and
// not yet used. It then drops the POSIX ACLs the directory inherited from
// its parent: they would give users the restore knows nothing of what is
// written below it.
func checkMade(dir int, st *unix.Stat_t, euid, mode uint32) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != euid || st.Mode&0o777&^mode != 0 || !isEmpty(dir) {
		return errReplaced
	}
	return dropACLs(dir, nil)
}

// aclXattrs hold a file's POSIX ACLs. What is made in a directory with a
// default ACL inherits it: named users and groups, masked by the mode it
// is made with (nothing, as the restore makes everything closed) until a
// chmod to the snapshot's mode widens the mask and lets them in.
var aclXattrs = [...]string{"system.posix_acl_access", "system.posix_acl_default"}

// dropACLs removes from fd (open, not O_PATH) the POSIX ACLs e does not
// hold (e nil: all). Where ACLs are not supported there are none to drop.
func dropACLs(fd int, e *store.Entry) error {
	return removeACLs(func(name string) error { return unix.Fremovexattr(fd, name) }, e)
}

func removeACLs(remove func(name string) error, e *store.Entry) error {
	for _, name := range aclXattrs {
		if e != nil && slices.ContainsFunc(e.Xattrs, func(x store.Xattr) bool { return x.Name == name }) {
			continue
		}
		err := remove(name)
		if err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("drop inherited ACL %s: %w", name, err)
		}
	}
	return nil
}

// OpenDir opens directory path for a writer of files beside a restore
// (an image export), resolved as a restore's target is: one name at a
// time, and, run as root, following no other user's symlink on the way.
// The writer then works relative to it.
func OpenDir(path string) (*os.File, error) {
	fd, _, err := openTarget(path, 0, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// MakeDir opens directory path for a writer of a tree (a volume from an
// image), resolved as a restore's target is, and makes it (with mode) and
// its missing parents (0755) when missing; made says path itself was.
func MakeDir(path string, mode uint32) (f *os.File, made bool, err error) {
	fd, made, err := openTarget(path, mode, true)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), made, nil
}

// RemoveDir removes dir, an empty directory that MakeDir made, through
// the directory it is in now, by the name that holds it there (the path
// given may have ended in a symlink). No path is looked up: whoever can
// write a parent may have moved it, or put a symlink in its place.
func RemoveDir(dir *os.File) error {
	parent, err := unix.Openat(int(dir.Fd()), "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	var held unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &held); err != nil {
		return err
	}
	errFound := errors.New("found")
	var name string
	err = eachName(parent, func(n string) error {
		var st unix.Stat_t
		if unix.Fstatat(parent, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == held.Dev && st.Ino == held.Ino {
			name = n
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) {
		return fmt.Errorf("%s: no longer in its directory, left (%v)", dir.Name(), err)
	}
	return unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
}

// procPath names what fd (an O_PATH descriptor) refers to: a magic link
// that the kernel resolves to the inode itself, never to a path, and that
// does not follow a symlink the fd is of. Linux has no fsetxattr, fchmod
// or futimens on an O_PATH fd; this is how glibc's fchmodat does
// AT_SYMLINK_NOFOLLOW. It needs /proc mounted.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// linkFd makes name in dir a hard link of what fd (O_PATH) refers to:
// AT_EMPTY_PATH where the caller may (CAP_DAC_READ_SEARCH, which root
// has), else through its /proc magic link.
func linkFd(fd, dir int, name string) error {
	err := unix.Linkat(fd, "", dir, name, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		// The path is absolute, so the first fd is not used.
		err = unix.Linkat(fd, procPath(fd), dir, name, unix.AT_SYMLINK_FOLLOW)
	}
	return err
}

// tempPrefix starts the names of entries that are made to replace others.
const tempPrefix = ".chainfs-restore-"

// createTemp makes something under a new temporary name in dir with mk,
// and returns the name and what mk returned.
func createTemp(dir int, mk func(name string) (int, error)) (string, int, error) {
	for range 8 {
		name := tempPrefix + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := mk(name)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", -1, fmt.Errorf("make a replacement: %w", err)
		}
		return name, fd, nil
	}
	return "", -1, errors.New("make a replacement: no free temporary name")
}

// replace renames tmp over name in dir; a directory in the way is
// removed first (fd-relative, following nothing, on dir's file system
// only and but what Spare spares: a repository in it stays, and then so
// does the directory, and the replacement fails). rel is name's path
// below the target.
func (r *restorer) replace(dir int, tmp, name, rel string) error {
	err := unix.Renameat(dir, tmp, dir, name)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err = unix.Fstat(dir, &st); err == nil {
			_, _, err = removeAll(dir, name, rel, st.Dev, r.opts.Spare)
		}
		if err == nil {
			err = unix.Renameat(dir, tmp, dir, name)
		}
	}
	if err != nil {
		unix.Unlinkat(dir, tmp, 0)
		return fmt.Errorf("replace: %w", err)
	}
	return nil
}

// removeAll removes name from dir, a directory with everything in it,
// through descriptors and following no symlink. It stays on file system
// dev, and keeps what spare (may be nil) spares below: a directory on
// another file system (a mount point) or spared is left, and so, as not
// empty, is every directory above it. rel is name's path for spare. It
// returns how many entries it removed and how many it left.
func removeAll(dir int, name, rel string, dev uint64, spare func(string, *unix.Stat_t) bool) (removed, left uint64, err error) {
	err = unix.Unlinkat(dir, name, 0)
	if err == nil {
		return 1, 0, nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return 0, 0, err
	}
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	if st.Dev != dev {
		return 0, 1, nil
	}
	err = eachName(fd, func(child string) error {
		childRel := filepath.Join(rel, child)
		var cst unix.Stat_t
		if err := unix.Fstatat(fd, child, &cst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if spare != nil && spare(childRel, &cst) {
			left++
			return nil
		}
		r, l, err := removeAll(fd, child, childRel, dev, spare)
		removed, left = removed+r, left+l
		return err
	})
	if err != nil || left > 0 {
		return removed, left, err
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil {
		return removed, left, err
	}
	return removed + 1, left, nil
}

// Clear removes everything in directory fd, through descriptors and
// following no symlink, on fd's file system only (a file system mounted
// below is left, and so are the directories above it). A writer of a tree
// undoes what it wrote with it, never by path: whoever can write a
// parent of the path may have swapped a directory for a symlink meanwhile.
func Clear(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	return eachName(fd, func(name string) error {
		_, _, err := removeAll(fd, name, name, st.Dev, nil)
		return err
	})
}

// eachName calls fn with the names in directory fd (not . and ..), read
// from its start. The names are read before fn runs on any, so that fn may
// remove them.
func eachName(fd int, fn func(name string) error) error {
	names, err := readNames(fd, -1)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := fn(name); err != nil {
			return err
		}
	}
	return nil
}

// readNames reads up to max names (-1: all) of directory fd from its
// start.
func readNames(fd int, max int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 8<<10)
	for max != 0 {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read directory: %w", err)
		}
		if n <= 0 {
			break
		}
		var count int
		_, count, names = unix.ParseDirent(buf[:n], max, names)
		if max > 0 {
			max -= count
		}
	}
	return names, nil
}

// isEmpty reports whether directory fd holds nothing.
func isEmpty(fd int) bool {
	names, err := readNames(fd, 1)
	return err == nil && len(names) == 0
}

// deleteExtra removes from directory d what the snapshot does not hold
// there (Delete), but what Spare spares and what lies on another file
// system (a mount point below d, or d itself one).
func (r *restorer) deleteExtra(d *dirState, entries []store.Entry) {
	keep := make(map[string]struct{}, len(entries))
	for i := range entries {
		keep[entries[i].Name] = struct{}{}
	}
	var dst, pst unix.Stat_t
	if err := unix.Fstat(d.fd, &dst); err != nil {
		r.problem(d.rel, err)
		return
	}
	if d.parent != nil {
		// d's parent is held open until d is complete.
		if err := unix.Fstat(d.parent.fd, &pst); err != nil || pst.Dev != dst.Dev {
			// A file system mounted at d: its contents are not the
			// snapshot's to judge.
			r.mu.Lock()
			r.res.Spared++
			r.mu.Unlock()
			return
		}
	}
	var deleted, spared uint64
	err := eachName(d.fd, func(name string) error {
		if _, ok := keep[name]; ok {
			return nil
		}
		rel := filepath.Join(d.rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			r.problem(rel, fmt.Errorf("delete: %w", err))
			return nil
		}
		if st.Dev != dst.Dev || r.opts.Spare != nil && r.opts.Spare(rel, &st) {
			spared++
			return nil
		}
		n, left, err := removeAll(d.fd, name, rel, st.Dev, r.opts.Spare)
		if n > 0 && left == 0 {
			deleted++
		}
		spared += left
		if err != nil {
			r.problem(rel, fmt.Errorf("delete: %w", err))
		}
		return nil
	})
	if err != nil {
		r.problem(d.rel, err)
	}
	r.mu.Lock()
	r.res.Deleted += deleted
	r.res.Spared += spared
	r.mu.Unlock()
}

// setMeta sets owner, xattrs, mode and times through fd (a directory or a
// regular file the restore holds open), in the order that keeps each from
// undoing another: chown clears setuid, an ACL rewrites group bits, and
// every change moves ctime but not mtime.
func (r *restorer) setMeta(fd int, e *store.Entry) error {
	if *r.opts.Owners {
		if err := unix.Fchown(fd, int(e.UID), int(e.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	for _, x := range e.Xattrs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("xattr %s: %w", x.Name, err)
		}
	}
	if err := dropACLs(fd, e); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, e.Mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := futimens(fd, e); err != nil {
		return fmt.Errorf("times: %w", err)
	}
	return nil
}

// setMetaMade sets the metadata of a symlink, fifo, socket or device the
// restore just made as name in dir, and returns its inode. It opens it
// O_PATH|O_NOFOLLOW (opening a device could act on it; a socket cannot
// be opened) and checks it is what was made, then works through that fd.
func (r *restorer) setMetaMade(dir int, name string, e *store.Entry) (uint64, error) {
	fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != e.Type.Bits() || st.Uid != r.euid || st.Nlink != 1 {
		return 0, errors.New("replaced while the restore made it")
	}
	if *r.opts.Owners {
		if err := unix.Fchownat(fd, "", int(e.UID), int(e.GID), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return 0, fmt.Errorf("chown: %w", err)
		}
	}
	for _, x := range e.Xattrs {
		if err := unix.Setxattr(procPath(fd), x.Name, x.Value, 0); err != nil {
			return 0, fmt.Errorf("xattr %s: %w", x.Name, err)
		}
	}
	if e.Type != store.TypeSymlink {
		if err := removeACLs(func(name string) error { return unix.Removexattr(procPath(fd), name) }, e); err != nil {
			return 0, err
		}
		// The path is absolute, so the fd argument is not used.
		if err := unix.Fchmodat(fd, procPath(fd), e.Mode, 0); err != nil {
			return 0, fmt.Errorf("chmod: %w", err)
		}
	}
	ts := times(e)
	err = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		// Kernels before 5.8 take no AT_EMPTY_PATH here.
		err = unix.UtimesNanoAt(fd, procPath(fd), ts, 0)
	}
	if err != nil {
		return 0, fmt.Errorf("times: %w", err)
	}
	return st.Ino, nil
}

func times(e *store.Entry) []unix.Timespec {
	return []unix.Timespec{
		{Sec: e.Atime.Sec, Nsec: int64(e.Atime.Nsec)},
		{Sec: e.Mtime.Sec, Nsec: int64(e.Mtime.Nsec)},
	}
}

// futimens sets an open fd's atime and mtime: utimensat with a NULL path,
// which x/sys does not offer (its "" is not NULL).
func futimens(fd int, e *store.Entry) error {
	ts := times(e)
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
