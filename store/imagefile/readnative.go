package imagefile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"

	"github.com/chainfs/chainfs/store"
	"github.com/zeebo/blake3"
)

// sink is where an import stores what it reads: an image writer.
type sink interface {
	PutBlock(ctx context.Context, h store.Hash, data []byte) error
	PutTree(ctx context.Context, blob []byte) (store.Hash, error)
	// Sum names bytes as the sink does.
	Sum(b []byte) store.Hash
}

// Limits on what an image may add up to, counting a directory as often as
// it appears: a small stream can name one tree a billion times.
const (
	maxEntries      = 1 << 32
	maxLogicalBytes = 1 << 60
)

// readResult is what reading an image stream gives: the top directory
// and the statistics of the tree below it.
type readResult struct {
	header     *Header
	root       store.Entry
	stats      store.SnapshotStats
	blocks     uint64 // blocks read from the stream
	blockBytes uint64
	linked     uint64 // blocks of a thin stream found in the repository
}

// blobKey is a blob and the role it was named in.
type blobKey struct {
	typ  byte
	hash store.Hash
}

// fileShape is what decides the lengths of a content blob's blocks.
type fileShape struct {
	size      uint64
	blockSize uint32
}

// treeStats are one tree's own entries and its subdirectories.
type treeStats struct {
	own      store.SnapshotStats
	children []store.Hash
}

// nativeReader checks a native stream frame by frame. Blobs must come
// after the blob that names them, so each is decoded and checked as it
// arrives and nothing unnamed is ever stored.
type nativeReader struct {
	fr   *frameReader
	dst  sink
	has  func(store.Hash) bool // for thin streams: the repository's blocks
	prog *Progress
	// index, when set, takes each block's place in the stream instead of
	// its data, which is skipped unread: a catalog file is indexed so.
	index func(h store.Hash, off int64, length int)
	skip  func(fr *frameReader, n int) error

	res      readResult
	pending  map[blobKey]bool // named, not yet received
	received map[blobKey]bool
	// shapes are the file shape each content blob was named with: every
	// file naming it must have the same.
	shapes   map[store.Hash]fileShape
	trees    map[store.Hash]*treeStats
	expect   map[store.Hash]uint32 // blocks named and not yet received → length
	gotBlock map[store.Hash]bool
	inBlocks bool // the first block frame ends the trees
}

// readNative reads a native stream into dst. has, when set, accepts a thin
// stream whose missing blocks it reports present.
func readNative(ctx context.Context, r *bufio.Reader, dst sink, has func(store.Hash) bool, prog *Progress) (*readResult, error) {
	nr := newNativeReader(r, dst)
	nr.has, nr.prog = has, prog
	if err := nr.run(ctx); err != nil {
		return nil, err
	}
	return &nr.res, nil
}

func newNativeReader(r *bufio.Reader, dst sink) *nativeReader {
	return &nativeReader{fr: &frameReader{r: r, digest: blake3.New()}, dst: dst,
		pending: map[blobKey]bool{}, received: map[blobKey]bool{}, shapes: map[store.Hash]fileShape{}, trees: map[store.Hash]*treeStats{},
		expect: map[store.Hash]uint32{}, gotBlock: map[store.Hash]bool{}}
}

func (nr *nativeReader) run(ctx context.Context) error {
	fr := nr.fr
	if err := fr.start(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		typ, length, err := fr.next()
		if err != nil {
			return err
		}
		switch {
		case i == 0 && typ != frameHeader:
			return fr.malformed("no header")
		case i == 1 && typ != frameRoot:
			return fr.malformed("no root after the header")
		case i > 1 && (typ == frameHeader || typ == frameRoot):
			return fr.malformed("a second %q frame", typ)
		}
		switch typ {
		case frameHeader:
			p, err := fr.payload(length)
			if err != nil {
				return err
			}
			if nr.res.header, err = decodeHeader(p); err != nil {
				return fr.malformed("header: %v", err)
			}
			if nr.res.header.Thin && nr.has == nil {
				return fr.malformed("a thin stream, which only image copy reads: it leaves out blocks the receiving repository holds")
			}
		case frameRoot:
			p, err := fr.payload(length)
			if err != nil {
				return err
			}
			if nr.res.root, err = decodeRoot(p); err != nil {
				return fr.malformed("root: %v", err)
			}
			nr.name(frameTree, nr.res.root.Subtree)
		case frameTree, frameContent:
			if nr.inBlocks {
				return fr.malformed("a tree after the blocks")
			}
			p, err := fr.payload(length)
			if err != nil {
				return err
			}
			if err := nr.blob(ctx, typ, p); err != nil {
				return err
			}
		case frameBlock:
			if err := nr.block(ctx, length); err != nil {
				return err
			}
		case frameEnd:
			return nr.end(length)
		}
	}
}

// blob checks and stores a tree or content blob.
func (nr *nativeReader) blob(ctx context.Context, typ byte, p []byte) error {
	h := store.Sum(p)
	key := blobKey{typ, h}
	if !nr.pending[key] {
		if nr.received[key] {
			return nr.fr.malformed("blob %s sent twice", h.Short())
		}
		return nr.fr.malformed("blob %s is not named by any blob before it", h.Short())
	}
	delete(nr.pending, key)
	nr.received[key] = true
	if typ == frameContent && store.IsChunked(p) {
		if err := nr.chunks(h, p); err != nil {
			return err
		}
	} else if typ == frameContent {
		list, err := store.DecodeContent(p)
		if err != nil {
			return nr.fr.malformed("content %s: %v", h.Short(), err)
		}
		s := nr.shapes[h]
		e := store.Entry{Size: s.size, BlockSize: s.blockSize}
		if len(list) != e.NumBlocks() {
			return nr.fr.malformed("content %s: %d blocks for a file of %d bytes", h.Short(), len(list), s.size)
		}
		for i, bh := range list {
			if err := nr.expectBlock(bh, e.BlockLen(i)); err != nil {
				return err
			}
		}
	} else {
		entries, err := store.DecodeTree(p)
		if err != nil {
			return nr.fr.malformed("tree %s: %v", h.Short(), err)
		}
		ts := &treeStats{}
		nr.trees[h] = ts
		for i := range entries {
			if err := nr.entry(&entries[i], ts); err != nil {
				return err
			}
		}
	}
	if _, err := nr.dst.PutTree(ctx, p); err != nil {
		return err
	}
	return nil
}

// chunks checks a chunked content blob against the file that names it and
// names its chunks, each with the shape of the part of the file it covers.
func (nr *nativeReader) chunks(h store.Hash, p []byte) error {
	c, err := store.DecodeChunks(p)
	if err != nil {
		return nr.fr.malformed("content %s: %v", h.Short(), err)
	}
	s := nr.shapes[h]
	if e := (store.Entry{Size: s.size, BlockSize: s.blockSize}); c.Blocks != e.NumBlocks() {
		return nr.fr.malformed("content %s: %d blocks for a file of %d bytes", h.Short(), c.Blocks, s.size)
	}
	for i, ch := range c.Hashes {
		if ch.IsHole() {
			continue
		}
		start := uint64(i) * uint64(c.Per) * uint64(s.blockSize)
		shape := fileShape{min(uint64(c.ChunkLen(i))*uint64(s.blockSize), s.size-start), s.blockSize}
		if old, ok := nr.shapes[ch]; ok && old != shape {
			return nr.fr.malformed("content chunk %s named for parts of different sizes", ch.Short())
		}
		nr.shapes[ch] = shape
		nr.name(frameContent, ch)
	}
	return nil
}

// name records that the stream must carry blob h in role typ, unless it
// did already.
func (nr *nativeReader) name(typ byte, h store.Hash) {
	if key := (blobKey{typ, h}); !nr.received[key] {
		nr.pending[key] = true
	}
}

// entry records what one tree entry names and counts it.
func (nr *nativeReader) entry(e *store.Entry, ts *treeStats) error {
	s := &ts.own
	switch e.Type {
	case store.TypeDir:
		s.Dirs++
		ts.children = append(ts.children, e.Subtree)
		nr.name(frameTree, e.Subtree)
	case store.TypeRegular:
		s.Files++
		s.LogicalBytes += e.Size
		if (e.Size > 0 && e.BlockSize < store.MinBlockSize) || e.BlockSize > store.MaxBlockSize || e.BlockSize&(e.BlockSize-1) != 0 {
			return nr.fr.malformed("%q: block size %d", e.Name, e.BlockSize)
		}
		if e.HasContent {
			// Equal block lists mean equal data, so every file naming a
			// content blob has the same size and block size.
			shape := fileShape{e.Size, e.BlockSize}
			if old, ok := nr.shapes[e.Content]; ok && old != shape {
				return nr.fr.malformed("%q: content %s named by files of different sizes", e.Name, e.Content.Short())
			}
			nr.shapes[e.Content] = shape
			nr.name(frameContent, e.Content)
			return nil
		}
		for i, bh := range e.Blocks {
			if err := nr.expectBlock(bh, e.BlockLen(i)); err != nil {
				return err
			}
		}
	case store.TypeSymlink:
		s.Symlinks++
	default:
		s.Others++
	}
	return nil
}

// expectBlock records that the stream must carry block h of length n.
func (nr *nativeReader) expectBlock(h store.Hash, n uint32) error {
	if h.IsHole() {
		return nil
	}
	if want, ok := nr.expect[h]; ok && want != n {
		return nr.fr.malformed("block %s named with lengths %d and %d", h.Short(), want, n)
	}
	if !nr.gotBlock[h] {
		nr.expect[h] = n
	}
	return nil
}

// endTrees checks, at the first block, that every blob named arrived,
// and adds the tree up.
func (nr *nativeReader) endTrees() error {
	nr.inBlocks = true
	for key := range nr.pending {
		return nr.fr.malformed("the image names blob %s but does not carry it", key.hash.Short())
	}
	var total func(h store.Hash, depth int) (store.SnapshotStats, error)
	memo := map[store.Hash]store.SnapshotStats{}
	total = func(h store.Hash, depth int) (store.SnapshotStats, error) {
		if s, ok := memo[h]; ok {
			return s, nil
		}
		if depth > maxDepth {
			return store.SnapshotStats{}, nr.fr.malformed("directories nest deeper than %d", maxDepth)
		}
		ts := nr.trees[h]
		s := ts.own
		for _, c := range ts.children {
			cs, err := total(c, depth+1)
			if err != nil {
				return s, err
			}
			s.Files = addCapped(s.Files, cs.Files, maxEntries)
			s.Dirs = addCapped(s.Dirs, cs.Dirs, maxEntries)
			s.Symlinks = addCapped(s.Symlinks, cs.Symlinks, maxEntries)
			s.Others = addCapped(s.Others, cs.Others, maxEntries)
			s.LogicalBytes = addCapped(s.LogicalBytes, cs.LogicalBytes, maxLogicalBytes)
		}
		if s.Files+s.Dirs+s.Symlinks+s.Others > maxEntries || s.LogicalBytes > maxLogicalBytes {
			return s, nr.fr.malformed("the tree adds up to more than %d entries or %d bytes", uint64(maxEntries), uint64(maxLogicalBytes))
		}
		memo[h] = s
		return s, nil
	}
	s, err := total(nr.res.root.Subtree, 1)
	if err != nil {
		return err
	}
	s.Dirs++ // the top directory
	nr.res.stats = s
	var sum uint64
	for _, n := range nr.expect {
		sum += uint64(n)
	}
	nr.prog.total(sum)
	return nil
}

func addCapped(a, b, limit uint64) uint64 {
	if a > limit || b > limit || a+b > limit {
		return limit + 1
	}
	return a + b
}

// block reads, checks and stores one block.
func (nr *nativeReader) block(ctx context.Context, length int) error {
	if !nr.inBlocks {
		if err := nr.endTrees(); err != nil {
			return err
		}
	}
	if length < store.HashSize {
		return nr.fr.malformed("block frame of %d bytes", length)
	}
	var h store.Hash
	if err := nr.fr.read(h[:], true); err != nil {
		return err
	}
	want, ok := nr.expect[h]
	switch {
	case !ok && nr.gotBlock[h]:
		return nr.fr.malformed("block %s sent twice", h.Short())
	case !ok:
		return nr.fr.malformed("block %s is not named by the image", h.Short())
	case int(want) != length-store.HashSize:
		return nr.fr.malformed("block %s: %d bytes, the image names %d", h.Short(), length-store.HashSize, want)
	}
	if nr.index != nil {
		nr.index(h, nr.fr.off, int(want))
		if err := nr.skip(nr.fr, int(want)); err != nil {
			return err
		}
	} else {
		data := make([]byte, want)
		if err := nr.fr.read(data, false); err != nil {
			return err
		}
		if store.Sum(data) != h {
			return nr.fr.malformed("block %s: hash mismatch", h.Short())
		}
		if err := nr.dst.PutBlock(ctx, h, data); err != nil {
			return err
		}
	}
	delete(nr.expect, h)
	nr.gotBlock[h] = true
	nr.res.blocks++
	nr.res.blockBytes += uint64(want)
	nr.prog.add(int(want))
	return nil
}

// end checks the end frame, that nothing follows it, and that every
// block named arrived (or, in a thin stream, is in the repository).
func (nr *nativeReader) end(length int) error {
	if !nr.inBlocks {
		if err := nr.endTrees(); err != nil {
			return err
		}
	}
	p := make([]byte, length)
	if err := nr.fr.read(p, false); err != nil {
		return err
	}
	if length < store.HashSize {
		return nr.fr.malformed("end frame of %d bytes", length)
	}
	counts, digest := p[:length-store.HashSize], p[length-store.HashSize:]
	nr.fr.digest.Write(counts)
	if !bytes.Equal(nr.fr.digest.Sum(nil), digest) {
		return nr.fr.malformed("digest mismatch: the stream was altered")
	}
	var got [3]uint64
	for i := range got {
		v, n := binary.Uvarint(counts)
		if n <= 0 {
			return nr.fr.malformed("end frame counts")
		}
		got[i], counts = v, counts[n:]
	}
	if len(counts) != 0 {
		return nr.fr.malformed("end frame counts")
	}
	trees := uint64(len(nr.received))
	if got != [3]uint64{trees, nr.res.blocks, nr.res.blockBytes} {
		return nr.fr.malformed("end frame counts %d trees, %d blocks, %d bytes; the stream held %d, %d, %d",
			got[0], got[1], got[2], trees, nr.res.blocks, nr.res.blockBytes)
	}
	for h := range nr.expect {
		if nr.has == nil || !nr.has(h) {
			return nr.fr.malformed("the image names block %s but does not carry it", h.Short())
		}
		nr.res.linked++
	}
	if _, err := nr.fr.r.Peek(1); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return nr.fr.malformed("data after the end frame")
	}
	return nil
}
