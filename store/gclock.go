package store

import (
	"context"
	"sync"
)

// gcLock keeps gc and snapshots apart: a snapshot holds it shared from
// Begin to Commit or Abort, gc exclusively, so gc never frees a block a
// running snapshot is about to link. Some work needs it exclusively but
// must not queue for it (giving back an aborted snapshot's packs): a
// writer queued on an RWMutex holds up every new reader, so every new
// snapshot would wait behind the running ones. Such work waits in a list
// instead, and runs as soon as the lock is let go and free: no polling,
// no waiting in line. Other work takes it only while nobody wants it, and
// gives way (the daemon's merge of small packs: tryLockYielding).
type gcLock struct {
	sync.RWMutex

	mu      sync.Mutex
	pending []func()
	closed  bool
	running sync.WaitGroup
	// wanting counts the takers between asking and getting the lock;
	// yield cancels the work that holds it and gives way, if any, which
	// yielding counts until it lets go.
	wanting  int
	yield    context.CancelFunc
	yielding sync.WaitGroup
}

// RLock takes the lock shared, making a holder that gives way let go.
func (l *gcLock) RLock() {
	l.want(1)
	l.RWMutex.RLock()
	l.want(-1)
}

// Lock takes the lock exclusively, making a holder that gives way let go.
func (l *gcLock) Lock() {
	l.want(1)
	l.RWMutex.Lock()
	l.want(-1)
}

func (l *gcLock) want(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.wanting += n
	if n > 0 && l.yield != nil {
		l.yield()
	}
}

// tryLockYielding takes the lock exclusively if it is free and nobody is
// waiting for it, for work that gives way: the context it returns, derived
// from ctx, is cancelled as soon as anyone else asks for the lock, and the
// work should then end and Unlock soon. ok is false if the lock was not
// taken.
func (l *gcLock) tryLockYielding(ctx context.Context) (_ context.Context, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wanting > 0 || l.closed || !l.RWMutex.TryLock() {
		return nil, false
	}
	ctx, l.yield = context.WithCancel(ctx)
	l.yielding.Add(1)
	return ctx, true
}

// RUnlock lets go of a shared hold, and runs the waiting work if the lock
// is now free.
func (l *gcLock) RUnlock() {
	l.RWMutex.RUnlock()
	l.kick()
}

// Unlock lets go of an exclusive hold, and runs the waiting work if the
// lock is now free.
func (l *gcLock) Unlock() {
	l.mu.Lock()
	yielded := l.yield != nil
	if yielded {
		l.yield() // releases the context
		l.yield = nil
	}
	l.mu.Unlock()
	l.RWMutex.Unlock()
	if yielded {
		l.yielding.Done()
	}
	l.kick()
}

// whenFree runs fn with the lock held exclusively: at once when the lock
// is free, else on a goroutine of its own when it next is. After close,
// fn is dropped.
func (l *gcLock) whenFree(fn func()) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.running.Add(1) // close waits for fn, now or later
	l.mu.Unlock()
	if l.RWMutex.TryLock() {
		fn()
		l.running.Done()
		l.Unlock()
		return
	}
	l.mu.Lock()
	if l.closed {
		l.running.Done()
	} else {
		l.pending = append(l.pending, fn)
	}
	l.mu.Unlock()
	// The holders may have let go before fn was listed.
	l.kick()
}

// kick starts the waiting work if the lock is free.
func (l *gcLock) kick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 || l.closed || !l.RWMutex.TryLock() {
		return
	}
	work := l.pending
	l.pending = nil
	go func() {
		for _, fn := range work {
			fn()
			l.running.Done()
		}
		l.Unlock()
	}()
}

// close drops the work still waiting (gc does it later), stops the work
// that gives way, and waits for the work running.
func (l *gcLock) close() {
	l.mu.Lock()
	l.closed = true
	if l.yield != nil {
		l.yield()
	}
	for range l.pending {
		l.running.Done()
	}
	l.pending = nil
	l.mu.Unlock()
	l.running.Wait()
	l.yielding.Wait()
}
