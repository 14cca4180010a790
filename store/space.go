package store

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// badger keeps its memtables and writes its tables through memory-mapped
// files, which take their disk blocks when a page is first written: on a
// full file system that is a SIGBUS, not an error, and the process dies.
// So the store never lets its own writes fill the file system: it keeps a
// margin free for the metadata, checks it before a snapshot begins, every
// few megabytes of block data, and before a commit (with room for the
// records the commit writes), and fails with ENOSPC first. A snapshot
// refused so is undone like any failed one.

// Bounds of the margin kept free: a twentieth of the file system, and
// room for four of badger's memtables to be flushed, within these.
const (
	minFreeMargin = 4 << 20
	maxFreeMargin = 256 << 20
)

// memtableSize is the size of badger's memtables for the metadata in
// metaDir: 8 MiB, the least at which a transaction of chunkSize blocks
// fits badger's batch (15 % of it). Each flush of a memtable builds its
// table in memory, in arenas several times its size that badger pools,
// and a big snapshot's commit flushes many: larger memtables cost memory,
// not speed (docs/benchmarks.md, "Snapshot memory").
//
// A replica of a repository in an object store keeps 32 MiB: its
// transactions are journal entries of up to batchEntrySize, made by
// whichever host wrote them, and every replica must apply each in one
// transaction. Logs of larger memtables, which an earlier chainfs that
// crashed left, are replayed at their file's size (a log is made twice
// its memtable's size, and cut to its data once replayed): badger exits
// the process over a log that does not fit. The next open uses the usual
// size.
func memtableSize(metaDir string, remote bool) int64 {
	size := int64(8 << 20)
	if remote {
		size = 32 << 20
	}
	logs, _ := filepath.Glob(filepath.Join(metaDir, "*.mem"))
	for _, l := range logs {
		if st, err := os.Stat(l); err == nil {
			size = max(size, st.Size())
		}
	}
	return size
}

// recordBytes is about what the commit writes per block of a delta: the
// delta record, the interval record and the block record's update, with
// badger's own overhead (a first snapshot of 100,000 small files took
// 220 bytes of metadata a block, its trees included).
const recordBytes = 256

// spaceCheckEvery is how much block and tree data a snapshot writes
// between checks; each check wants room for the next as well as the
// margin.
const spaceCheckEvery = 8 << 20

// freeSpace returns what the repository's file system has available to
// this process and the margin kept free on it.
func (r *Repo) freeSpace() (avail, margin uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.dir, &st); err != nil {
		return 0, 0, err
	}
	size := st.Blocks * uint64(st.Bsize)
	margin = min(max(size/20, 4*r.memtable, minFreeMargin), maxFreeMargin)
	return st.Bavail * uint64(st.Bsize), margin, nil
}

// haveSpace fails with ENOSPC when writing need more bytes would leave
// less than the margin free.
func (r *Repo) haveSpace(need uint64, what string) error {
	avail, margin, err := r.freeSpace()
	if err != nil {
		return nil // the file system cannot tell; writes will
	}
	if avail < need+margin {
		return fmt.Errorf("%s: the repository's file system has %d MiB free, and chainfs keeps %d MiB of it free for its metadata (free some space, or run gc, after chainfs trash empty if deleted snapshots wait in the trash): %w",
			what, avail>>20, (need+margin)>>20, syscall.ENOSPC)
	}
	return nil
}
