//go:build linux

package fs

import (
	"context"
	"sync"
	"sync/atomic"
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
	entry  *store.Entry
	blocks *store.BlockList
	bs     int64

	mu    sync.Mutex
	cache map[int]*fetch
	next  int // the block a sequential reader asks for next
}

// fetch is one block being read or read. Its buffer is pooled: the
// handle's cache, the read that fills it and every reply that carries it
// each hold a reference, and the last to let go puts it back.
type fetch struct {
	done   chan struct{}
	buf    *[]byte
	data   []byte // *buf, once done
	err    error
	cancel context.CancelFunc // ends the read when no one will want it
	refs   atomic.Int32
}

func (f *fetch) release() {
	if f.refs.Add(-1) == 0 {
		blockBufs.put(f.buf)
		f.buf, f.data = nil, nil
	}
}

var (
	_ = (gofs.FileReader)((*fileHandle)(nil))
	_ = (gofs.FileReleaser)((*fileHandle)(nil))
)

func newFileHandle(n *entryNode, e *store.Entry, blocks *store.BlockList) *fileHandle {
	return &fileHandle{n: n, entry: e, blocks: blocks, bs: int64(e.BlockSize), cache: map[int]*fetch{}}
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

// read answers with the verified blocks' own buffers, which go to the
// kernel as they are (blockReply): only dest's length is used, and no
// byte is copied on the way.
func (h *fileHandle) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	readAhead := h.n.fs.readAhead
	size := int64(h.entry.Size)
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), size)
	first, last := int(off/h.bs), int((end-1)/h.bs)

	h.mu.Lock()
	sequential := first == h.next || first+1 == h.next
	reply := &blockReply{fetches: make([]*fetch, 0, last-first+1)}
	for i := first; i <= last; i++ {
		f := h.start(i)
		f.refs.Add(1)
		reply.fetches = append(reply.fetches, f)
	}
	if sequential {
		for i := last + 1; i <= last+readAhead && i < h.blocks.Len(); i++ {
			h.start(i)
		}
	}
	h.next = last + 1
	for i, f := range h.cache {
		if i < first-1 || i > last+readAhead {
			delete(h.cache, i)
			f.release()
		}
	}
	h.mu.Unlock()

	reply.vecs = make([][]byte, 0, len(reply.fetches))
	for k, f := range reply.fetches {
		select {
		case <-f.done:
		case <-ctx.Done():
			reply.Done()
			return nil, syscall.EINTR
		}
		if f.err != nil {
			reply.Done()
			return nil, h.n.errno(f.err, "read")
		}
		blockStart := int64(first+k) * h.bs
		lo := max(off, blockStart) - blockStart
		hi := min(end, blockStart+int64(len(f.data))) - blockStart
		reply.vecs = append(reply.vecs, f.data[lo:hi])
	}
	return reply, 0
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
		f.release()
	}
	// Not the request's context: a block fetched ahead outlives the read
	// that asked for it. Its own, which the handle's release cancels.
	ctx, cancel := context.WithCancel(context.Background())
	length := h.entry.BlockLen(i)
	f := &fetch{done: make(chan struct{}), cancel: cancel, buf: blockBufs.get(int(h.bs))}
	f.refs.Store(2) // the cache's and the fetching goroutine's
	h.cache[i] = f
	go func() {
		defer f.release()
		defer cancel()
		defer close(f.done)
		data := (*f.buf)[:length]
		hash, err := h.blocks.At(ctx, i)
		if err != nil {
			f.err = err
			return
		}
		if hash.IsHole() {
			clear(data)
			f.data = data
			return
		}
		n, err := h.n.snap.rd.ReadBlock(ctx, hash, data)
		switch {
		case err != nil:
			f.err = err
		case n != len(data):
			f.err = store.ErrCorrupt
		default:
			f.data = data
		}
	}()
	return f
}

// blockReply is a read's answer: slices of its blocks' buffers, written
// to the kernel with one writev. go-fuse calls Done once they are written,
// which lets the buffers go back to the pool.
type blockReply struct {
	fetches []*fetch
	vecs    [][]byte
}

func (r *blockReply) Size() int {
	n := 0
	for _, v := range r.vecs {
		n += len(v)
	}
	return n
}

// Slices is what go-fuse writes as it is, without copying.
func (r *blockReply) Slices() ([][]byte, fuse.Status) { return r.vecs, fuse.OK }

// Bytes joins the slices, for a kernel interface that wants one buffer.
func (r *blockReply) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, v := range r.vecs {
		buf = append(buf, v...)
	}
	return buf, fuse.OK
}

func (r *blockReply) Done() {
	for _, f := range r.fetches {
		f.release()
	}
	r.fetches, r.vecs = nil, nil
}

// blockBufs pools block buffers by size: a read through the mount
// allocates nothing per block.
var blockBufs bufferPools

type bufferPools struct{ pools sync.Map } // size → *sync.Pool of *[]byte

func (p *bufferPools) get(size int) *[]byte {
	pool, ok := p.pools.Load(size)
	if !ok {
		pool, _ = p.pools.LoadOrStore(size, &sync.Pool{New: func() any {
			b := make([]byte, size)
			return &b
		}})
	}
	return pool.(*sync.Pool).Get().(*[]byte)
}

func (p *bufferPools) put(b *[]byte) {
	if pool, ok := p.pools.Load(cap(*b)); ok {
		*b = (*b)[:cap(*b)]
		pool.(*sync.Pool).Put(b)
	}
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
		f.release()
	}
	return 0
}
