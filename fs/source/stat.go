package source

import (
	"errors"
	"os"
	"strconv"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// entryFromStat fills the metadata of an entry from a stat result.
func entryFromStat(name string, st *unix.Stat_t) store.Entry {
	return store.Entry{
		Name:  name,
		Type:  fileType(st.Mode),
		Mode:  st.Mode & 0o7777,
		UID:   st.Uid,
		GID:   st.Gid,
		Size:  uint64(st.Size),
		Atime: timespec(st.Atim),
		Mtime: timespec(st.Mtim),
		Ctime: timespec(st.Ctim),
		Dev:   st.Dev,
		Ino:   st.Ino,
		Nlink: uint32(st.Nlink),
		Rdev:  st.Rdev,
	}
}

func timespec(t unix.Timespec) store.Timespec {
	return store.Timespec{Sec: t.Sec, Nsec: uint32(t.Nsec)}
}

func fileType(mode uint32) store.FileType { return store.TypeOfMode(mode) }

// haveProcFD says /proc/self/fd resolves open descriptors, as it does
// wherever /proc is mounted.
var haveProcFD = func() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
}()

// procAlias names entry name of the directory open as dirfd by a short
// path through /proc/self/fd: the calls that take a path (open, lgetxattr,
// readlink) then work at any depth, where the entry's whole path may be
// longer than PATH_MAX. Without /proc it is the whole path.
func procAlias(dirfd int, name, path string) string {
	if !haveProcFD {
		return path
	}
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// unchanged reports whether a file may be carried over from its record in
// the parent snapshot without being read.
func unchanged(prev *store.Entry, cur *store.Entry) bool {
	return prev != nil && prev.Type == cur.Type && prev.Size == cur.Size &&
		prev.Mtime == cur.Mtime && prev.Ctime == cur.Ctime &&
		prev.Ino == cur.Ino && prev.Mode == cur.Mode
}

// sameAsSeed reports whether a file written from an image entry is still
// what was written: its inode and ctime are new, so they cannot count. Its
// owner must be the image's or this process's (which wrote it without
// owners): another user's file of the same size, time and mode would
// otherwise take the image's blocks under that user's name.
func sameAsSeed(seed *store.Entry, cur *store.Entry) bool {
	return seed != nil && seed.Type == cur.Type && seed.Size == cur.Size &&
		seed.Mtime == cur.Mtime && seed.Mode == cur.Mode &&
		(cur.UID == seed.UID && cur.GID == seed.GID || cur.UID == uint32(os.Geteuid()))
}

// sameVersion reports whether two stats of one open file describe the same
// content: what the torn-read check compares before and after a read.
func sameVersion(a, b *unix.Stat_t) bool {
	return a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim && a.Ino == b.Ino
}

// readXattrs reads all extended attributes of path (not following a
// symlink), sorted by name as the tree encoding wants them.
func readXattrs(path string) ([]store.Xattr, error) {
	return xattrsOf(func(b []byte) (int, error) { return unix.Llistxattr(path, b) },
		func(name string, b []byte) (int, error) { return unix.Lgetxattr(path, name, b) })
}

// readXattrsFd reads all extended attributes of what fd is open on.
func readXattrsFd(fd int) ([]store.Xattr, error) {
	return xattrsOf(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(name string, b []byte) (int, error) { return unix.Fgetxattr(fd, name, b) })
}

// xattrsOf reads the extended attributes that list names and get reads.
func xattrsOf(list func([]byte) (int, error), get func(string, []byte) (int, error)) ([]store.Xattr, error) {
	size, err := list(nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, size)
	for {
		size, err = list(buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*2)
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	var out []store.Xattr
	for _, name := range splitNames(buf[:size]) {
		val, err := getXattr(get, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since the list was read
		}
		if err != nil {
			return nil, err
		}
		out = append(out, store.Xattr{Name: name, Value: val})
	}
	sortXattrs(out)
	return out, nil
}

func getXattr(get func(string, []byte) (int, error), name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := get(name, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+1)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n:n], nil
	}
}

func splitNames(b []byte) []string {
	var names []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				names = append(names, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return names
}

func sortXattrs(x []store.Xattr) {
	for i := 1; i < len(x); i++ {
		for j := i; j > 0 && x[j].Name < x[j-1].Name; j-- {
			x[j], x[j-1] = x[j-1], x[j]
		}
	}
}
