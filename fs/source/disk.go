package source

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// A disk volume's source is one disk-image file or block device. Its
// snapshot is a directory holding one file, named after the source, whose
// blocks are the disk's: all-zero blocks (and, of an image file, blocks in
// its holes, which are not even read) are holes, the rest are stored once
// per repository like any block. An image file whose size, mtime, ctime,
// inode and mode equal its parent's record is carried over unread; a block
// device has no such record of change and is read whole every time.

// diskSegment is how many blocks a disk reader takes at a time.
const diskSegment = 64

// runDisk makes a snapshot of a disk volume.
func runDisk(ctx context.Context, repo *store.Repo, w *store.SnapshotWriter, opts Options, prog *Progress) (*Result, error) {
	vol := w.Volume()
	fd, _, err := openRoot(vol, opts.Root, false)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var before unix.Stat_t
	if err := unix.Fstat(fd, &before); err != nil {
		return nil, fmt.Errorf("source %s: %w", vol.Source, err)
	}
	device := before.Mode&unix.S_IFMT == unix.S_IFBLK
	if !device && before.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("source %s: neither a disk-image file nor a block device any more: %w", vol.Source, store.ErrInvalid)
	}
	size, err := DiskSize(fd, &before)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", vol.Source, err)
	}
	e := entryFromStat(filepath.Base(vol.Source), &before)
	e.Type, e.Size, e.Nlink, e.Rdev = store.TypeRegular, uint64(size), 1, 0
	if !device {
		if e.Xattrs, err = readXattrsFd(fd); err != nil {
			return nil, fmt.Errorf("source %s: xattrs: %w", vol.Source, err)
		}
	}
	prog.Expected.Store(uint64(size))
	var warnings []Warning
	prev, seeded := snapshotDisk(ctx, repo, w.Parent(), e.Name), false
	if prev == nil && opts.Seed != nil {
		prev, seeded = seedDisk(ctx, repo, opts.Seed), true
	}
	// The source is compared with the newest snapshot not in the trash.
	last := prev
	if w.Previous() != w.Parent() {
		last = snapshotDisk(ctx, repo, w.Previous(), e.Name)
	}
	if last != nil && !seeded && !opts.AllowEmpty && holdsData(last) && size == 0 {
		return nil, fmt.Errorf("source %s is empty (0 bytes) where the previous snapshot's was %d bytes: was it replaced or truncated? Pass --allow-empty to snapshot it as it is: %w",
			vol.Source, last.Size, ErrSourceReplaced)
	}
	if !device && !opts.Full && (unchanged(prev, &e) || seeded && sameAsSeed(prev, &e)) {
		copyContent(&e, prev)
		prog.CarriedBytes.Add(e.Size)
	} else {
		if err := readDisk(ctx, w, fd, &e, !device, opts.Workers, prog); err != nil {
			return nil, fmt.Errorf("source %s: %w", vol.Source, err)
		}
		if testHookAfterRead != nil {
			testHookAfterRead(vol.Source)
		}
		if last != nil && !seeded && !opts.AllowEmpty && holdsData(last) && !holdsData(&e) {
			return nil, fmt.Errorf("source %s reads as all zeros where the previous snapshot's held data: was it wiped or replaced? Pass --allow-empty to snapshot it as it is: %w",
				vol.Source, ErrSourceReplaced)
		}
		var after unix.Stat_t
		if err := unix.Fstat(fd, &after); err == nil && !device && !sameVersion(&before, &after) {
			// Reading again would not make it consistent: a disk in use
			// changes all the time. Say so; docs/disk-volumes.md says how
			// to freeze it.
			warnings = append(warnings, Warning{Path: vol.Source, Kept: true,
				Err: fmt.Errorf("changed while it was read: stored as read, which may be inconsistent (freeze it first: docs/disk-volumes.md)")})
		}
	}
	root := store.Entry{Type: store.TypeDir, Mode: 0o755, UID: e.UID, GID: e.GID, Atime: e.Mtime, Mtime: e.Mtime, Ctime: e.Ctime, Nlink: 2}
	if root.Subtree, err = w.PutTree(ctx, store.EncodeTree([]store.Entry{e})); err != nil {
		return nil, err
	}
	stats := store.SnapshotStats{Files: 1, Dirs: 1, LogicalBytes: e.Size, ReadBytes: prog.ReadBytes.Load(), Warnings: uint64(len(warnings))}
	snap, err := w.Commit(ctx, root, stats)
	if err != nil {
		return nil, err
	}
	return &Result{Snapshot: snap, Warnings: warnings}, nil
}

// holdsData reports whether a disk file holds anything but zeros.
func holdsData(e *store.Entry) bool {
	return e.Size > 0 && !(e.Sparse && len(e.Extents) == 0)
}

// DiskSize is the size of an open disk-image file or block device.
func DiskSize(fd int, st *unix.Stat_t) (int64, error) {
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return st.Size, nil
	}
	// A block device's stat says 0; seeking to its end tells.
	size, err := unix.Seek(fd, 0, unix.SEEK_END)
	if err != nil {
		return 0, fmt.Errorf("size of the block device: %w", err)
	}
	return size, nil
}

// snapshotDisk is the disk's file in snapshot p, nil if none.
func snapshotDisk(ctx context.Context, repo *store.Repo, p *store.Snapshot, name string) *store.Entry {
	if p == nil {
		return nil
	}
	e, err := store.Lookup(ctx, repo, &p.RootDir, name)
	if err != nil || e.Type != store.TypeRegular {
		return nil
	}
	return e
}

// seedDisk is the disk file of an image the source was written from: its
// one regular file.
func seedDisk(ctx context.Context, repo *store.Repo, root *store.Entry) *store.Entry {
	entries, err := repo.Tree(ctx, root.Subtree)
	if err != nil || len(entries) != 1 || entries[0].Type != store.TypeRegular {
		return nil
	}
	return &entries[0]
}

// readDisk reads the whole disk into e's block list, several readers at
// once, each taking the next segment of blocks. Of an image file, blocks
// wholly in its holes are not read.
func readDisk(ctx context.Context, w *store.SnapshotWriter, fd int, e *store.Entry, file bool, workers int, prog *Progress) error {
	size := int64(e.Size)
	bs := int64(w.Volume().BlockSize)
	var extents []store.Extent
	sparse := false
	if file {
		var err error
		if extents, sparse, err = dataExtents(fd, size); err != nil {
			return err
		}
	}
	n := (size + bs - 1) / bs
	blocks := make([]store.Hash, n)
	if workers <= 0 {
		// Reading is sequential on the device; hashing is what the cores
		// share.
		workers = 2 * runtime.NumCPU()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(int64(workers), (n+diskSegment-1)/diskSegment) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A segment's consecutive data blocks are read with one pread:
			// large reads keep a disk (and a virtual one) streaming.
			buf := make([]byte, diskSegment*bs)
			for {
				first := (next.Add(1) - 1) * diskSegment
				if first >= n || ctx.Err() != nil {
					return
				}
				end := min(first+diskSegment, n)
				for i := first; i < end; {
					if sparse && !hasData(extents, i*bs, min(bs, size-i*bs)) {
						i++ // a hole: HoleHash, the zero value
						continue
					}
					j := i + 1
					for j < end && (!sparse || hasData(extents, j*bs, min(bs, size-j*bs))) {
						j++
					}
					if err := readDiskRun(ctx, w, fd, buf, blocks, i, j, bs, size, prog); err != nil {
						cancel(err)
						return
					}
					i = j
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	e.BlockSize = uint32(bs)
	e.Sparse, e.Extents = store.ExtentsOf(blocks, uint64(bs), uint64(size))
	return e.SetBlocks(blocks, func(b []byte) (store.Hash, error) { return w.PutTree(ctx, b) })
}

// readDiskRun reads blocks [i, j) with one pread into buf and stores each
// that is not all zeros.
func readDiskRun(ctx context.Context, w *store.SnapshotWriter, fd int, buf []byte, blocks []store.Hash, i, j, bs, size int64, prog *Progress) error {
	off := i * bs
	b := buf[:min(j*bs, size)-off]
	got, err := preadFull(fd, b, off)
	if err == nil && got < len(b) {
		err = fmt.Errorf("ended at %d bytes, %d short of its size", off+int64(got), size-off-int64(got))
	}
	if err != nil {
		return err
	}
	prog.ReadBytes.Add(uint64(len(b)))
	for k := i; k < j; k++ {
		blk := b[(k-i)*bs : min((k-i+1)*bs, int64(len(b)))]
		if store.IsZero(blk) {
			continue
		}
		h := w.Sum(blk)
		if err := w.PutBlock(ctx, h, blk); err != nil {
			return err
		}
		blocks[k] = h
	}
	return nil
}
