package store

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a range of f to disk
// without waiting for it. It is only advice: errors surface at fsync.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// dropWritten waits until a range of f is on disk and then drops its
// pages from the page cache. A writer of packs calls it on what it wrote
// a while ago: nothing reads a new pack soon, and a snapshot of a
// terabyte would otherwise fill the page cache with packs, pushing out
// what the machine is using and making the kernel find a fresh page for
// every one it writes, where dropped ones are taken again. The wait's
// error is the write's: the kernel reports a writeback error once per
// open file, so a later fsync would not see it again.
func dropWritten(f *os.File, off, n int64) error {
	const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	switch err := unix.SyncFileRange(int(f.Fd()), off, n, wait); err {
	case nil:
	case unix.ENOSYS, unix.EOPNOTSUPP, unix.EINVAL, unix.EPERM:
		return nil // not here (a seccomp filter, say): the pages stay, fsync still tells
	default:
		return err
	}
	unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED) // advice: a page kept is no harm
	return nil
}

// allocated is the space a file takes on disk, holes excluded.
func allocated(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
