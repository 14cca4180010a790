// Package resolve opens a path that an administrator named (a restore's
// target, a volume's source, an export's directory) the way a process
// running as root beside untrusted users must: one name at a time from a
// held descriptor, so that nothing is looked up twice, and, as root,
// following no symlink of another user. Whoever owns a directory on the
// way can put a symlink of theirs in it; followed with root's rights, it
// would lead a restore (and its --delete) anywhere, or a snapshot into
// files that user may not read.
package resolve

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// maxHops bounds the symlinks followed, as the kernel's own limit (40)
// does.
const maxHops = 40

// Options say how Open resolves a path.
type Options struct {
	// Create makes the directories that are missing: the last with Mode,
	// its parents 0755.
	Create bool
	Mode   uint32
	// DirOnly wants a directory at the end; else anything but a symlink.
	DirOnly bool
	// Made, if set, checks each directory Create just made, given its
	// O_PATH descriptor, its stat and the mode it was made with, before
	// anything is looked up in it: a user who can write its parent may
	// have swapped it for their own.
	Made func(fd int, st *unix.Stat_t, mode uint32) error
}

// Open resolves path and returns an O_PATH descriptor of what it names;
// made says the last name was made (Options.Create). Run as root, a
// symlink on the way is followed only when it belongs to root (root's own
// links, /home -> /data/home or /dev/disk/by-id/..., are every user's to
// trust); another user's is refused. Other users follow every symlink, as
// the kernel would: it gains them no right they lack. Relative paths
// start at the working directory.
func Open(path string, opts Options) (fd int, made bool, err error) {
	start := "."
	if filepath.IsAbs(path) {
		start = "/"
	}
	cur, err := unix.Open(start, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	// cur is the descriptor held: closed here on every way out but the
	// one that returns it.
	defer func() {
		if cur >= 0 {
			unix.Close(cur)
		}
	}()
	root := unix.Geteuid() == 0
	names := strings.Split(path, "/")
	hops := 0
	for len(names) > 0 {
		name := names[0]
		names = names[1:]
		if name == "" || name == "." {
			continue
		}
		last := !slices.ContainsFunc(names, func(n string) bool { return n != "" && n != "." })
		made = false
		want := uint32(0o755)
		if last {
			want = opts.Mode
		}
		next, err := openName(cur, name, !last || opts.DirOnly)
		if errors.Is(err, unix.ENOENT) && opts.Create && name != ".." {
			if err = unix.Mkdirat(cur, name, want); err == nil || errors.Is(err, unix.EEXIST) {
				made = err == nil
				if made && AfterMkdir != nil {
					AfterMkdir(cur, name)
				}
				next, err = openName(cur, name, true)
			}
		}
		if err != nil {
			return -1, false, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return -1, false, err
		}
		if made && opts.Made != nil {
			if err := opts.Made(next, &st, want); err != nil {
				unix.Close(next)
				return -1, false, fmt.Errorf("%s: %w", name, err)
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			to, err := readlinkFd(next)
			unix.Close(next)
			switch {
			case err != nil:
				return -1, false, err
			case root && st.Uid != 0:
				return -1, false, fmt.Errorf("%s: a symlink of uid %d on the way, not followed: name what it leads to (%s)", name, st.Uid, to)
			case hops >= maxHops:
				return -1, false, unix.ELOOP
			}
			hops++
			if filepath.IsAbs(to) {
				top, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					return -1, false, err
				}
				unix.Close(cur)
				cur = top
			}
			names = append(strings.Split(to, "/"), names...)
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && (opts.DirOnly || !last) {
			unix.Close(next)
			return -1, false, unix.ENOTDIR
		}
		unix.Close(cur)
		cur = next
	}
	fd, cur = cur, -1
	return fd, made, nil
}

// openName opens name in dir O_PATH, not following a symlink. A
// directory is asked for when one is expected: only then does the kernel
// trigger an automount there (an O_PATH open alone leaves an automount
// point unmounted); a symlink then fails ENOTDIR and is opened as such.
func openName(dir int, name string, wantDir bool) (int, error) {
	const flags = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if wantDir {
		fd, err := unix.Openat(dir, name, flags|unix.O_DIRECTORY, 0)
		if !errors.Is(err, unix.ENOTDIR) {
			return fd, err
		}
	}
	return unix.Openat(dir, name, flags, 0)
}

// AfterMkdir, when set (by tests only), runs after Open makes a directory
// and before it opens it: the moment another user could swap it.
var AfterMkdir func(parentFd int, name string)

// readlinkFd reads the symlink an O_PATH|O_NOFOLLOW descriptor holds.
func readlinkFd(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Beneath opens rel, a path below the directory root, as an O_PATH
// descriptor, following no symlink and never leaving root: with openat2
// where the kernel has it, else one O_NOFOLLOW openat per name (also for
// a rel longer than openat2 takes).
func Beneath(root int, rel string) (int, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, rel, &how)
	if err == nil || !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.ENAMETOOLONG) && !errors.Is(err, unix.EPERM) {
		return fd, err
	}
	// EPERM: a seccomp filter that refuses openat2 outright.
	fd, err = unix.Dup(root)
	if err != nil {
		return -1, err
	}
	names := strings.Split(rel, "/")
	for i, name := range names {
		if name == "" || name == "." || name == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("%q: not a name below the directory", rel)
		}
		flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i < len(names)-1 {
			flags |= unix.O_DIRECTORY
		}
		next, err := unix.Openat(fd, name, flags, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}
