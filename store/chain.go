package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/dgraph-io/badger/v4"
)

// blockRecord says where a block's bytes lie and how many chain runs
// (intervals, across all volumes) reference it. A block with no reference
// is garbage for gc.
type blockRecord struct {
	Pack   uint64
	Offset uint64
	Length uint32
	Refs   uint64
}

const blockRecordLen = 1 + 8 + 8 + 4 + 8

// place is where the record says the block lies.
func (b blockRecord) place() place { return place{pack: b.Pack, offset: b.Offset, length: b.Length} }

func (b blockRecord) encode() []byte {
	v := make([]byte, blockRecordLen)
	v[0] = 0 // flags: no compression
	binary.BigEndian.PutUint64(v[1:], b.Pack)
	binary.BigEndian.PutUint64(v[9:], b.Offset)
	binary.BigEndian.PutUint32(v[17:], b.Length)
	binary.BigEndian.PutUint64(v[21:], b.Refs)
	return v
}

func decodeBlockRecord(v []byte) (blockRecord, error) {
	if len(v) != blockRecordLen || v[0] != 0 {
		return blockRecord{}, fmt.Errorf("block record: %w", ErrCorrupt)
	}
	return blockRecord{
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

// deltaSet accumulates block deltas while two trees are compared.
type deltaSet map[Hash]*blockDelta

func (s deltaSet) add(h Hash, n int64, length uint32) {
	if h.IsHole() {
		return
	}
	d := s[h]
	if d == nil {
		d = &blockDelta{Length: length}
		s[h] = d
	}
	d.Count += n
}

// treeDelta adds to acc the block references of tree newRoot minus those
// of oldRoot (hasOld false: an empty tree). Subtrees with the same hash are
// skipped, so the cost follows the size of the change.
func (r *Repo) treeDelta(ctx context.Context, oldRoot, newRoot Hash, hasOld bool, acc deltaSet) error {
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
func (r *Repo) entryRefs(ctx context.Context, e *Entry, sign int64, acc deltaSet) error {
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
			acc.add(h, sign, e.BlockLen(i))
			return nil
		})
	}
	return nil
}

// contentDelta adds the block references of file n minus those of file o.
// Two chunked lists are compared chunk by chunk: a chunk equal in both is
// skipped unread, so a disk with a few changed blocks costs a few chunks.
func (r *Repo) contentDelta(ctx context.Context, o, n *Entry, acc deltaSet) error {
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
				acc.add(h, side.sign, side.e.BlockLen(c*side.c.Per+j))
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

// sortedHashes returns the keys of a deltaSet in order, so that updates
// run in key order and are reproducible.
func (s deltaSet) sortedHashes() []Hash {
	hs := make([]Hash, 0, len(s))
	for h, d := range s {
		if d.Count != 0 {
			hs = append(hs, h)
		}
	}
	sort.Slice(hs, func(i, j int) bool { return string(hs[i][:]) < string(hs[j][:]) })
	return hs
}

// writeDelta records a snapshot's delta: the journal from which its chain
// update is undone after a crash, and later merged when it is deleted.
func (r *Repo) writeDelta(ctx context.Context, w *work, vol, seq uint64, delta deltaSet, hs []Hash) error {
	b := r.newBatch()
	b.work = w
	defer b.cancel()
	for _, h := range hs {
		if err := b.putDelta(ctx, vol, seq, h, *delta[h]); err != nil {
			return err
		}
	}
	return b.flush(ctx)
}

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
// for snapshot seq. It returns the bytes and blocks the snapshot holds
// itself (first in their run).
func (r *Repo) applyDelta(ctx context.Context, w *work, vol, seq uint64, delta deltaSet, hs []Hash) (addedBytes, addedBlocks uint64, err error) {
	added, err := r.applyPlanned(ctx, w, hs, func(txn *badger.Txn, h Hash, t *planTally) ([]kv, error) {
		d := delta[h]
		writes, opened, err := planApply(txn, vol, seq, h, d.Count)
		if opened {
			t.bytes += uint64(d.Length)
			t.blocks++
		}
		return writes, err
	})
	return added.bytes, added.blocks, err
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
	hs, err := r.deltaHashes(vol, seq)
	if err != nil {
		return err
	}
	_, err = r.applyPlanned(ctx, w, hs, func(txn *badger.Txn, h Hash, _ *planTally) ([]kv, error) {
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
	if err != nil {
		return err
	}
	return r.deletePrefix(ctx, deltaPrefix(vol, seq))
}

func (r *Repo) deltaHashes(vol, seq uint64) ([]Hash, error) {
	var hs []Hash
	err := r.view(func(txn *badger.Txn) error {
		return eachDelta(txn, vol, seq, func(h Hash, _ *badger.Item) error {
			hs = append(hs, h)
			return nil
		})
	})
	return hs, err
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
