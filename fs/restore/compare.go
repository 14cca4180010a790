package restore

import (
	"bytes"
	"context"
	"errors"
	"slices"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// sameFile reports whether name in dir is a regular file that already
// holds e (OverwriteIfChanged): metadata first (cheap), then its content,
// block by block with the snapshot's block size, against the snapshot's
// block hashes. It returns the file's inode.
func (r *restorer) sameFile(ctx context.Context, dir int, name string, e *store.Entry, buf []byte) (bool, uint64) {
	var st unix.Stat_t
	// Stat first: opening a device or fifo that is in the way could act
	// on it or block.
	if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || !r.sameMeta(&st, e) {
		return false, 0
	}
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, 0
	}
	defer unix.Close(fd)
	var now unix.Stat_t
	if unix.Fstat(fd, &now) != nil || now.Ino != st.Ino || now.Dev != st.Dev || !r.sameMeta(&now, e) {
		return false, 0
	}
	if !sameXattrs(e.Xattrs, func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(n string, b []byte) (int, error) { return unix.Fgetxattr(fd, n, b) }) {
		return false, 0
	}
	blocks, err := store.OpenBlocks(ctx, r.repo, e)
	if err != nil {
		return false, 0
	}
	err = blocks.Each(ctx, func(i int, h store.Hash) error {
		b := buf[:e.BlockLen(i)]
		if n, err := unix.Pread(fd, b, int64(i)*int64(e.BlockSize)); err != nil || n != len(b) {
			return errDiffers
		}
		// A block of zeros is stored as a hole, whether the source had
		// a hole there or written zeros: the bytes are what is compared.
		if h.IsHole() && !store.IsZero(b) || !h.IsHole() && r.repo.Sum(b) != h {
			return errDiffers
		}
		return nil
	})
	return err == nil, st.Ino
}

var errDiffers = errors.New("differs")

// sameOther reports whether e.Name in dir is already the symlink, fifo,
// socket or device e describes, with its metadata, and returns its inode.
func (r *restorer) sameOther(dir int, e *store.Entry) (bool, uint64) {
	fd, err := unix.Openat(dir, e.Name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, 0
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || !r.sameMeta(&st, e) {
		return false, 0
	}
	switch e.Type {
	case store.TypeSymlink:
		buf := make([]byte, len(e.Target)+1)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil || n != len(e.Target) || string(buf[:n]) != e.Target {
			return false, 0
		}
	case store.TypeCharDev, store.TypeBlockDev:
		if st.Rdev != e.Rdev {
			return false, 0
		}
	}
	p := procPath(fd)
	return sameXattrs(e.Xattrs, func(b []byte) (int, error) { return unix.Listxattr(p, b) },
		func(n string, b []byte) (int, error) { return unix.Getxattr(p, n, b) }), st.Ino
}

// sameMeta compares what stat shows with e: type, mode, owners (when they
// are restored), mtime and a regular file's size. Atime is left out:
// reading a file moves it.
func (r *restorer) sameMeta(st *unix.Stat_t, e *store.Entry) bool {
	if st.Mode&unix.S_IFMT != e.Type.Bits() {
		return false
	}
	if e.Type != store.TypeSymlink && st.Mode&0o7777 != e.Mode {
		return false
	}
	if *r.opts.Owners && (st.Uid != e.UID || st.Gid != e.GID) {
		return false
	}
	if e.Type == store.TypeRegular && uint64(st.Size) != e.Size {
		return false
	}
	return st.Mtim.Sec == e.Mtime.Sec && st.Mtim.Nsec == int64(e.Mtime.Nsec)
}

// sameXattrs reports whether the xattrs that list and get read are want,
// no more and no fewer.
func sameXattrs(want []store.Xattr, list func([]byte) (int, error), get func(string, []byte) (int, error)) bool {
	n, err := list(nil)
	if errors.Is(err, unix.ENOTSUP) {
		return len(want) == 0
	}
	if err != nil {
		return false
	}
	buf := make([]byte, n)
	if n, err = list(buf); err != nil {
		return false
	}
	var names []string
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) > 0 {
			names = append(names, string(name))
		}
	}
	if len(names) != len(want) {
		return false
	}
	slices.Sort(names)
	for i, x := range want {
		if names[i] != x.Name {
			return false
		}
		v := make([]byte, len(x.Value)+1)
		if n, err := get(x.Name, v); err != nil || !bytes.Equal(v[:n], x.Value) {
			return false
		}
	}
	return true
}
