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
// packs be merged too (store.Repo.MergeSmallPacks).
const (
	mergeEvery  = 10 * time.Second
	mergeSettle = 10 * time.Second
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

// merge merges what is due, at low priority.
func (m *merger) merge(ctx context.Context) {
	settled := m.clock.Now().Sub(time.Unix(0, m.ended.Load())) >= mergeSettle
	start := time.Now()
	var st *store.GCStats
	var err error
	lowPriority(func() { st, err = m.repo.MergeSmallPacks(ctx, settled) })
	switch {
	case errors.Is(err, store.ErrBusy) || errors.Is(err, context.Canceled):
		m.log.Debug("merging small packs: a snapshot runs; later", "err", err)
	case err != nil:
		m.log.Warn("merging small packs", "err", err)
	case st.PacksRemoved > 0:
		m.log.Info("merged small packs", "packs", st.PacksRemoved, "bytes_moved", st.BytesMoved,
			"blocks_freed", st.BlocksFreed, "took", time.Since(start).Round(time.Millisecond))
	}
}

// lowPriority runs fn on a thread of its own at the lowest CPU and I/O
// priority (nice 19, best-effort I/O at its lowest level: not the idle
// class, under which a busy disk could hold a merge, and so the gc lock,
// without end), so that the mount's readers and the snapshots go first.
// The thread ends with fn: its priority goes with it.
func lowPriority(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		tid := unix.Gettid()
		unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
		const whoProcess, classBestEffort, lowest = 1, 2, 7
		unix.Syscall(unix.SYS_IOPRIO_SET, whoProcess, uintptr(tid), classBestEffort<<13|lowest)
		fn()
	}()
	<-done
}
