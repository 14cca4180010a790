package store

import (
	"context"
	"fmt"
)

// Each snapshot writes its new blocks to packs of its own, so a chain of
// small snapshots leaves many small packs, and the newest snapshot's
// files lie scattered across them. The daemon merges them as they come,
// in the background (MergeSmallPacks), the way a log-structured store
// compacts its runs: small packs are put in levels by size, each level
// mergeFanIn times smaller than the one above, and a level that holds
// mergeFanIn packs is merged into one pack (with the smaller levels'
// packs, which are little beside it). A byte is rewritten about once
// per level, three times on its way from a 64 KiB pack to a full one,
// where merging every small pack each time would rewrite the growing
// merged pack again and again.
const mergeFanIn = 16

// mergeLevel is the level of a small pack of size bytes, below limit:
// 0 for the largest, from limit/mergeFanIn up, then 1, 2, ... as packs
// get mergeFanIn times smaller.
func mergeLevel(size, limit uint64) int {
	level := 0
	for size < limit/mergeFanIn && level < 16 {
		limit /= mergeFanIn
		level++
	}
	return level
}

// mergeTail is how many packs below level 0 a merge once snapshots have
// settled waits for: fewer would rewrite the growing merged pack after
// nearly every snapshot.
const mergeTail = mergeFanIn / 4

// mergePlan picks the small packs to merge now: those of the largest
// level that holds mergeFanIn packs, and of every level below it. Once
// snapshots have settled, the packs below level 0 are merged too, when
// there are mergeTail of them: the newest snapshots' blocks lie in them,
// a few in each, and a cold read of the newest snapshot would seek
// between them all. That rewrites what lies below level 0, no more than
// the bound of small packs and usually far less. The plan reads the pack
// records only, so it is cheap enough to ask after every snapshot.
func (r *Repo) mergePlan(settled bool) (map[uint64]uint64, error) {
	sizes, err := r.packSizes()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	for id := range r.unmergeable {
		if _, ok := sizes[id]; ok {
			delete(sizes, id)
		} else {
			delete(r.unmergeable, id) // gone: gc rewrote or dropped it
		}
	}
	r.mu.Unlock()
	limit := uint64(float64(r.packSize) * smallPackShare)
	var count [17]int
	for _, size := range sizes {
		if size < limit {
			count[mergeLevel(size, limit)]++
		}
	}
	from := -1
	for level, n := range count {
		if n >= mergeFanIn {
			from = level
			break
		}
	}
	tail := 0
	for _, n := range count[1:] {
		tail += n
	}
	if from < 0 && settled && tail >= mergeTail {
		from = 1
	}
	if from < 0 {
		return nil, nil
	}
	plan := map[uint64]uint64{}
	for id, size := range sizes {
		if size < limit && mergeLevel(size, limit) >= from {
			plan[id] = size
		}
	}
	return plan, nil
}

// MergeDue reports whether MergeSmallPacks has packs to merge, with
// snapshots settled or not. It is false for a repository in an object
// store, which this does not merge yet: the packs there are merged by gc.
func (r *Repo) MergeDue(settled bool) (bool, error) {
	if r.journal != nil {
		return false, nil
	}
	plan, err := r.mergePlan(settled)
	return len(plan) > 0, err
}

// MergeSmallPacks merges small packs, level by level (mergeFanIn), the
// newest snapshots' files in order, as gc does, so that chains stay flat
// without one; settled says that no snapshot ran for a while, which lets
// it merge the smallest packs too (mergePlan). It is background work and
// gives way: it runs only while no snapshot, gc or repair runs or waits,
// and returns ErrBusy at once if one does. One that asks for the gc lock
// meanwhile cancels it: while it copies, it removes the packs it made and
// returns context.Canceled at once; once records move, it finishes
// moving them and dropping the old packs (a few metadata commits and one
// sync) and then stops. Blocks no snapshot references that lie in the
// packs merged are freed on the way. It returns what it did, also with
// an error. A repository in an object store is left alone (MergeDue).
func (r *Repo) MergeSmallPacks(ctx context.Context, settled bool) (*GCStats, error) {
	st := &GCStats{}
	if due, err := r.MergeDue(settled); err != nil || !due {
		return st, err
	}
	// It drops what no record names, as gc does: it runs on whole
	// metadata only. The check reads every table, and is made before the
	// lock is taken, so that no snapshot waits for it.
	if err := r.verifyMetadata(); err != nil {
		return st, fmt.Errorf("merging small packs: nothing merged: %w", err)
	}
	ctx, ok := r.gcMu.tryLockYielding(ctx)
	if !ok {
		return st, fmt.Errorf("merging small packs: %w", ErrBusy)
	}
	defer r.gcMu.Unlock()
	// A merge may fill the level above: merge until none is due.
	for {
		plan, err := r.mergePlan(settled)
		if err != nil || len(plan) == 0 {
			return st, err
		}
		if err := r.mergePacks(ctx, plan, st); err != nil {
			return st, fmt.Errorf("merging %d small packs: %w", len(plan), err)
		}
	}
}

// mergePacks merges the packs of plan (id to size). Those it leaves in
// place for a damaged block are not planned again (unmergeable).
func (r *Repo) mergePacks(ctx context.Context, plan map[uint64]uint64, st *GCStats) error {
	packs := make(map[uint64]*packUse, len(plan))
	for id, size := range plan {
		packs[id] = &packUse{size: size}
	}
	n := 0
	err := r.scanBlocks(func(h Hash, rec blockRecord) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if p := packs[rec.Pack]; p != nil {
			p.add(h, rec)
		}
		return nil
	})
	if err != nil {
		return err
	}
	empty := map[uint64][]Hash{}
	for id, p := range packs {
		if len(p.live) == 0 {
			empty[id] = p.dead
			delete(packs, id)
		}
	}
	if err := r.dropPacks(ctx, nil, empty, st); err != nil || len(packs) == 0 {
		return err
	}
	order, err := r.newestOrder(ctx, packs)
	if err != nil {
		return err
	}
	kept := st.PacksKept
	if err := r.repack(ctx, nil, packs, order, st); err != nil || st.PacksKept == kept {
		return err
	}
	sizes, err := r.packSizes()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unmergeable == nil {
		r.unmergeable = map[uint64]bool{}
	}
	for id := range packs {
		if _, ok := sizes[id]; ok {
			r.unmergeable[id] = true
		}
	}
	return nil
}
