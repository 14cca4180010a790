package source

import (
	"fmt"
	"os"
	"strconv"

	"github.com/chainfs/chainfs/fs/resolve"
	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// openRoot opens a volume's source for reading: root, when its caller
// holds it (a volume just written from an image snapshots what was
// written, not whatever its path names by then), else vol.Source as an
// administrator's path is resolved (resolve.Open). Run as root, no other
// user's symlink is followed on the way or at the end: a user who can
// write a folder above the source would otherwise turn root's snapshot,
// and so the mount, onto files that user may not read. It returns a
// readable descriptor (O_NOATIME where allowed) and a path that reaches
// the same inode for calls that take one.
func openRoot(vol *store.Volume, root *os.File, dir bool) (fd int, path string, err error) {
	var pathFd int
	if root != nil {
		pathFd, err = unix.Dup(int(root.Fd()))
	} else {
		pathFd, _, err = resolve.Open(vol.Source, resolve.Options{DirOnly: dir})
	}
	if err != nil {
		return -1, "", fmt.Errorf("source %s: %w", vol.Source, err)
	}
	defer unix.Close(pathFd)
	path = vol.Source
	if haveProcFD {
		path = "/proc/self/fd/" + strconv.Itoa(pathFd)
	}
	flags := 0
	if dir {
		flags = unix.O_DIRECTORY
	}
	if fd, err = openNoatime(path, flags|unix.O_NONBLOCK|unix.O_NOCTTY); err != nil {
		return -1, "", fmt.Errorf("source %s: %w", vol.Source, err)
	}
	if !haveProcFD {
		// The path was opened again, as it is now: it must still be what
		// was resolved.
		var held, opened unix.Stat_t
		if err := unix.Fstat(pathFd, &held); err != nil || unix.Fstat(fd, &opened) != nil || held.Dev != opened.Dev || held.Ino != opened.Ino {
			unix.Close(fd)
			return -1, "", fmt.Errorf("source %s: replaced while it was opened", vol.Source)
		}
		return fd, path, nil
	}
	// The O_PATH descriptor goes; the readable one names the inode.
	return fd, "/proc/self/fd/" + strconv.Itoa(fd), nil
}
