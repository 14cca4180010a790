package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestChunkFetchOutlivesItsFirstReader: a reader waiting for a chunk that
// another reader's fetch brings gets the chunk, not that reader's
// cancellation (a read-ahead dropped, a file closed).
func TestChunkFetchOutlivesItsFirstReader(t *testing.T) {
	c, err := openChunkCache(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	size := func(context.Context) (int64, error) { return cacheChunkSize, nil }
	started, release := make(chan struct{}), make(chan struct{})
	fetch := func(_ context.Context, b []byte, off int64) error {
		close(started)
		<-release
		for i := range b {
			b[i] = byte(off + int64(i))
		}
		return nil
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- c.readAt(ctx1, 7, make([]byte, 10), 0, size, fetch) }()
	<-started
	second := make(chan error, 1)
	p := make([]byte, 10)
	go func() {
		second <- c.readAt(context.Background(), 7, p, 100, size, func(context.Context, []byte, int64) error {
			return errors.New("a second fetch of the chunk")
		})
	}()
	time.Sleep(100 * time.Millisecond)
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled reader: %v", err)
	}
	close(release)
	if err := <-second; err != nil || p[0] != 100 {
		t.Fatalf("the reader never cancelled: %v, %v", err, p)
	}
}

// TestReadAheadWithinTheCache: a sequential reader of a cache that holds
// three chunks has at most two fetched ahead of it, so read-ahead never
// evicts the chunk being read, and every chunk is fetched once.
func TestReadAheadWithinTheCache(t *testing.T) {
	c, err := openChunkCache(t.TempDir(), 3*cacheChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	const chunks = 12
	size := func(context.Context) (int64, error) { return chunks * cacheChunkSize, nil }
	var mu sync.Mutex
	fetched := map[int64]int{}
	fetch := func(_ context.Context, b []byte, off int64) error {
		mu.Lock()
		fetched[off/cacheChunkSize]++
		mu.Unlock()
		return nil
	}
	p := make([]byte, 256<<10)
	for off := int64(0); off < chunks*cacheChunkSize; off += int64(len(p)) {
		if err := c.readAt(context.Background(), 1, p, off, size, fetch); err != nil {
			t.Fatal(err)
		}
		// The fetches ahead land before the reader gets to them, as
		// they would with a store slower than a memory copy.
		for range 100 {
			c.mu.Lock()
			n := len(c.fetching)
			c.mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range int64(chunks) {
		if fetched[i] != 1 {
			t.Errorf("chunk %d fetched %d times, want once", i, fetched[i])
		}
	}
}
