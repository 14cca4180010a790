//go:build linux

package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/chainfs/chainfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileHandle is an open regular file of a snapshot. It keeps the blocks
// around the reader's position, each verified against its hash.
type fileHandle struct {
	n      *entryNode
	blocks *store.BlockList
	bs     int64

	mu    sync.Mutex
	cache map[int]*fetch
	next  int // the block a sequential reader asks for next
}

// fetch is one block being read or read.
type fetch struct {
	done   chan struct{}
	data   []byte
	err    error
	cancel context.CancelFunc // ends the read when no one will want it
}

var (
	_ = (gofs.FileReader)((*fileHandle)(nil))
	_ = (gofs.FileReleaser)((*fileHandle)(nil))
)

func newFileHandle(n *entryNode, blocks *store.BlockList) *fileHandle {
	return &fileHandle{n: n, blocks: blocks, bs: int64(n.entry.BlockSize), cache: map[int]*fetch{}}
}

// Read fills dest from off (FileReader).
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	obs := h.n.fs.observer
	if obs == nil {
		return h.read(ctx, dest, off)
	}
	start := time.Now()
	res, errno := h.read(ctx, dest, off)
	n := 0
	if res != nil {
		n = res.Size()
	}
	obs.Read(n, time.Since(start), errno != 0)
	return res, errno
}

func (h *fileHandle) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	readAhead := h.n.fs.readAhead
	size := int64(h.n.entry.Size)
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), size)
	first, last := int(off/h.bs), int((end-1)/h.bs)

	h.mu.Lock()
	sequential := first == h.next || first+1 == h.next
	fetches := make([]*fetch, 0, last-first+1)
	for i := first; i <= last; i++ {
		fetches = append(fetches, h.start(i))
	}
	if sequential {
		for i := last + 1; i <= last+readAhead && i < h.blocks.Len(); i++ {
			h.start(i)
		}
	}
	h.next = last + 1
	for i := range h.cache {
		if i < first-1 || i > last+readAhead {
			delete(h.cache, i)
		}
	}
	h.mu.Unlock()

	n := 0
	for k, f := range fetches {
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, syscall.EINTR
		}
		if f.err != nil {
			return nil, h.n.errno(f.err, "read")
		}
		blockStart := int64(first+k) * h.bs
		lo := max(off, blockStart) - blockStart
		hi := min(end, blockStart+int64(len(f.data))) - blockStart
		n += copy(dest[n:], f.data[lo:hi])
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// start returns the fetch of block i, starting it if needed. Called with
// h.mu held; the read itself runs without it.
func (h *fileHandle) start(i int) *fetch {
	if f := h.cache[i]; f != nil {
		select {
		case <-f.done:
			if f.err == nil {
				return f
			}
			// It failed (a store that did not answer, say): a later read
			// fetches it again.
		default:
			return f
		}
	}
	// Not the request's context: a block fetched ahead outlives the read
	// that asked for it. Its own, which the handle's release cancels.
	ctx, cancel := context.WithCancel(context.Background())
	f := &fetch{done: make(chan struct{}), cancel: cancel}
	h.cache[i] = f
	length := h.n.entry.BlockLen(i)
	go func() {
		defer cancel()
		defer close(f.done)
		f.data = make([]byte, length)
		hash, err := h.blocks.At(ctx, i)
		if err != nil || hash.IsHole() {
			f.err = err
			return
		}
		var n int
		n, f.err = h.n.snap.rd.ReadBlock(ctx, hash, f.data)
		if f.err == nil && n != len(f.data) {
			f.err = store.ErrCorrupt
		}
	}()
	return f
}

// Release ends the reads still fetched ahead for this handle, which no
// one will read now (FileReleaser): a reader that read a little and
// closed leaves no block reads behind it.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, f := range h.cache {
		f.cancel()
		delete(h.cache, i)
	}
	return 0
}
