package store

import (
	"context"
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

	// Closed while the work waits: it is dropped (gc does it later), and
	// nothing given after close runs, the lock free or not.
	l.RLock()
	l.whenFree(func() { ran <- "waiting at close" })
	l.close()
	l.RUnlock()
	l.whenFree(func() { ran <- "after close, lock free" })
	l.RLock()
	l.whenFree(func() { ran <- "after close, lock held" })
	l.RUnlock()
	time.Sleep(50 * time.Millisecond)
	if len(ran) > 0 {
		t.Errorf("%s ran after close", <-ran)
	}
}

// TestGCLockCloseWaits: close returns only once the work that runs has
// ended, so that the store it gives back to is still open.
func TestGCLockCloseWaits(t *testing.T) {
	var l gcLock
	l.RLock()
	ended := false
	l.whenFree(func() { time.Sleep(100 * time.Millisecond); ended = true })
	l.RUnlock() // starts the work on its own goroutine
	time.Sleep(10 * time.Millisecond)
	l.close()
	if !ended {
		t.Error("close returned before the running work ended")
	}
}

// TestGCLockGivesWay: work that takes the lock yielding gets it only when
// it is free, and its context ends as soon as a snapshot or gc asks for
// the lock, which they get once it lets go.
func TestGCLockGivesWay(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		var l gcLock
		ctx, ok := l.tryLockYielding(context.Background())
		if !ok {
			t.Fatal("a free lock was not taken")
		}
		if _, ok := l.tryLockYielding(context.Background()); ok {
			t.Fatal("taken twice")
		}
		got := make(chan bool)
		go func() {
			if exclusive {
				l.Lock()
				defer l.Unlock()
			} else {
				l.RLock()
				defer l.RUnlock()
			}
			got <- true
		}()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the work was not told to give way")
		}
		select {
		case <-got:
			t.Fatal("the lock was taken while the work held it")
		case <-time.After(50 * time.Millisecond):
		}
		l.Unlock()
		<-got
	}
	var l gcLock
	l.RLock()
	if _, ok := l.tryLockYielding(context.Background()); ok {
		t.Fatal("taken while a snapshot held the lock")
	}
	l.RUnlock()
	// A snapshot that asked and has not got the lock yet: the work must
	// not take it, or the snapshot would wait for all of the work.
	l.want(1)
	if _, ok := l.tryLockYielding(context.Background()); ok {
		t.Fatal("taken while a snapshot was asking for the lock")
	}
	l.want(-1)

	// close stops the work and returns once it has let go, so that the
	// store it works on is still open.
	ctx, ok := l.tryLockYielding(context.Background())
	if !ok {
		t.Fatal("a free lock was not taken")
	}
	let := make(chan time.Time, 1)
	go func() {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond)
		let <- time.Now()
		l.Unlock()
	}()
	l.close()
	if closed := time.Now(); len(let) == 0 || (<-let).After(closed) {
		t.Fatal("close returned before the work let go")
	}
	if _, ok := l.tryLockYielding(context.Background()); ok {
		t.Fatal("taken after close")
	}
}
