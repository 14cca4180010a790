package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/chainfs/chainfs/fs/resolve"
	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// FindDevice resolves path as a restore's target is (resolve.Open: no
// other user's symlink followed; /dev/disk/by-id links are root's) and
// returns what it names when that is a block device, as an O_PATH file
// for Device; nil when path names something else or nothing. Deciding on
// the resolved inode, not the path, keeps a user who can write a
// directory on the way from turning a tree's restore into a disk's, onto
// the device of their choice.
func FindDevice(path string) (*os.File, error) {
	fd, _, err := resolve.Open(path, resolve.Options{})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		unix.Close(fd)
		return nil, nil
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Device writes a file's data onto dev, a block device FindDevice found,
// which must hold it: every block, verified, and the holes as zeros (the
// device's old contents must not show through), then syncs. The device
// is opened exclusively, so one that is mounted or otherwise in use is
// refused. Bytes past the file's size are left as they were.
func Device(ctx context.Context, rd store.Reader, e *store.Entry, dev *os.File, opts Options) (*Result, error) {
	device := dev.Name()
	if e.Type != store.TypeRegular {
		return nil, fmt.Errorf("restore onto %s: a block device takes a disk image (a regular file), not a %s", device, e.Type)
	}
	var found unix.Stat_t
	if err := unix.Fstat(int(dev.Fd()), &found); err != nil {
		return nil, fmt.Errorf("restore onto %s: %w", device, err)
	}
	// The inode found is opened through its descriptor, no name looked up
	// again. O_EXCL without O_CREAT is an exclusive claim on a block
	// device; O_NOCTTY and O_NONBLOCK are for anything else, which the
	// check below refuses before a byte is written.
	f, err := os.OpenFile(procPath(int(dev.Fd())), os.O_WRONLY|unix.O_EXCL|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("restore onto %s: %w", device, unwrapPath(err))
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != found.Rdev {
		return nil, fmt.Errorf("restore onto %s: not a block device", device)
	}
	size, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_END)
	if err != nil {
		return nil, fmt.Errorf("restore onto %s: %w", device, err)
	}
	if uint64(size) < e.Size {
		return nil, fmt.Errorf("restore onto %s: the device holds %d bytes, the image %d", device, size, e.Size)
	}
	if opts.Progress == nil {
		opts.Progress = new(Progress)
	}
	opts.Progress.ExpectedSize.Store(e.Size)
	blocks, err := store.OpenBlocks(ctx, rd, e)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, e.BlockSize)
	err = blocks.Each(ctx, func(i int, h store.Hash) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:e.BlockLen(i)]
		off := int64(i) * int64(e.BlockSize)
		if h.IsHole() {
			err = zeroRange(f, off, int64(len(b)))
		} else if n, rerr := rd.ReadBlock(ctx, h, b); rerr != nil || n != len(b) {
			err = fmt.Errorf("block %d: %w", i, errors.Join(rerr, store.ErrCorrupt))
		} else {
			_, err = f.WriteAt(b, off)
		}
		if err != nil {
			return fmt.Errorf("restore onto %s: %w", device, err)
		}
		opts.Progress.Bytes.Add(uint64(len(b)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("restore onto %s: %w", device, err)
	}
	opts.Progress.Files.Add(1)
	return &Result{Files: 1, Bytes: e.Size}, nil
}

// unwrapPath drops an os.PathError's path (here /proc/self/fd/N, which
// says nothing to the user).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// zeroRange makes [off, off+n) of a block device zeros: with BLKZEROOUT,
// which the device may do without moving data, else by writing them.
func zeroRange(f *os.File, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r)))
	if errno == 0 {
		return nil
	}
	_, err := f.WriteAt(make([]byte, n), off)
	return err
}
