package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// BlockStore keeps block bytes in packs: append-only containers named by a
// number. Which block lies where is recorded by the store, not here, so that
// another backend (object storage, an image file) needs only these methods.
type BlockStore interface {
	// Create starts a new pack for appending.
	Create(ctx context.Context, id uint64) (PackWriter, error)
	// ReadAt fills p from pack id at offset off.
	ReadAt(ctx context.Context, id uint64, p []byte, off int64) error
	// Remove deletes a pack; one that is not there is no error.
	Remove(ctx context.Context, id uint64) error
	// List returns the ids of all packs present, finished or not.
	List(ctx context.Context) ([]uint64, error)
	// PackSize is the size of pack id as stored now (not through a handle
	// opened earlier).
	PackSize(ctx context.Context, id uint64) (int64, error)
	// Size is the space the packs take.
	Size(ctx context.Context) (int64, error)
	// Close releases open handles.
	Close() error
}

// cachedBlockStore is a BlockStore that keeps a local cache of what it
// reads (packs in an object store, with a chunkCache).
type cachedBlockStore interface {
	BlockStore
	// readStore reads as ReadAt does, from the store, not the cache.
	readStore(ctx context.Context, id uint64, p []byte, off int64) error
	// dropCached forgets what the cache holds of [off, off+n) of pack
	// id; false when it keeps none.
	dropCached(id uint64, off int64, n int) bool
}

// PackWriter appends blocks to one new pack.
type PackWriter interface {
	// Append adds p at the end and returns its offset; it copies p, which
	// its caller may reuse at once. The bytes may reach
	// the file later: an error writing them comes back from a later Append
	// or from Finish.
	Append(p []byte) (int64, error)
	// Size is the number of bytes appended so far.
	Size() int64
	// Finish makes the pack durable and closes it for writing.
	Finish(ctx context.Context) error
	// Abort closes the pack and removes it.
	Abort() error
}

// packDir is a BlockStore of pack files in one directory.
type packDir struct {
	dir string
	// staging: its packs are read back at once, to be sent, so their
	// pages stay in the page cache.
	staging bool

	mu   sync.RWMutex
	open map[uint64]*packHandle // read handles, kept because packs never change
	tick atomic.Uint64          // orders uses, for eviction
}

// packHandle is a read handle of one pack, shared by readers. It is
// closed when it has left the cache and its last reader is done, never
// under a read in flight.
type packHandle struct {
	f       *os.File
	refs    atomic.Int64 // readers using it now
	used    atomic.Uint64
	evicted atomic.Bool
	closed  atomic.Bool
}

// release ends one reader's use; the last one of an evicted handle
// closes it.
func (h *packHandle) release() {
	if h.refs.Add(-1) == 0 && h.evicted.Load() {
		h.close()
	}
}

func (h *packHandle) close() {
	if h.closed.CompareAndSwap(false, true) {
		h.f.Close()
	}
}

// evict takes h out of the cache: closed now if no reader uses it, else
// by its last reader. Called with the cache's write lock held, so no
// reader is between finding h and counting itself in.
func (h *packHandle) evict() {
	h.evicted.Store(true)
	if h.refs.Load() == 0 {
		h.close()
	}
}

// maxOpenPacks bounds the read handles packDir keeps.
const maxOpenPacks = 512

// NewPackDir returns a BlockStore that keeps packs as files in dir.
func NewPackDir(dir string) (BlockStore, error) { return newPackDir(dir) }

func newPackDir(dir string) (*packDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pack directory: %w", err)
	}
	return &packDir{dir: dir, open: make(map[uint64]*packHandle)}, nil
}

func (d *packDir) path(id uint64) string {
	return filepath.Join(d.dir, fmt.Sprintf("%016x.pack", id))
}

func (d *packDir) Create(_ context.Context, id uint64) (PackWriter, error) {
	f, err := os.OpenFile(d.path(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create pack: %w", err)
	}
	return &packFile{f: f, dir: d.dir, keepPages: d.staging}, nil
}

// acquire returns pack id's read handle, counted as in use until its
// release.
func (d *packDir) acquire(id uint64) (*packHandle, error) {
	d.mu.RLock()
	h := d.open[id]
	if h != nil {
		h.refs.Add(1)
	}
	d.mu.RUnlock()
	if h != nil {
		h.used.Store(d.tick.Add(1))
		return h, nil
	}
	f, err := os.Open(d.path(id))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pack %016x: %w", id, ErrCorrupt)
		}
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if h := d.open[id]; h != nil {
		f.Close()
		h.refs.Add(1)
		h.used.Store(d.tick.Add(1))
		return h, nil
	}
	if len(d.open) >= maxOpenPacks {
		d.evictOldest()
	}
	h = &packHandle{f: f}
	h.refs.Store(1)
	h.used.Store(d.tick.Add(1))
	d.open[id] = h
	return h, nil
}

// evictOldest drops the least recently used quarter of the cache, so that
// a scan of every pack evicts once per hundred-odd opens, not per open.
// Called with the write lock held.
func (d *packDir) evictOldest() {
	ids := make([]uint64, 0, len(d.open))
	for id := range d.open {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uint64) int { return cmp.Compare(d.open[a].used.Load(), d.open[b].used.Load()) })
	for _, id := range ids[:len(ids)/4+1] {
		d.open[id].evict()
		delete(d.open, id)
	}
}

func (d *packDir) ReadAt(_ context.Context, id uint64, p []byte, off int64) error {
	h, err := d.acquire(id)
	if err != nil {
		return err
	}
	defer h.release()
	n, err := h.f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		return fmt.Errorf("pack %016x: short read at %d: %w", id, off, ErrCorrupt)
	}
	return fmt.Errorf("pack %016x: %w", id, err)
}

func (d *packDir) Remove(_ context.Context, id uint64) error {
	// A reader may be using the handle, and an unlinked file stays
	// readable through it: the last reader closes it.
	d.mu.Lock()
	if h := d.open[id]; h != nil {
		h.evict()
		delete(d.open, id)
	}
	d.mu.Unlock()
	if err := os.Remove(d.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (d *packDir) List(context.Context) ([]uint64, error) {
	names, err := readDirNames(d.dir)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, n := range names {
		if hex, ok := strings.CutSuffix(n, ".pack"); ok {
			if id, err := strconv.ParseUint(hex, 16, 64); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

func (d *packDir) PackSize(_ context.Context, id uint64) (int64, error) {
	st, err := os.Stat(d.path(id))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (d *packDir) Size(context.Context) (int64, error) {
	return dirSize(d.dir)
}

func (d *packDir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, h := range d.open {
		h.evict()
		delete(d.open, id)
	}
	return nil
}

// packFile is a pack being written. Appends gather in a buffer of a
// megabyte (one write per block would cost a syscall per block); a full
// buffer goes to a goroutine of the pack's that writes it out, so that an
// Append, made under a snapshot writer's lock, copies bytes and does not
// wait for the disk unless the disk falls two buffers behind. Nothing
// reads a pack before Finish, nor soon after: what is on disk leaves the
// page cache as the pack is written (dropWritten).
type packFile struct {
	f    *os.File
	dir  string
	buf  []byte
	size int64 // bytes appended

	queue chan []byte   // full buffers to write; nil until the first
	free  chan []byte   // written buffers, for reuse
	done  chan struct{} // closed when the writer has ended
	err   atomic.Pointer[error]

	written int64 // bytes written to the file (the writer's)
	flushed int64 // bytes whose writeback has been started (the writer's)
	dropped int64 // bytes on disk and out of the page cache (the writer's)

	keepPages bool // a staged pack's, read back when it is finished
}

// packBuffer is how much a pack gathers before writing it.
const packBuffer = 1 << 20

// packQueue is how many full buffers may wait for the disk.
const packQueue = 2

// writebackChunk is how much a pack may have dirty in the page cache before
// its writeback is started; the fsync at Finish then has little left to do.
// The chunk before is then waited for and dropped, so a pack being written
// holds at most two chunks of the page cache.
const writebackChunk = 8 << 20

func (p *packFile) Append(b []byte) (int64, error) {
	if err := p.failed(); err != nil {
		return 0, err
	}
	off := p.size
	if len(p.buf) > 0 && len(p.buf)+len(b) > packBuffer {
		p.send()
	}
	if p.buf == nil {
		p.buf = p.newBuffer(len(b))
	}
	p.buf = append(p.buf, b...)
	p.size += int64(len(b))
	return off, nil
}

func (p *packFile) failed() error {
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

// newBuffer is a written buffer again, or a new one, for at least n bytes.
func (p *packFile) newBuffer(n int) []byte {
	select {
	case b := <-p.free:
		if cap(b) >= n {
			return b[:0]
		}
	default:
	}
	return make([]byte, 0, max(n, packBuffer))
}

// send hands the buffer to the writer, started with the first.
func (p *packFile) send() {
	if p.queue == nil {
		p.queue = make(chan []byte, packQueue)
		p.free = make(chan []byte, packQueue+1)
		p.done = make(chan struct{})
		go p.writer()
	}
	p.queue <- p.buf
	p.buf = nil
}

// writer writes the buffers it is sent, in order, and starts the
// writeback of what has gathered in the page cache. After an error it
// writes nothing more; Append and Finish return the error.
func (p *packFile) writer() {
	defer close(p.done)
	for b := range p.queue {
		if p.failed() == nil {
			if err := p.write(b); err != nil {
				p.err.Store(&err)
			}
		}
		select {
		case p.free <- b:
		default:
		}
	}
}

func (p *packFile) write(b []byte) error {
	if _, err := p.f.Write(b); err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	p.written += int64(len(b))
	if p.written-p.flushed >= writebackChunk {
		if !p.keepPages && p.flushed > p.dropped {
			if err := dropWritten(p.f, p.dropped, p.flushed-p.dropped); err != nil {
				return fmt.Errorf("write pack: %w", err)
			}
			p.dropped = p.flushed
		}
		startWriteback(p.f, p.flushed, p.written-p.flushed)
		p.flushed = p.written
	}
	return nil
}

// drain sends what is gathered and waits for the writer to end.
func (p *packFile) drain() {
	if len(p.buf) > 0 {
		p.send()
	}
	if p.queue != nil {
		close(p.queue)
		<-p.done
		p.queue = nil
	}
}

func (p *packFile) Size() int64 { return p.size }

func (p *packFile) Finish(context.Context) error {
	p.drain()
	if err := p.failed(); err != nil {
		p.f.Close()
		return err
	}
	if err := p.f.Sync(); err != nil {
		p.f.Close()
		return fmt.Errorf("sync pack: %w", err)
	}
	if !p.keepPages {
		dropPages(p.f, 0, 0) // all of it is on disk now
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("close pack: %w", err)
	}
	return syncDir(p.dir)
}

// errAborted stops a pack's writer: what is queued is not written.
var errAborted = errors.New("pack aborted")

func (p *packFile) Abort() error {
	p.buf = nil
	p.err.CompareAndSwap(nil, &errAborted)
	p.drain()
	p.f.Close()
	return os.Remove(p.f.Name())
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// dirSize adds up the allocated size of the files below dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		// Files come and go while the walk runs (badger compacts, gc
		// removes packs): one gone meanwhile takes no space.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			total += allocated(info)
		}
		return nil
	})
	return total, err
}
