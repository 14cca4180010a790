//go:build linux

package daemon

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// mergeEvery is how often the daemon asks whether small packs are due a
// merge (a read of the pack records); mergeSettle is how long after the
// last snapshot ended snapshots count as settled, which lets the smallest
// packs be merged too (store.Repo.MergeSmallPacks); mergeBackoff is how
// long a merge that failed (a full disk, damaged metadata) waits before
// the next try.
const (
	mergeEvery   = 10 * time.Second
	mergeSettle  = 10 * time.Second
	mergeBackoff = 10 * time.Minute
)

// merger merges the repository's small packs in the background, so that
// chains stay flat without anyone running gc. A snapshot, gc or repair
// that starts stops it; it tries again at its next look.
type merger struct {
	repo  *store.Repo
	clock Clock
	log   *slog.Logger
	// ended is when the last snapshot ended, in Unix nanoseconds.
	ended atomic.Int64
	// failed is when the last merge failed.
	failed time.Time
}

func newMerger(repo *store.Repo, clock Clock, log *slog.Logger) *merger {
	return &merger{repo: repo, clock: clock, log: log}
}

// snapshotEnded notes that a snapshot ended, made or not.
func (m *merger) snapshotEnded() { m.ended.Store(m.clock.Now().UnixNano()) }

// run looks every mergeEvery until ctx is done, and returns once a merge
// under way has stopped.
func (m *merger) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(mergeEvery):
		}
		m.merge(ctx)
	}
}

// merge merges what is due, at low I/O priority.
func (m *merger) merge(ctx context.Context) {
	now := m.clock.Now()
	if now.Sub(m.failed) < mergeBackoff {
		return
	}
	settled := now.Sub(time.Unix(0, m.ended.Load())) >= mergeSettle
	if due, err := m.repo.MergeDue(settled); err != nil || !due {
		return
	}
	start := time.Now()
	var st *store.GCStats
	var err error
	lowIOPriority(func() { st, err = m.repo.MergeSmallPacks(ctx, settled) })
	if st.PacksRemoved > 0 {
		m.log.Info("merged small packs", "packs", st.PacksRemoved, "bytes_moved", st.BytesMoved,
			"blocks_freed", st.BlocksFreed, "took", time.Since(start).Round(time.Millisecond))
	}
	switch {
	case errors.Is(err, store.ErrBusy) || errors.Is(err, context.Canceled):
		m.log.Debug("merging small packs: a snapshot runs; later", "err", err)
	case err != nil:
		m.failed = now
		m.log.Warn("merging small packs; trying again later", "err", err, "in", mergeBackoff)
	}
}

// lowIOPriority runs fn on a thread of its own whose reads and syncs go at
// the lowest best-effort I/O priority, so that the mount's readers go
// first (not the idle class, under which a busy disk could hold a merge,
// and with it the gc lock, without end). Its CPU priority stays: a merge
// holds the gc lock, and a snapshot that wants it waits until the merge
// has seen that it must stop. The thread ends with fn, and its priority
// with it. Writes that other goroutines make for fn (badger's, the pack
// writer's) go at their own priority.
func lowIOPriority(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		const whoProcess, classBestEffort, lowest = 1, 2, 7
		// Refused (an old kernel), the merge runs at the usual priority.
		unix.Syscall(unix.SYS_IOPRIO_SET, whoProcess, uintptr(unix.Gettid()), classBestEffort<<13|lowest)
		fn()
	}()
	<-done
}
