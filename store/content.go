package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
)

// A long file's block list is kept in chunks, so that a disk of a
// terabyte (16 million blocks of 64 KiB) costs one small blob per changed
// chunk when a few of its blocks change, not a new list of half a
// gigabyte, and so that a chunk of nothing but holes costs nothing:
//
//	up to 16 blocks         the hashes in the entry itself
//	up to ChunkBlocks       a content blob, version 1: the hashes
//	more                    a content blob, version 2: the hashes of one
//	                        version 1 blob per ChunkBlocks blocks, HoleHash
//	                        for a chunk all holes (no blob)
//
// Version 2: version:1 (=2) uvarint(blocks) uvarint(chunk blocks)
// uvarint(chunks) hash:32 * chunks.

// ChunkBlocks is how many block hashes one chunk of a long list holds:
// 128 KiB of hashes, 256 MiB of a file at 64 KiB blocks.
const ChunkBlocks = 4096

const chunkedBlobVersion = 2

// Chunks is a decoded version 2 content blob.
type Chunks struct {
	// Blocks is the length of the whole list, Per the blocks a chunk
	// holds (the last may hold fewer).
	Blocks, Per int
	Hashes      []Hash
}

// EncodeChunks serialises a chunked list.
func EncodeChunks(c Chunks) []byte {
	b := []byte{chunkedBlobVersion}
	for _, v := range []int{c.Blocks, c.Per, len(c.Hashes)} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	for _, h := range c.Hashes {
		b = append(b, h[:]...)
	}
	return b
}

// DecodeChunks parses a version 2 content blob. A malformed blob is
// ErrCorrupt.
func DecodeChunks(blob []byte) (Chunks, error) {
	d := &decoder{b: blob}
	var c Chunks
	if v := d.byte(); v != chunkedBlobVersion && d.err == nil {
		return c, fmt.Errorf("chunked content blob version %d: %w", v, ErrCorrupt)
	}
	blocks, per := d.uvarint(), d.uvarint()
	n := d.count(HashSize)
	if d.err == nil && (per == 0 || per > 1<<20 || blocks == 0 || uint64(n) != (blocks+per-1)/per) {
		d.err = fmt.Errorf("chunked content blob of %d blocks in %d chunks of %d: %w", blocks, n, per, ErrCorrupt)
	}
	if d.err != nil {
		return c, d.err
	}
	c.Blocks, c.Per, c.Hashes = int(blocks), int(per), make([]Hash, n)
	for i := range c.Hashes {
		c.Hashes[i] = d.hash()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("chunked content blob has %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	return c, d.err
}

// ChunkLen is how many blocks chunk i holds.
func (c *Chunks) ChunkLen(i int) int { return min(c.Per, c.Blocks-i*c.Per) }

// IsChunked reports whether a content blob is a version 2 (chunked) one.
func IsChunked(blob []byte) bool { return len(blob) > 0 && blob[0] == chunkedBlobVersion }

// SetBlocks gives a regular file entry its block list: in the entry when
// short, else in content blobs that put stores (chunked when long; a chunk
// of holes is stored as nothing).
func (e *Entry) SetBlocks(blocks []Hash, put func(blob []byte) (Hash, error)) error {
	e.Blocks, e.Content, e.HasContent = nil, Hash{}, false
	switch {
	case len(blocks) <= maxInlineBlocks:
		e.Blocks = blocks
		return nil
	case len(blocks) <= ChunkBlocks:
		h, err := put(EncodeContent(blocks))
		e.Content, e.HasContent = h, err == nil
		return err
	}
	c := Chunks{Blocks: len(blocks), Per: ChunkBlocks}
	for start := 0; start < len(blocks); start += ChunkBlocks {
		chunk := blocks[start:min(start+ChunkBlocks, len(blocks))]
		h := HoleHash
		if !allHoles(chunk) {
			var err error
			if h, err = put(EncodeContent(chunk)); err != nil {
				return err
			}
		}
		c.Hashes = append(c.Hashes, h)
	}
	h, err := put(EncodeChunks(c))
	e.Content, e.HasContent = h, err == nil
	return err
}

func allHoles(blocks []Hash) bool {
	for _, h := range blocks {
		if !h.IsHole() {
			return false
		}
	}
	return true
}

// BlockList is a regular file's block list, read from its blobs a chunk
// at a time: a reader of a terabyte disk holds the hashes it reads near,
// not all of them. It is safe for concurrent use.
type BlockList struct {
	rd     Reader
	e      *Entry
	n      int
	flat   []Hash  // inline, or a version 1 blob
	chunks *Chunks // a version 2 blob

	mu     sync.Mutex
	cached map[int][]Hash // a few decoded chunks
	order  []int
}

// cachedChunks is how many decoded chunks a BlockList keeps.
const cachedChunks = 4

// OpenBlocks reads a file's block list: its top blob, not its chunks.
func OpenBlocks(ctx context.Context, rd Reader, e *Entry) (*BlockList, error) {
	l := &BlockList{rd: rd, e: e, n: e.NumBlocks(), cached: map[int][]Hash{}}
	if !e.HasContent {
		if len(e.Blocks) != l.n {
			return nil, fmt.Errorf("entry %q: %d blocks for size %d: %w", e.Name, len(e.Blocks), e.Size, ErrCorrupt)
		}
		l.flat = e.Blocks
		return l, nil
	}
	blob, err := rd.Blob(ctx, e.Content)
	if err != nil {
		return nil, err
	}
	if IsChunked(blob) {
		c, err := DecodeChunks(blob)
		if err != nil {
			return nil, fmt.Errorf("content %s: %w", e.Content.Short(), err)
		}
		if c.Blocks != l.n {
			return nil, fmt.Errorf("content %s: %d blocks for size %d: %w", e.Content.Short(), c.Blocks, e.Size, ErrCorrupt)
		}
		l.chunks = &c
		return l, nil
	}
	if l.flat, err = DecodeContent(blob); err != nil {
		return nil, fmt.Errorf("content %s: %w", e.Content.Short(), err)
	}
	if len(l.flat) != l.n {
		return nil, fmt.Errorf("content %s: %d blocks for size %d: %w", e.Content.Short(), len(l.flat), e.Size, ErrCorrupt)
	}
	return l, nil
}

// Len is the number of blocks.
func (l *BlockList) Len() int { return l.n }

// Chunked reports whether the list is kept in chunks, and their hashes.
func (l *BlockList) Chunked() (*Chunks, bool) { return l.chunks, l.chunks != nil }

// At is the hash of block i.
func (l *BlockList) At(ctx context.Context, i int) (Hash, error) {
	if i < 0 || i >= l.n {
		return Hash{}, fmt.Errorf("block %d of %d: %w", i, l.n, ErrInvalid)
	}
	if l.chunks == nil {
		return l.flat[i], nil
	}
	c, err := l.chunk(ctx, i/l.chunks.Per)
	if err != nil {
		return Hash{}, err
	}
	return c[i%l.chunks.Per], nil
}

// chunk returns the hashes of chunk c, decoded once while kept.
func (l *BlockList) chunk(ctx context.Context, c int) ([]Hash, error) {
	l.mu.Lock()
	if hs, ok := l.cached[c]; ok {
		l.mu.Unlock()
		return hs, nil
	}
	l.mu.Unlock()
	hs, err := l.Chunk(ctx, c)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.cached[c]; !ok {
		l.cached[c] = hs
		l.order = append(l.order, c)
		if len(l.order) > cachedChunks {
			delete(l.cached, l.order[0])
			l.order = l.order[1:]
		}
	}
	return hs, nil
}

// Chunk reads and checks chunk c of a chunked list (see Chunked): its
// block hashes.
func (l *BlockList) Chunk(ctx context.Context, c int) ([]Hash, error) {
	n := l.chunks.ChunkLen(c)
	h := l.chunks.Hashes[c]
	if h.IsHole() {
		return make([]Hash, n), nil
	}
	blob, err := l.rd.Blob(ctx, h)
	if err != nil {
		return nil, err
	}
	hs, err := DecodeContent(blob)
	if err == nil && len(hs) != n {
		err = fmt.Errorf("%d blocks, want %d: %w", len(hs), n, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("content chunk %s: %w", h.Short(), err)
	}
	return hs, nil
}

// Each calls fn for every block in order, reading a chunk at a time.
func (l *BlockList) Each(ctx context.Context, fn func(i int, h Hash) error) error {
	if l.chunks == nil {
		for i, h := range l.flat {
			if err := fn(i, h); err != nil {
				return err
			}
		}
		return nil
	}
	for c := range l.chunks.Hashes {
		if err := ctx.Err(); err != nil {
			return err
		}
		hs, err := l.Chunk(ctx, c)
		if err != nil {
			return err
		}
		for j, h := range hs {
			if err := fn(c*l.chunks.Per+j, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// ContentBlobs are the blobs that hold a file's list: its content blob
// and, when chunked, every chunk that is not all holes.
func ContentBlobs(ctx context.Context, rd Reader, e *Entry) ([]Hash, error) {
	if !e.HasContent {
		return nil, nil
	}
	l, err := OpenBlocks(ctx, rd, e)
	if err != nil {
		return nil, err
	}
	out := []Hash{e.Content}
	if c, ok := l.Chunked(); ok {
		for _, h := range c.Hashes {
			if !h.IsHole() {
				out = append(out, h)
			}
		}
	}
	return out, nil
}
