//go:build linux

package fs

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
)

// stallingReader serves the first block at once and holds every other
// read until its context ends, counting those that ended so.
type stallingReader struct {
	first     store.Hash
	cancelled atomic.Int32
}

func (*stallingReader) Sum(b []byte) store.Hash { return store.Sum(b) }

func (r *stallingReader) Tree(context.Context, store.Hash) ([]store.Entry, error) { return nil, nil }
func (r *stallingReader) Blob(context.Context, store.Hash) ([]byte, error)        { return nil, nil }
func (r *stallingReader) ReadBlock(ctx context.Context, h store.Hash, p []byte) (int, error) {
	if h == r.first {
		return len(p), nil
	}
	select {
	case <-ctx.Done():
		r.cancelled.Add(1)
		return 0, ctx.Err()
	case <-time.After(time.Minute):
		return len(p), nil
	}
}

// TestReleaseCancelsReadAhead: a reader that reads the first block and
// closes the file leaves no reads of the blocks fetched ahead running.
func TestReleaseCancelsReadAhead(t *testing.T) {
	const bs, blocks, ahead = 4096, 12, 8
	e := &store.Entry{Name: "f", Type: store.TypeRegular, Size: bs * blocks, BlockSize: bs, Nlink: 1}
	for i := range blocks {
		e.Blocks = append(e.Blocks, store.Sum([]byte{byte(i)}))
	}
	rd := &stallingReader{first: e.Blocks[0]}
	list, err := store.OpenBlocks(context.Background(), rd, e)
	if err != nil {
		t.Fatal(err)
	}
	n := &entryNode{fs: &FS{readAhead: ahead, log: slog.New(slog.DiscardHandler)}, snap: &snapRef{rd: rd}}
	h := newFileHandle(n, e, list)
	if _, errno := h.read(context.Background(), make([]byte, bs), 0); errno != 0 {
		t.Fatalf("read: %v", errno)
	}
	h.mu.Lock()
	var pending []*fetch
	for i, f := range h.cache {
		if i > 0 {
			pending = append(pending, f)
		}
	}
	h.mu.Unlock()
	if len(pending) != ahead {
		t.Fatalf("%d blocks fetched ahead, want %d", len(pending), ahead)
	}
	h.Release(context.Background())
	for _, f := range pending {
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			t.Fatal("a read fetched ahead still runs after the handle's release")
		}
	}
	if got := rd.cancelled.Load(); got != ahead {
		t.Errorf("%d reads cancelled, want %d", got, ahead)
	}
}
