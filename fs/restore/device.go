package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// Device writes a file's data onto a block device, which must hold it:
// every block, verified, and the holes as zeros (the device's old
// contents must not show through), then syncs. The device is opened
// exclusively, so one that is mounted or otherwise in use is refused.
// Bytes past the file's size are left as they were.
func Device(ctx context.Context, rd store.Reader, e *store.Entry, device string, opts Options) (*Result, error) {
	if e.Type != store.TypeRegular {
		return nil, fmt.Errorf("restore onto %s: a block device takes a disk image (a regular file), not a %s", device, e.Type)
	}
	// The device is the admin's path and may be a link (/dev/disk/by-id).
	// What it leads to is checked on the open fd before a byte is
	// written: O_EXCL without O_CREAT is an exclusive claim on a block
	// device and nothing else; O_NONBLOCK keeps a fifo swapped in from
	// blocking the open (it fails, no reader); O_NOCTTY keeps a tty from
	// becoming ours. No O_TRUNC, O_CREAT or O_APPEND: a regular file there
	// is opened, refused by the fstat check, and left as it was.
	f, err := os.OpenFile(device, os.O_WRONLY|unix.O_EXCL|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("restore onto %s: %w", device, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
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
