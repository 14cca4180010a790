package store

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Index is the repository's indexes of blocks, packs and chain runs, for
// those that read them apart from the snapshot path: the reports, check
// and repair, a copy between repositories, the daemon's metrics.
type Index struct{ r *Repo }

// Index returns the repository's indexes.
func (r *Repo) Index() Index { return Index{r: r} }

// HasBlock reports whether the repository holds block h: its record is
// there and reads. It is false too when the record cannot be read:
// callers use it to decide whether to send or store a block again, or to
// report it damaged, never to delete anything.
func (x Index) HasBlock(h Hash) bool {
	_, err := x.r.blockRecord(h)
	return err == nil
}

// SpaceUsed is what the repository's files take on disk, or, in an
// object store, its packs there.
func (x Index) SpaceUsed() (int64, error) { return x.r.spaceUsed() }

// VerifyFailures is how many blocks and trees read since Open failed
// their hash check.
func (x Index) VerifyFailures() uint64 { return x.r.verifyFailures.Load() }

// Holdings is what snapshot seq of volume vol holds itself, and what of
// that deleting it would free; next is the snapshot after it in its chain
// (0 for none).
func (x Index) Holdings(ctx context.Context, vol, seq, next uint64) (Holding, error) {
	return x.r.holdings(vol, seq, next, true)
}

// Totals are the repository's block counts.
type Totals struct {
	// Blocks and StoredBytes count the referenced blocks, each once.
	Blocks, StoredBytes uint64
	// GarbageBytes is data no snapshot references any more: what gc frees.
	GarbageBytes uint64
	// Trees counts the tree and content blobs stored.
	Trees uint64
}

// Totals reads every block record.
func (x Index) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	err := x.r.scanBlocks(func(_ Hash, rec blockRecord) error {
		if rec.Refs == 0 {
			t.GarbageBytes += uint64(rec.Length)
		} else {
			t.Blocks++
			t.StoredBytes += uint64(rec.Length)
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	t.Trees, err = x.r.countKeys([]byte{prefixTree})
	return t, err
}

// Holder returns the seq of the snapshot of the volume that holds block h
// as referenced by snapshot seq: the first snapshot of the run of
// consecutive snapshots that reference it. It costs one index seek,
// whatever the chain's length.
func (x Index) Holder(ctx context.Context, vol, seq uint64, h Hash) (uint64, error) {
	var holder uint64
	err := x.r.view(func(txn *badger.Txn) error {
		var err error
		holder, err = holderIn(txn, vol, seq, h)
		return err
	})
	if err == nil && holder == 0 {
		err = fmt.Errorf("block %s in snapshot %d: %w", h.Short(), seq, ErrNotFound)
	}
	return holder, err
}

// Holders is Holder for many blocks of one snapshot, read in one view: 0
// for a block no run covering the snapshot references.
func (x Index) Holders(ctx context.Context, vol, seq uint64, hs []Hash) ([]uint64, error) {
	out := make([]uint64, len(hs))
	err := x.r.view(func(txn *badger.Txn) error {
		for i, h := range hs {
			if i%chunkSize == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var err error
			if out[i], err = holderIn(txn, vol, seq, h); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// holderIn is the start of the run of block h that covers snapshot seq,
// 0 when none does.
func holderIn(txn *badger.Txn, vol, seq uint64, h Hash) (uint64, error) {
	start, iv, found, err := lastInterval(txn, vol, h, seq)
	if err != nil || !found || (iv.End != 0 && iv.End <= seq) {
		return 0, err
	}
	return start, nil
}

// Holding is what a snapshot holds itself, as the chain is now.
type Holding struct {
	// AddedBytes and AddedBlocks are the blocks whose run starts at the
	// snapshot: the data it holds itself.
	AddedBytes, AddedBlocks uint64
	// Exclusive is the part of it no later surviving snapshot continues
	// and no other run or image shares: what deleting it would free, as
	// stored (compressed or not), and ExclusiveLogical the same blocks as
	// read.
	Exclusive, ExclusiveLogical uint64
}

// holdings adds up the blocks snapshot seq holds: its runs (every run
// starting at seq is named by its delta: a deletion merges the deleted
// snapshot's delta into the next one's), and with exclusive those that
// next (the next surviving snapshot, 0 for none) does not continue and no
// other run shares. It costs one seek per block of the delta, whatever
// the chain's length; the figures follow every deletion, unlike a count
// kept from the snapshot's commit.
func (r *Repo) holdings(vol, seq, next uint64, exclusive bool) (Holding, error) {
	var held Holding
	err := r.view(func(txn *badger.Txn) error {
		return eachDelta(txn, vol, seq, func(h Hash, item *badger.Item) error {
			var d blockDelta
			if err := item.Value(func(v []byte) (e error) { d, e = decodeBlockDelta(v); return e }); err != nil {
				return fmt.Errorf("block %s delta: %w", h.Short(), err)
			}
			start, iv, found, err := lastInterval(txn, vol, h, seq)
			if err != nil {
				return err
			}
			if !found || start != seq {
				return nil
			}
			held.AddedBytes += uint64(d.Length)
			held.AddedBlocks++
			if !exclusive || next != 0 && (iv.End == 0 || iv.End > next) {
				return nil // the next snapshot has it too
			}
			rec, err := getBlockRecord(txn, h)
			if err != nil {
				return err
			}
			if rec.Refs == 1 {
				held.Exclusive += uint64(rec.Length)
				held.ExclusiveLogical += uint64(d.Length)
			}
			return nil
		})
	})
	return held, err
}

// countKeys counts the keys under prefix.
func (r *Repo) countKeys(prefix []byte) (uint64, error) {
	var n uint64
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}
