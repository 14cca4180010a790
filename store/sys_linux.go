package store

import (
	"os"
	"sync"
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
// error is the write's, whatever it is: the kernel reports a writeback
// error once per open file, so a later fsync would not see it again.
func dropWritten(f *os.File, off, n int64) error {
	if !canDrop(f) {
		return nil
	}
	const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	if err := unix.SyncFileRange(int(f.Fd()), off, n, wait); err != nil {
		return err
	}
	dropPages(f, off, n)
	return nil
}

// dropPages drops the clean pages of a range of f (n 0: to its end). It is
// advice: a page kept is no harm.
func dropPages(f *os.File, off, n int64) {
	unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}

// dropSupport is whether this process may wait on a range of a file:
// sync_file_range may be missing (an old sandbox) or refused (a seccomp
// filter). It is asked once, with no flags, which only checks the call,
// so that no error of the real one is ever taken for its absence.
var dropSupport struct {
	once sync.Once
	ok   bool
}

// canDrop tells whether dropWritten can wait on f's ranges here.
func canDrop(f *os.File) bool {
	dropSupport.once.Do(func() { dropSupport.ok = unix.SyncFileRange(int(f.Fd()), 0, 0, 0) == nil })
	return dropSupport.ok
}

// allocated is the space a file takes on disk, holes excluded.
func allocated(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
