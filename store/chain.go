package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// blockRecord says where a block's bytes lie and how many chain runs
// (intervals, across all volumes) reference it. A block with no reference
// is garbage for gc.
type blockRecord struct {
	// Codec is how the bytes are kept; Length is how many are kept.
	Codec  Codec
	Pack   uint64
	Offset uint64
	Length uint32
	Refs   uint64
}

const blockRecordLen = 1 + 8 + 8 + 4 + 8

// place is where the record says the block lies.
func (b blockRecord) place() place {
	return place{pack: b.Pack, offset: b.Offset, length: b.Length, codec: b.Codec}
}

func (b blockRecord) encode() []byte {
	v := make([]byte, blockRecordLen)
	v[0] = byte(b.Codec) // the flags byte
	binary.BigEndian.PutUint64(v[1:], b.Pack)
	binary.BigEndian.PutUint64(v[9:], b.Offset)
	binary.BigEndian.PutUint32(v[17:], b.Length)
	binary.BigEndian.PutUint64(v[21:], b.Refs)
	return v
}

func decodeBlockRecord(v []byte) (blockRecord, error) {
	if len(v) != blockRecordLen || Codec(v[0]) > CodecZstd {
		return blockRecord{}, fmt.Errorf("block record: %w", ErrCorrupt)
	}
	return blockRecord{
		Codec:  Codec(v[0]),
		Pack:   binary.BigEndian.Uint64(v[1:]),
		Offset: binary.BigEndian.Uint64(v[9:]),
		Length: binary.BigEndian.Uint32(v[17:]),
		Refs:   binary.BigEndian.Uint64(v[21:]),
	}, nil
}

// intervalRecord is one run [start, End) of consecutive snapshots of a
// volume that reference a block; End 0 means the run reaches the head.
// Count is how many times the head references the block (meaningful while
// the run is open). Upd, PrevEnd and PrevCount remember the last update so
// that an interrupted commit can be undone exactly.
type intervalRecord struct {
	End       uint64
	Count     uint64
	Upd       uint64
	PrevEnd   uint64
	PrevCount uint64
}

const intervalRecordLen = 40

func (iv intervalRecord) encode() []byte {
	v := make([]byte, intervalRecordLen)
	for i, x := range []uint64{iv.End, iv.Count, iv.Upd, iv.PrevEnd, iv.PrevCount} {
		binary.BigEndian.PutUint64(v[i*8:], x)
	}
	return v
}

func decodeIntervalRecord(v []byte) (intervalRecord, error) {
	if len(v) != intervalRecordLen {
		return intervalRecord{}, fmt.Errorf("interval record: %w", ErrCorrupt)
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(v[i*8:]) }
	return intervalRecord{End: u(0), Count: u(1), Upd: u(2), PrevEnd: u(3), PrevCount: u(4)}, nil
}

// blockDelta is how a snapshot changes the number of references to one
// block relative to its parent.
type blockDelta struct {
	Count  int64
	Length uint32
}

func (d blockDelta) encode() []byte {
	v := binary.AppendVarint(nil, d.Count)
	return binary.AppendUvarint(v, uint64(d.Length))
}

func decodeBlockDelta(v []byte) (blockDelta, error) {
	c, n := binary.Varint(v)
	if n <= 0 {
		return blockDelta{}, fmt.Errorf("delta record: %w", ErrCorrupt)
	}
	l, m := binary.Uvarint(v[n:])
	if m <= 0 || n+m != len(v) || l > MaxBlockSize {
		return blockDelta{}, fmt.Errorf("delta record: %w", ErrCorrupt)
	}
	return blockDelta{Count: c, Length: uint32(l)}, nil
}

// deltaSet accumulates block deltas in memory.
type deltaSet map[Hash]*blockDelta

func (s deltaSet) add(h Hash, n int64, length uint32) {
	d := s[h]
	if d == nil {
		d = &blockDelta{Length: length}
		s[h] = d
	}
	d.Count += n
}

// deltaSpillAt is how many blocks of a snapshot's delta are held in
// memory (about 110 bytes each) before they are added to its delta
// journal: a first snapshot of millions of files has a delta of millions
// of blocks. (A variable for the tests.)
var deltaSpillAt = 1 << 17

// deltaWriter writes a snapshot's delta to its delta journal (the delta
// records of vol and seq) while two trees are compared: the references a
// block gains and loses add up in memory, up to deltaSpillAt blocks, and
// are then added to what the journal holds. It is the only writer of
// those records: the volume's claim and work keep every other away.
type deltaWriter struct {
	r        *Repo
	w        *work
	vol, seq uint64
	mem      deltaSet
	// spilled says the journal holds part of the delta already, so that
	// a block's entry there is added to.
	spilled bool
}

func (r *Repo) newDeltaWriter(w *work, vol, seq uint64) *deltaWriter {
	return &deltaWriter{r: r, w: w, vol: vol, seq: seq, mem: deltaSet{}}
}

// add counts n more references to block h (fewer if n < 0).
func (d *deltaWriter) add(ctx context.Context, h Hash, n int64, length uint32) error {
	if h.IsHole() {
		return nil
	}
	d.mem.add(h, n, length)
	if len(d.mem) < deltaSpillAt {
		return nil
	}
	return d.spill(ctx)
}

// spill adds what memory holds to the journal, in hash order, and
// empties it. A block whose references come to no change has no entry.
// Like every write of the store, it first makes sure the file system has
// room (space.go): for the entries and for what applying them writes.
func (d *deltaWriter) spill(ctx context.Context) error {
	if err := d.r.haveSpace(2*uint64(len(d.mem))*recordBytes, "commit"); err != nil {
		return err
	}
	hs := make([]Hash, 0, len(d.mem))
	for h := range d.mem {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	b := d.r.newBatch()
	b.work = d.w
	defer b.cancel()
	had := map[Hash]bool{}
	for len(hs) > 0 {
		chunk := hs[:min(chunkSize, len(hs))]
		hs = hs[len(chunk):]
		clear(had)
		if d.spilled {
			// The batch before was flushed: what the journal holds reads.
			err := d.r.view(func(txn *badger.Txn) error {
				for _, h := range chunk {
					old, err := getDelta(txn, d.vol, d.seq, h)
					if errors.Is(err, ErrNotFound) {
						continue
					} else if err != nil {
						return err
					}
					d.mem[h].Count += old.Count
					had[h] = true
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		for _, h := range chunk {
			var err error
			switch e := d.mem[h]; {
			case e.Count != 0:
				err = b.putDelta(ctx, d.vol, d.seq, h, *e)
			case had[h]:
				err = b.del(ctx, deltaKey(d.vol, d.seq, h))
			}
			if err != nil {
				return err
			}
		}
	}
	if err := b.flush(ctx); err != nil {
		return err
	}
	d.spilled = true
	clear(d.mem)
	return nil
}

// finish adds what memory still holds to the journal.
func (d *deltaWriter) finish(ctx context.Context) error {
	if len(d.mem) == 0 {
		return nil
	}
	return d.spill(ctx)
}

// treeDelta adds to acc the block references of tree newRoot minus those
// of oldRoot (hasOld false: an empty tree). Subtrees with the same hash are
// skipped, so the cost follows the size of the change.
func (r *Repo) treeDelta(ctx context.Context, oldRoot, newRoot Hash, hasOld bool, acc *deltaWriter) error {
	if hasOld && oldRoot == newRoot {
		return nil
	}
	var oldEntries []Entry
	if hasOld {
		var err error
		if oldEntries, err = r.Tree(ctx, oldRoot); err != nil {
			return err
		}
	}
	newEntries, err := r.Tree(ctx, newRoot)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(oldEntries) || j < len(newEntries) {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case j == len(newEntries) || (i < len(oldEntries) && oldEntries[i].Name < newEntries[j].Name):
			err = r.entryRefs(ctx, &oldEntries[i], -1, acc)
			i++
		case i == len(oldEntries) || newEntries[j].Name < oldEntries[i].Name:
			err = r.entryRefs(ctx, &newEntries[j], +1, acc)
			j++
		default:
			o, n := &oldEntries[i], &newEntries[j]
			switch {
			case o.Type == TypeDir && n.Type == TypeDir:
				err = r.treeDelta(ctx, o.Subtree, n.Subtree, true, acc)
			case o.SameContent(n):
			case o.Type == TypeRegular && n.Type == TypeRegular:
				err = r.contentDelta(ctx, o, n, acc)
			default:
				if err = r.entryRefs(ctx, o, -1, acc); err == nil {
					err = r.entryRefs(ctx, n, +1, acc)
				}
			}
			i++
			j++
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// entryRefs adds sign × every block reference of an entry (a whole subtree
// for a directory).
func (r *Repo) entryRefs(ctx context.Context, e *Entry, sign int64, acc *deltaWriter) error {
	switch e.Type {
	case TypeDir:
		entries, err := r.Tree(ctx, e.Subtree)
		if err != nil {
			return err
		}
		for i := range entries {
			if err := r.entryRefs(ctx, &entries[i], sign, acc); err != nil {
				return err
			}
		}
	case TypeRegular:
		l, err := OpenBlocks(ctx, r, e)
		if err != nil {
			return err
		}
		return l.Each(ctx, func(i int, h Hash) error {
			return acc.add(ctx, h, sign, e.BlockLen(i))
		})
	}
	return nil
}

// contentDelta adds the block references of file n minus those of file o.
// Two chunked lists are compared chunk by chunk: a chunk equal in both is
// skipped unread, so a disk with a few changed blocks costs a few chunks.
func (r *Repo) contentDelta(ctx context.Context, o, n *Entry, acc *deltaWriter) error {
	lo, err := OpenBlocks(ctx, r, o)
	if err != nil {
		return err
	}
	ln, err := OpenBlocks(ctx, r, n)
	if err != nil {
		return err
	}
	co, okO := lo.Chunked()
	cn, okN := ln.Chunked()
	if !okO || !okN || co.Per != cn.Per || o.BlockSize != n.BlockSize {
		if err := r.entryRefs(ctx, o, -1, acc); err != nil {
			return err
		}
		return r.entryRefs(ctx, n, +1, acc)
	}
	for c := 0; c < max(len(co.Hashes), len(cn.Hashes)); c++ {
		if c < len(co.Hashes) && c < len(cn.Hashes) && co.Hashes[c] == cn.Hashes[c] && co.ChunkLen(c) == cn.ChunkLen(c) {
			continue // the same hashes, so the same data and lengths
		}
		for _, side := range []struct {
			l    *BlockList
			c    *Chunks
			e    *Entry
			sign int64
		}{{lo, co, o, -1}, {ln, cn, n, +1}} {
			if c >= len(side.c.Hashes) {
				continue
			}
			hs, err := side.l.Chunk(ctx, c)
			if err != nil {
				return err
			}
			for j, h := range hs {
				if err := acc.add(ctx, h, side.sign, side.e.BlockLen(c*side.c.Per+j)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// SameContent reports whether two regular files hold the same data, by
// their block lists alone (no block is read).
func (e *Entry) SameContent(o *Entry) bool {
	if e.Type != TypeRegular || o.Type != TypeRegular || e.Size != o.Size || e.BlockSize != o.BlockSize || e.HasContent != o.HasContent {
		return false
	}
	if e.HasContent {
		return e.Content == o.Content
	}
	for i := range e.Blocks {
		if e.Blocks[i] != o.Blocks[i] {
			return false
		}
	}
	return true
}

// chunkSize is how many blocks one chain-update transaction touches; it
// keeps transactions well inside badger's limits.
const chunkSize = 2000

// applyPlanned runs plan over hs in chunks: plan reads in a read-only
// transaction and returns the writes, which then go in one write
// transaction. Reading and writing in separate transactions keeps badger
// from re-sorting a transaction's pending writes at every seek; it is safe
// because commitMu and the volume's claim make the caller the only writer
// of these keys in this process, and each hash appears once. In a
// repository in an object store, another host may commit between the read
// and the write (to the same blocks' references): the commit refuses a
// plan read before that (foreignMark), and the chunk is planned again on
// what came in (unless w, the volume's work the writes are part of, was
// taken over: then the refusal is fence's). plan tallies into the chunk's own planTally, which counts
// once the chunk is written, so a chunk planned twice counts once.
func (r *Repo) applyPlanned(ctx context.Context, w *work, hs []Hash, plan func(txn *badger.Txn, h Hash, t *planTally) ([]kv, error)) (planTally, error) {
	var total planTally
	for start := 0; start < len(hs); {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		chunk := hs[start:min(start+chunkSize, len(hs))]
		var writes []kv
		var t planTally
		mark := r.foreignMark()
		err := r.view(func(txn *badger.Txn) error {
			// Planned again after another writer's commit, which may
			// have been a takeover of w: its records are not w's to plan.
			if err := (metaTxn{txn: txn}).fence(w); err != nil {
				return err
			}
			for _, h := range chunk {
				ws, err := plan(txn, h, &t)
				if err != nil {
					return fmt.Errorf("block %s: %w", h.Short(), err)
				}
				writes = append(writes, ws...)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		err = r.applyWrites(ctx, mark, w, writes)
		if errors.Is(err, ErrChanged) && r.foreignMark() != mark {
			continue // planned again on what the other writer committed
		}
		if err != nil {
			return total, err
		}
		total.bytes += t.bytes
		total.blocks += t.blocks
		start += len(chunk)
	}
	return total, nil
}

// planTally is what a plan counts as it goes (applyPlanned).
type planTally struct{ bytes, blocks uint64 }

// dropRef plans the loss of one of a block's references.
func dropRef(txn *badger.Txn, h Hash) (kv, error) {
	rec, err := getBlockRecord(txn, h)
	if err != nil {
		return kv{}, err
	}
	if rec.Refs == 0 {
		return kv{}, fmt.Errorf("block reference count below zero: %w", ErrCorrupt)
	}
	rec.Refs--
	return kv{blockKey(h), rec.encode()}, nil
}

// applyDelta updates the volume's intervals and the block reference counts
// for snapshot seq from its delta journal, a chunk at a time. It returns
// the bytes and blocks the snapshot holds itself (first in their run).
func (r *Repo) applyDelta(ctx context.Context, w *work, vol, seq uint64) (addedBytes, addedBlocks uint64, err error) {
	err = r.eachDeltaChunk(ctx, vol, seq, func(hs []Hash, ds []blockDelta) error {
		delta := make(map[Hash]blockDelta, len(hs))
		for i, h := range hs {
			delta[h] = ds[i]
		}
		added, err := r.applyPlanned(ctx, w, hs, func(txn *badger.Txn, h Hash, t *planTally) ([]kv, error) {
			d := delta[h]
			writes, opened, err := planApply(txn, vol, seq, h, d.Count)
			if opened {
				t.bytes += uint64(d.Length)
				t.blocks++
			}
			return writes, err
		})
		addedBytes += added.bytes
		addedBlocks += added.blocks
		return err
	})
	return addedBytes, addedBlocks, err
}

// lastInterval finds the newest run of block h in volume vol starting at or
// before seq.
func lastInterval(txn *badger.Txn, vol uint64, h Hash, seq uint64) (start uint64, iv intervalRecord, found bool, err error) {
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: intervalPrefix(vol, h), PrefetchValues: false})
	defer it.Close()
	it.Seek(intervalKey(vol, h, seq))
	if !it.Valid() {
		return 0, iv, false, nil
	}
	item := it.Item()
	_, _, start, err = parseIntervalKey(item.Key())
	if err != nil {
		return 0, iv, false, err
	}
	err = item.Value(func(v []byte) (e error) {
		iv, e = decodeIntervalRecord(v)
		return e
	})
	return start, iv, err == nil, err
}

// planApply plans one block's part of a snapshot's chain update: its open
// run counts n more references (closing when none are left), or a new run
// starts at seq and the block gains a reference.
func planApply(txn *badger.Txn, vol, seq uint64, h Hash, n int64) (writes []kv, opened bool, err error) {
	rec, err := getBlockRecord(txn, h)
	if err != nil {
		return nil, false, err
	}
	var start uint64
	var iv intervalRecord
	found := false
	if rec.Refs > 0 { // a block no run references has no run to find
		if start, iv, found, err = lastInterval(txn, vol, h, seq); err != nil {
			return nil, false, err
		}
	}
	if found && iv.End == 0 {
		count := int64(iv.Count) + n
		if count < 0 {
			return nil, false, fmt.Errorf("reference count below zero: %w", ErrCorrupt)
		}
		next := intervalRecord{Count: uint64(count), Upd: seq, PrevEnd: iv.End, PrevCount: iv.Count}
		if count == 0 {
			next.End = seq
		}
		return []kv{{intervalKey(vol, h, start), next.encode()}}, false, nil
	}
	if n < 0 {
		return nil, false, fmt.Errorf("removes a block its parent does not hold: %w", ErrCorrupt)
	}
	rec.Refs++
	return []kv{
		{blockKey(h), rec.encode()},
		{intervalKey(vol, h, seq), intervalRecord{Count: uint64(n), Upd: seq}.encode()},
	}, true, nil
}

// getBlockRecord reads a block record; a missing one is corruption, since
// only referenced or just-stored blocks are asked for.
func getBlockRecord(txn *badger.Txn, h Hash) (blockRecord, error) {
	item, err := txn.Get(blockKey(h))
	if err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return blockRecord{}, fmt.Errorf("block record missing: %w", ErrCorrupt)
		}
		return blockRecord{}, err
	}
	var rec blockRecord
	err = item.Value(func(v []byte) (e error) { rec, e = decodeBlockRecord(v); return e })
	return rec, err
}

// undoDelta reverses an interrupted applyDelta of snapshot seq, using the
// delta journal. Undo checks Upd, so an undo interrupted by another crash
// is done again safely: a run whose start is seq is deleted together with
// the reference it gave its block; a run updated by seq gets its previous
// end and count back.
func (r *Repo) undoDelta(ctx context.Context, w *work, vol, seq uint64) error {
	err := r.eachDeltaChunk(ctx, vol, seq, func(hs []Hash, _ []blockDelta) error {
		return r.undoChunk(ctx, w, vol, seq, hs)
	})
	if err != nil {
		return err
	}
	return r.deletePrefix(ctx, deltaPrefix(vol, seq))
}

// undoChunk undoes the part of an interrupted applyDelta that concerns
// the blocks hs (undoDelta).
func (r *Repo) undoChunk(ctx context.Context, w *work, vol, seq uint64, hs []Hash) error {
	_, err := r.applyPlanned(ctx, w, hs, func(txn *badger.Txn, h Hash, _ *planTally) ([]kv, error) {
		start, iv, found, err := lastInterval(txn, vol, h, seq)
		if err != nil || !found || iv.Upd != seq {
			return nil, err
		}
		if start != seq {
			prev := intervalRecord{End: iv.PrevEnd, Count: iv.PrevCount}
			return []kv{{intervalKey(vol, h, start), prev.encode()}}, nil
		}
		ref, err := dropRef(txn, h)
		if err != nil {
			return nil, err
		}
		return []kv{{intervalKey(vol, h, seq), nil}, ref}, nil
	})
	return err
}

// eachDeltaChunk calls fn with the hashes and entries of the delta
// journal of snapshot seq, in hash order, chunkSize at a time, each chunk
// read in a transaction of its own after the one before was handled: what
// it holds does not grow with the journal, and fn may change what it has
// been given (a deletion drops the entries it has merged).
func (r *Repo) eachDeltaChunk(ctx context.Context, vol, seq uint64, fn func(hs []Hash, ds []blockDelta) error) error {
	prefix := deltaPrefix(vol, seq)
	from := prefix
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hs := make([]Hash, 0, chunkSize)
		ds := make([]blockDelta, 0, chunkSize)
		err := r.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
			defer it.Close()
			for it.Seek(from); it.Valid() && len(hs) < chunkSize; it.Next() {
				h, err := parseDeltaKey(it.Item().Key())
				if err != nil {
					return err
				}
				var d blockDelta
				if err := it.Item().Value(func(v []byte) (e error) { d, e = decodeBlockDelta(v); return e }); err != nil {
					return fmt.Errorf("block %s: %w", h.Short(), err)
				}
				hs, ds = append(hs, h), append(ds, d)
			}
			return nil
		})
		if err != nil || len(hs) == 0 {
			return err
		}
		if err := fn(hs, ds); err != nil {
			return err
		}
		if len(hs) < chunkSize {
			return nil
		}
		// The next chunk starts after the last key of this one.
		from = append(deltaKey(vol, seq, hs[len(hs)-1]), 0)
	}
}

// eachDelta calls fn with the hash and the record of every block in the
// delta of snapshot seq, in hash order.
func eachDelta(txn *badger.Txn, vol, seq uint64, fn func(h Hash, item *badger.Item) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: deltaPrefix(vol, seq)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		h, err := parseDeltaKey(it.Item().Key())
		if err != nil {
			return err
		}
		if err := fn(h, it.Item()); err != nil {
			return err
		}
	}
	return nil
}

// dropIntervals removes every run of a volume and the references they held.
func (r *Repo) dropIntervals(ctx context.Context, w *work, vol uint64) error {
	prefix := []byte{prefixInterval, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(prefix[1:], vol)
	return r.drainPrefix(ctx, prefix, func(keys [][]byte) error {
		r.commitMu.Lock()
		defer r.commitMu.Unlock()
		return r.commitWork(ctx, w, func(m metaTxn) error {
			for _, k := range keys {
				vol, h, start, err := parseIntervalKey(k)
				if err != nil {
					return err
				}
				if err := m.deleteInterval(vol, h, start); err != nil {
					return err
				}
				if err := m.addRefs(h, -1); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
