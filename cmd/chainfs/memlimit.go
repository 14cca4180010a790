package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// softMemoryLimit keeps the daemon's heap under limit while what is live
// fits well below it, and lets it go when it does not. Go's own limit
// makes the collector run without pause once the live heap nears the
// limit (a listing of 400,000 files spent half its CPU collecting and took
// twice as long): past liveShare of the limit the daemon collects at Go's
// usual pace instead, which holds about twice what is live, and takes the
// limit back once the live heap has shrunk to half of it. It returns when
// ctx ends, and at once under GOGC=off.
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
			log.Warn("what the daemon holds in memory nears --memory-limit: it collects garbage at the usual pace, not without pause, and may use about twice what it holds",
				"live", size(uint64(live)), "limit", size(uint64(limit)))
		case !held && live < limit/2:
			held = true
			debug.SetMemoryLimit(limit)
			log.Info("the daemon is back under --memory-limit", "live", size(uint64(live)), "limit", size(uint64(limit)))
		}
	}
}
