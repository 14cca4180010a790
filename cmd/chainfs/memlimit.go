package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// softMemoryLimit keeps the process's heap under limit while what is live
// fits well below it, and lets it go when it does not. Go collects when
// the heap has doubled since the last collection, so a process keeps
// about twice what it holds resident; under a limit it collects sooner.
// But Go's own limit makes the collector run without pause once the live
// heap nears the limit (a listing of 400,000 files spent half its CPU
// collecting and took twice as long): past liveShare of the limit the
// process collects at Go's usual pace instead, and takes the limit back
// once the live heap has shrunk to half of it. It returns when ctx ends,
// and at once under GOGC=off.
func softMemoryLimit(ctx context.Context, limit int64, log *slog.Logger) {
	const liveShare = 0.85
	debug.SetMemoryLimit(limit)
	gogc := debug.SetGCPercent(-1) // the only way to read it
	debug.SetGCPercent(gogc)
	if gogc < 0 {
		// GOGC=off: the limit is the only thing that collects, and
		// lifting it would stop collection altogether.
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	held := true
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := int64(sample[0].Value.Uint64())
		switch {
		case held && float64(live) > liveShare*float64(limit):
			held = false
			debug.SetMemoryLimit(math.MaxInt64)
			log.Info("what chainfs holds in memory nears its memory limit: it collects garbage at the usual pace, not without pause, and may use about twice what it holds",
				"live", size(uint64(live)), "limit", size(uint64(limit)))
		case !held && live < limit/2:
			held = true
			debug.SetMemoryLimit(limit)
			log.Info("chainfs is back under its memory limit", "live", size(uint64(live)), "limit", size(uint64(limit)))
		}
	}
}

// commandMemoryLimit is the soft memory limit of a command that runs on
// the repository itself, not in a daemon (the daemon's is --memory-limit):
// a snapshot of millions of files, a restore, a gc.
const commandMemoryLimit = 192 << 20
