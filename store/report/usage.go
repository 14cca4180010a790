package report

import (
	"context"
	"errors"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
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
	// Trashed is set for a snapshot in the trash, with the name it goes
	// by there (store.TrashNames) in Snapshot.
	Trashed *store.Trashed `json:"trashed,omitempty"`
}

// UsageOptions choose what Usage computes.
type UsageOptions struct {
	// Shared walks every snapshot's tree to find what it references; the
	// rest of Usage costs one seek per block of each snapshot's delta.
	Shared bool
	// TrashOnly leaves out the snapshots not in the trash (VolumeUsage).
	TrashOnly bool
}

// Report is the repository's accounting.
type Report struct {
	Snapshots []SnapshotUsage `json:"snapshots"`
	// Images have Volume "" and Snapshot the image's name; Added is 0
	// (an image is a chain of its own, it holds all it references).
	Images []SnapshotUsage `json:"images"`
	// Trash are the snapshots in the trash, and TrashBytes the sum of
	// their exclusive sizes: what emptying the trash frees at least (a
	// block that only trashed snapshots share is no one's exclusively).
	Trash      []SnapshotUsage `json:"trash"`
	TrashBytes uint64          `json:"trash_bytes"`
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
func Usage(ctx context.Context, r *store.Repo, opts UsageOptions) (*Report, error) {
	u := &Report{Snapshots: []SnapshotUsage{}, Images: []SnapshotUsage{}, Trash: []SnapshotUsage{}}
	vols, err := r.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range vols {
		live, trash, err := VolumeUsage(ctx, r, vols[i].Name, opts)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed since it was listed
		} else if err != nil {
			return nil, err
		}
		u.Snapshots = append(u.Snapshots, live...)
		u.Trash = append(u.Trash, trash...)
		for _, su := range append(live, trash...) {
			u.LogicalBytes += su.Logical
		}
		for _, su := range trash {
			u.TrashBytes += su.Exclusive
		}
	}
	imgs, err := images.List(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		// An image is a chain of its own: it holds all it references.
		su, err := snapshotUsage(ctx, r, "", &img.Snapshot, 0, opts)
		if err != nil {
			return nil, err
		}
		su.Snapshot, su.Added, su.AddedBlocks = img.Name, 0, 0
		u.Images = append(u.Images, su)
	}
	t, err := r.Index().Totals(ctx)
	if err != nil {
		return nil, err
	}
	u.Blocks, u.StoredBytes, u.GarbageBytes, u.Trees = t.Blocks, t.StoredBytes, t.GarbageBytes, t.Trees
	u.SpaceUsed, err = r.Index().SpaceUsed()
	return u, err
}

// VolumeUsage is Usage for one volume's snapshots: those listed, and
// those in the trash (alone, with TrashOnly).
func VolumeUsage(ctx context.Context, r *store.Repo, volume string, opts UsageOptions) (live, trash []SnapshotUsage, err error) {
	chain, err := r.Chain(ctx, volume)
	if err != nil {
		return nil, nil, err
	}
	var inTrash []store.Snapshot
	for i, s := range chain {
		// The next snapshot in the chain, in the trash or not, is the one
		// that takes over the blocks it holds.
		var next uint64
		if i+1 < len(chain) {
			next = chain[i+1].Seq
		}
		if opts.TrashOnly && s.Trashed == nil {
			continue
		}
		su, err := snapshotUsage(ctx, r, volume, &s, next, opts)
		if err != nil {
			return nil, nil, err
		}
		if s.Trashed == nil {
			live = append(live, su)
			continue
		}
		su.Trashed = s.Trashed
		trash = append(trash, su)
		inTrash = append(inTrash, s)
	}
	for i, name := range store.TrashNames(inTrash) {
		trash[i].Snapshot = name
	}
	return live, trash, nil
}

// snapshotUsage is one snapshot's sizes; next is the snapshot after it in
// its chain (0 for none).
func snapshotUsage(ctx context.Context, r *store.Repo, volume string, s *store.Snapshot, next uint64, opts UsageOptions) (SnapshotUsage, error) {
	held, err := r.Index().Holdings(ctx, s.VolumeID, s.Seq, next)
	if err != nil {
		return SnapshotUsage{}, err
	}
	excl := held.Exclusive
	su := SnapshotUsage{Volume: volume, Snapshot: s.Name, Logical: s.Stats.LogicalBytes,
		Added: held.AddedBytes, AddedBlocks: held.AddedBlocks, Exclusive: excl}
	if opts.Shared {
		blocks := map[store.Hash]uint32{}
		if err := store.CollectBlocks(ctx, r, s.Root, blocks); err != nil {
			return su, err
		}
		var referenced uint64
		for _, n := range blocks {
			referenced += uint64(n)
		}
		su.Shared = referenced - min(referenced, held.ExclusiveLogical)
	}
	return su, nil
}
