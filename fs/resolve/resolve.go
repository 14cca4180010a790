// Package resolve opens a path that an administrator named (a restore's
// target, a volume's source, an export's directory) the way a process
// running as root beside untrusted users must: one name at a time from a
// held descriptor, so that nothing is looked up twice, and following no
// symlink of another user. Whoever owns a directory on the way can put a
// symlink of theirs in it; followed with root's rights, it would lead a
// restore (and its --delete) anywhere, or a snapshot into files that user
// may not read.
package resolve

import (
	"errors"
	"fmt"
	"path/filepath"
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
// made says the last name was made (Options.Create). A symlink on the way
// is followed only when it belongs to this process's user or to root
// (root's own links, /home -> /data/home or /dev/disk/by-id/..., are
// every user's to trust). Relative paths start at the working directory.
func Open(path string, opts Options) (fd int, made bool, err error) {
	start := "."
	if filepath.IsAbs(path) {
		start = "/"
	}
	fd, err = unix.Open(start, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
	}()
	euid := uint32(unix.Geteuid())
	names := strings.Split(path, "/")
	hops := 0
	for len(names) > 0 {
		name := names[0]
		names = names[1:]
		if name == "" || name == "." {
			continue
		}
		last := len(names) == 0 || strings.Trim(strings.Join(names, "/"), "/.") == ""
		made = false
		want := uint32(0o755)
		if last {
			want = opts.Mode
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && opts.Create && name != ".." {
			if err = unix.Mkdirat(fd, name, want); err == nil || errors.Is(err, unix.EEXIST) {
				made = err == nil
				if made && AfterMkdir != nil {
					AfterMkdir(fd, name)
				}
				next, err = unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
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
			case st.Uid != euid && st.Uid != 0:
				return -1, false, fmt.Errorf("%s: a symlink of uid %d on the way, not followed: name what it leads to (%s)", name, st.Uid, to)
			case hops >= maxHops:
				return -1, false, unix.ELOOP
			}
			hops++
			if filepath.IsAbs(to) {
				root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					return -1, false, err
				}
				unix.Close(fd)
				fd = root
			}
			names = append(strings.Split(to, "/"), names...)
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && (opts.DirOnly || !last) {
			unix.Close(next)
			return -1, false, unix.ENOTDIR
		}
		unix.Close(fd)
		fd = next
	}
	return fd, made, nil
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
