package store

import (
	"testing"
	"time"
)

// TestGCLockWork: work that needs the lock alone runs at once when it is
// free; while snapshots hold it, it waits without holding up a new one,
// and runs as soon as the last lets go; after close it is dropped.
func TestGCLockWork(t *testing.T) {
	var l gcLock
	ran := make(chan string, 4)
	l.whenFree(func() { ran <- "free" })
	if got := <-ran; got != "free" {
		t.Fatal(got)
	}

	l.RLock() // a running snapshot
	l.whenFree(func() { ran <- "after" })
	got := make(chan bool)
	go func() { l.RLock(); got <- true }() // a new snapshot
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("a new snapshot waited behind the pending work")
	}
	select {
	case w := <-ran:
		t.Fatalf("%s ran while snapshots held the lock", w)
	case <-time.After(50 * time.Millisecond):
	}
	l.RUnlock()
	select {
	case w := <-ran:
		t.Fatalf("%s ran while a snapshot held the lock", w)
	case <-time.After(50 * time.Millisecond):
	}
	start := time.Now()
	l.RUnlock()
	select {
	case <-ran:
		if d := time.Since(start); d > time.Second {
			t.Errorf("the work ran %v after the lock was free", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the work did not run once the lock was free")
	}

	l.RLock()
	l.whenFree(func() { ran <- "dropped" })
	l.RUnlock()
	l.close()
	l.RLock()
	l.whenFree(func() { ran <- "after close" })
	l.RUnlock()
	l.close()
	for len(ran) > 0 {
		if w := <-ran; w != "dropped" {
			t.Errorf("%s ran after close", w)
		}
	}
}
