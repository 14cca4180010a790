package store

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// chunkCache keeps, in files of a local directory, chunks of packs read
// from an object store: a read fetches the whole aligned chunk that holds
// it with one ranged request, so that the reads after it in the pack (the
// rest of a file, the next small files of a directory, which are laid
// out together) need none, and a read again needs none either. A pack
// never changes once sent, so a chunk never goes stale; pack ids are
// never used twice, so a chunk of a pack gc removed is only dead weight,
// which its removal drops. The cache holds at most limit bytes, dropping
// the chunks read least recently; what it holds is what the blocks'
// hashes check, as any read is (Repo.readAt drops a chunk that fails).
type chunkCache struct {
	dir   string
	limit int64

	mu      sync.Mutex
	lru     *list.List // of *chunkEntry, most recent first
	entries map[chunkKey]*list.Element
	size    int64
	// fetching holds the fetches under way, for readers of the same
	// chunk to wait for rather than fetch it again.
	fetching map[chunkKey]*chunkFetch
	// last is the chunk of each pack read last: a read that steps to the
	// next one reads on, and the chunks after it are fetched meanwhile.
	last map[uint64]int64
}

// chunkReadAhead is how many chunks after a sequential reader's are
// fetched while it reads: a store answers each after its latency, which
// a reader that waits for one at a time would pay for every chunk. Six
// (24 MiB) read a 512 MiB file cold at 1.4 times the speed of two, from
// a MinIO on the same machine (docs/benchmarks.md). maxAhead bounds the
// chunks fetched ahead at once for all readers, and so their memory.
const (
	chunkReadAhead = 6
	maxAhead       = 16
	maxReaders     = 4096 // packs whose chunk read last is remembered
)

// cacheChunkSize is the size of a cached chunk: a ranged request of this much
// costs little more than one of a block, against a store's latency.
const cacheChunkSize int64 = 4 << 20

type chunkKey struct {
	pack  uint64
	index int64
}

type chunkEntry struct {
	key  chunkKey
	size int64
}

type chunkFetch struct {
	done chan struct{}
	data []byte
	err  error
}

// chunkFiles is where a replica keeps its chunk cache.
const chunkFiles = "chunks"

// openChunkCache opens the cache in dir, bounded by limit bytes, taking
// in the chunks already there (oldest first by their time) and deleting
// what a write cut short left.
func openChunkCache(dir string, limit int64) (*chunkCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chunk cache %s: %w", dir, err)
	}
	c := &chunkCache{dir: dir, limit: limit, lru: list.New(), entries: map[chunkKey]*list.Element{},
		fetching: map[chunkKey]*chunkFetch{}, last: map[uint64]int64{}}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("chunk cache %s: %w", dir, err)
	}
	type found struct {
		e   chunkEntry
		mod int64
	}
	var all []found
	for _, de := range des {
		key, ok := parseChunkName(de.Name())
		info, err := de.Info()
		if !ok || err != nil || !info.Mode().IsRegular() {
			os.Remove(filepath.Join(dir, de.Name()))
			continue
		}
		all = append(all, found{chunkEntry{key, info.Size()}, info.ModTime().UnixNano()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod > all[j].mod })
	for _, f := range all {
		e := f.e
		c.entries[e.key] = c.lru.PushBack(&e)
		c.size += e.size
	}
	c.mu.Lock()
	c.evict()
	c.mu.Unlock()
	return c, nil
}

func (c *chunkCache) name(k chunkKey) string {
	return filepath.Join(c.dir, fmt.Sprintf("%016x-%d", k.pack, k.index))
}

func parseChunkName(name string) (chunkKey, bool) {
	p, i, ok := strings.Cut(name, "-")
	if !ok || len(p) != 16 {
		return chunkKey{}, false
	}
	pack, err1 := strconv.ParseUint(p, 16, 64)
	index, err2 := strconv.ParseInt(i, 10, 64)
	return chunkKey{pack, index}, err1 == nil && err2 == nil && index >= 0
}

// readAt fills p from pack id at off through the cache; fetch reads a
// chunk's range [off, off+len(b)) of the pack from the store, and size
// gives the pack's size, which bounds its last chunk.
func (c *chunkCache) readAt(ctx context.Context, id uint64, p []byte, off int64,
	size func(context.Context) (int64, error), fetch func(ctx context.Context, b []byte, off int64) error) error {
	for len(p) > 0 {
		k := chunkKey{id, off / cacheChunkSize}
		in := off - k.index*cacheChunkSize
		c.readAhead(ctx, k, size, fetch)
		n, err := c.readCached(k, p, in)
		if errors.Is(err, fs.ErrNotExist) {
			var data []byte
			if data, err = c.fetch(ctx, k, size, fetch); err == nil {
				if in >= int64(len(data)) {
					return fmt.Errorf("pack %016x: offset %d past its end: %w", id, off, ErrCorrupt)
				}
				n = copy(p, data[in:])
			}
		}
		if err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// readAhead starts the fetches of the chunkReadAhead chunks after k when
// a reader stepped from the chunk before it to k: a sequential read. A
// fetch past the pack's end fails, and no one waits for it.
func (c *chunkCache) readAhead(ctx context.Context, k chunkKey, size func(context.Context) (int64, error),
	fetch func(ctx context.Context, b []byte, off int64) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, seen := c.last[k.pack]
	if !seen && len(c.last) >= maxReaders {
		// Where readers of long-gone packs stood: forgotten together
		// rather than kept for the daemon's life.
		clear(c.last)
	}
	c.last[k.pack] = k.index
	if !seen || prev != k.index-1 {
		return
	}
	// Never more ahead than the cache holds beside the chunk being read
	// and the one before it (read more recently than any fetched ahead),
	// or the read-ahead would evict what it fetched before it is read.
	ahead := min(chunkReadAhead, c.limit/cacheChunkSize-2)
	for i := int64(1); i <= ahead && len(c.fetching) < maxAhead; i++ {
		next := chunkKey{k.pack, k.index + i}
		if _, ok := c.entries[next]; ok {
			continue
		}
		if _, ok := c.fetching[next]; ok {
			continue
		}
		f := &chunkFetch{done: make(chan struct{})}
		c.fetching[next] = f
		go c.run(context.WithoutCancel(ctx), next, f, size, fetch)
	}
}

// readCached reads what chunk k holds from in into p: fs.ErrNotExist
// when it is not cached.
func (c *chunkCache) readCached(k chunkKey, p []byte, in int64) (int, error) {
	c.mu.Lock()
	el, ok := c.entries[k]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		return 0, fs.ErrNotExist
	}
	f, err := os.Open(c.name(k))
	if err != nil {
		c.forget(k)
		return 0, fs.ErrNotExist
	}
	defer f.Close()
	n, err := f.ReadAt(p, in)
	if n == 0 || (err != nil && n < len(p) && in+int64(n) < el.Value.(*chunkEntry).size) {
		// Cut or unreadable: fetched again.
		c.forget(k)
		return 0, fs.ErrNotExist
	}
	return n, nil
}

// fetch reads chunk k from the store once, however many readers want it
// at the same time, keeps it, and returns its bytes. The fetch is the
// chunk's, not its first reader's: it runs on without that reader's
// cancellation (a read-ahead dropped, a file closed), bounded by the
// store's own bounds, and each reader waits for it as long as its own
// ctx lasts.
func (c *chunkCache) fetch(ctx context.Context, k chunkKey, size func(context.Context) (int64, error),
	fetch func(ctx context.Context, b []byte, off int64) error) ([]byte, error) {
	c.mu.Lock()
	f, ok := c.fetching[k]
	if !ok {
		f = &chunkFetch{done: make(chan struct{})}
		c.fetching[k] = f
		go c.run(context.WithoutCancel(ctx), k, f, size, fetch)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.data, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run is fetch's work for chunk k, whose end it tells through f.
func (c *chunkCache) run(ctx context.Context, k chunkKey, f *chunkFetch, size func(context.Context) (int64, error),
	fetch func(ctx context.Context, b []byte, off int64) error) {
	defer func() {
		c.mu.Lock()
		delete(c.fetching, k)
		c.mu.Unlock()
		close(f.done)
	}()
	total, err := size(ctx)
	if err != nil {
		f.err = err
		return
	}
	start := k.index * cacheChunkSize
	if start >= total {
		f.err = fmt.Errorf("pack %016x: chunk %d past its end (%d bytes): %w", k.pack, k.index, total, ErrCorrupt)
		return
	}
	data := make([]byte, min(cacheChunkSize, total-start))
	if f.err = fetch(ctx, data, start); f.err != nil {
		return
	}
	f.data = data
	c.keep(k, data)
}

// keep writes a fetched chunk to its file, under a temporary name renamed
// into place, and counts it; a chunk that cannot be written is only not
// cached.
func (c *chunkCache) keep(k chunkKey, data []byte) {
	if c.limit < int64(len(data)) {
		return
	}
	tmp, err := os.CreateTemp(c.dir, "tmp-")
	if err != nil {
		return
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.name(k))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.size -= el.Value.(*chunkEntry).size
		c.lru.Remove(el)
	}
	c.entries[k] = c.lru.PushFront(&chunkEntry{k, int64(len(data))})
	c.size += int64(len(data))
	c.evict()
}

// evict drops the chunks read least recently until the cache is within
// its limit. Called with mu held.
func (c *chunkCache) evict() {
	for c.size > c.limit && c.lru.Len() > 0 {
		e := c.lru.Remove(c.lru.Back()).(*chunkEntry)
		delete(c.entries, e.key)
		c.size -= e.size
		os.Remove(c.name(e.key))
	}
}

// forget drops chunk k.
func (c *chunkCache) forget(k chunkKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.size -= el.Value.(*chunkEntry).size
		c.lru.Remove(el)
		delete(c.entries, k)
	}
	os.Remove(c.name(k))
}

// forgetRange drops the chunks of pack id that [off, off+n) lies in: a
// read of them failed its hash.
func (c *chunkCache) forgetRange(id uint64, off int64, n int) {
	for i := off / cacheChunkSize; i <= (off+int64(n)-1)/cacheChunkSize; i++ {
		c.forget(chunkKey{id, i})
	}
}

// forgetPack drops every chunk of pack id: it was removed.
func (c *chunkCache) forgetPack(id uint64) {
	c.mu.Lock()
	delete(c.last, id)
	var keys []chunkKey
	for k := range c.entries {
		if k.pack == id {
			keys = append(keys, k)
		}
	}
	c.mu.Unlock()
	for _, k := range keys {
		c.forget(k)
	}
}
