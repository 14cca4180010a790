package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// SnapshotUsage is what one snapshot shows and costs.
type SnapshotUsage struct {
	Volume   string `json:"volume"`
	Snapshot string `json:"snapshot"`
	// Logical is the size of its files: what it shows.
	Logical uint64 `json:"logical_bytes"`
	// Added and AddedBlocks are the data it holds itself (first in its
	// chain), as the chain is now: deleting an earlier snapshot hands
	// this one the blocks it kept.
	Added       uint64 `json:"added_bytes"`
	AddedBlocks uint64 `json:"added_blocks"`
	// Exclusive is what deleting it would free: blocks no other snapshot
	// or image references.
	Exclusive uint64 `json:"exclusive_bytes"`
	// Shared is the rest of the data it references (each block once):
	// held too by other snapshots or images. Only with UsageOptions.Shared.
	Shared uint64 `json:"shared_bytes"`
}

// UsageOptions choose what Usage computes.
type UsageOptions struct {
	// Shared walks every snapshot's tree to find what it references; the
	// rest of Usage costs one seek per block of each snapshot's delta.
	Shared bool
}

// Usage is the repository's accounting.
type Usage struct {
	Snapshots []SnapshotUsage `json:"snapshots"`
	// Images have Volume "" and Snapshot the image's name; Added is 0
	// (an image is a chain of its own, it holds all it references).
	Images []SnapshotUsage `json:"images"`
	// Blocks and StoredBytes count the referenced blocks, each once.
	Blocks      uint64 `json:"blocks"`
	StoredBytes uint64 `json:"stored_bytes"`
	// Garbage is data no snapshot references any more: what gc frees.
	GarbageBytes uint64 `json:"garbage_bytes"`
	// Trees counts the tree and content blobs stored.
	Trees uint64 `json:"trees"`
	// LogicalBytes adds up every snapshot's logical size; its ratio to
	// StoredBytes is the deduplication ratio.
	LogicalBytes uint64 `json:"logical_bytes"`
	// SpaceUsed is what the repository's files take on disk.
	SpaceUsed int64 `json:"space_used"`
}

// Usage reports every snapshot's sizes and the repository's totals. A
// snapshot's exclusive size costs one seek per block its delta names.
func (r *Repo) Usage(ctx context.Context, opts UsageOptions) (*Usage, error) {
	u := &Usage{Snapshots: []SnapshotUsage{}, Images: []SnapshotUsage{}}
	err := r.liveSnapshots(ctx, func(v *Volume, snaps []Snapshot) error {
		for i, s := range snaps {
			var next uint64
			if i+1 < len(snaps) {
				next = snaps[i+1].Seq
			}
			su, err := r.snapshotUsage(ctx, v, &s, next, opts)
			if err != nil {
				return err
			}
			if name, ok := strings.CutPrefix(v.Name, imagePrefix); ok {
				su.Volume, su.Snapshot, su.Added, su.AddedBlocks = "", name, 0, 0
				u.Images = append(u.Images, su)
				continue
			}
			u.Snapshots = append(u.Snapshots, su)
			u.LogicalBytes += s.Stats.LogicalBytes
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = r.scanBlocks(func(_ Hash, rec blockRecord) error {
		if rec.Refs == 0 {
			u.GarbageBytes += uint64(rec.Length)
		} else {
			u.Blocks++
			u.StoredBytes += uint64(rec.Length)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if u.Trees, err = r.countKeys([]byte{prefixTree}); err != nil {
		return nil, err
	}
	u.SpaceUsed, err = r.SpaceUsed()
	return u, err
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

// snapshotUsage is one snapshot's sizes; next is the snapshot after it in
// its chain (0 for none).
func (r *Repo) snapshotUsage(ctx context.Context, v *Volume, s *Snapshot, next uint64, opts UsageOptions) (SnapshotUsage, error) {
	held, err := r.holdings(v.ID, s.Seq, next, true)
	if err != nil {
		return SnapshotUsage{}, err
	}
	excl := held.Exclusive
	su := SnapshotUsage{Volume: v.Name, Snapshot: s.Name, Logical: s.Stats.LogicalBytes,
		Added: held.AddedBytes, AddedBlocks: held.AddedBlocks, Exclusive: excl}
	if opts.Shared {
		blocks := map[Hash]uint32{}
		if err := r.collectBlocks(ctx, s.Root, blocks); err != nil {
			return su, err
		}
		var referenced uint64
		for _, n := range blocks {
			referenced += uint64(n)
		}
		su.Shared = referenced - min(referenced, excl)
	}
	return su, nil
}

// holding is what a snapshot holds itself, as the chain is now.
type holding struct {
	// AddedBytes and AddedBlocks are the blocks whose run starts at the
	// snapshot: the data it holds itself.
	AddedBytes, AddedBlocks uint64
	// Exclusive is the part of it no later surviving snapshot continues
	// and no other run or image shares: what deleting it would free.
	Exclusive uint64
}

// holdings adds up the blocks snapshot seq holds: its runs (every run
// starting at seq is named by its delta: a deletion merges the deleted
// snapshot's delta into the next one's), and with exclusive those that
// next (the next surviving snapshot, 0 for none) does not continue and no
// other run shares. It costs one seek per block of the delta, whatever
// the chain's length; the figures follow every deletion, unlike a count
// kept from the snapshot's commit.
func (r *Repo) holdings(vol, seq, next uint64, exclusive bool) (holding, error) {
	var held holding
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
			}
			return nil
		})
	})
	return held, err
}
