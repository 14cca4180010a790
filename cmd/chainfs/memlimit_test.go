package main

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestSoftMemoryLimit: a live heap past most of the limit lifts it, so
// the collector does not run without pause; once the heap shrinks the
// limit holds again.
func TestSoftMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const limit = 16 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go softMemoryLimit(ctx, limit, slog.New(slog.DiscardHandler))
	waitLimit := func(want int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			runtime.GC()
			if debug.SetMemoryLimit(-1) == want {
				return
			}
		}
		t.Fatalf("memory limit %d, want %d", debug.SetMemoryLimit(-1), want)
	}
	waitLimit(limit)
	held := make([][]byte, 0, 32)
	for range 32 {
		held = append(held, make([]byte, 1<<20))
	}
	waitLimit(math.MaxInt64)
	runtime.KeepAlive(held)
	held = nil
	waitLimit(limit)
}
