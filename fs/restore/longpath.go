package restore

import (
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pathMax is the longest path the kernel takes, its NUL included.
const pathMax = unix.PathMax

// at calls fn with a path the kernel takes for path: path itself, or, when
// it is longer than PATH_MAX, a short name of it through /proc/self/fd: its
// parent directory is opened by a prefix short enough to take, then one
// name at a time, following no symlink below the prefix (restore makes
// those directories itself).
func at(path string, fn func(p string) error) error {
	if len(path) < pathMax {
		return fn(path)
	}
	dir, name := filepath.Split(path)
	// The longest prefix that ends at a slash and fits.
	cut := strings.LastIndexByte(dir[:min(len(dir), pathMax-1)], '/')
	fd, err := unix.Open(dir[:cut+1], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	for _, c := range strings.Split(strings.Trim(dir[cut+1:], "/"), "/") {
		if c == "" {
			continue
		}
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return err
		}
		fd = next
	}
	defer unix.Close(fd)
	return fn("/proc/self/fd/" + strconv.Itoa(fd) + "/" + name)
}
