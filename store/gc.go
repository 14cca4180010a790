package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// GCStats say what a gc did.
type GCStats struct {
	BlocksFreed   uint64 `json:"blocks_freed"`
	BytesFreed    uint64 `json:"bytes_freed"`
	TreesFreed    uint64 `json:"trees_freed"`
	PacksRemoved  uint64 `json:"packs_removed"`
	PacksRepacked uint64 `json:"packs_repacked"`
	BytesMoved    uint64 `json:"bytes_moved"`
	// PacksKept counts packs a rewrite left in place because a live block
	// in them failed its hash: moving it would lose the evidence and
	// dropping it would lose what check --repair may still heal.
	PacksKept  uint64 `json:"packs_kept,omitempty"`
	SizeBefore int64  `json:"size_before"`
	SizeAfter  int64  `json:"size_after"`
}

// repackBelow is the share of live bytes under which a pack is rewritten:
// below half, copying the live half costs less than what it frees.
const repackBelow = 0.5

// GC gives back the space of blocks no snapshot or image references and
// of trees none reaches. It waits for running snapshots and keeps new ones
// waiting while it runs, so no block it frees is being linked; reads and
// deletions go on meanwhile.
func (r *Repo) GC(ctx context.Context) (*GCStats, error) {
	r.gcMu.Lock()
	defer r.gcMu.Unlock()
	// Across hosts, a lease keeps gc and snapshots apart as gcMu does here.
	w, release, err := r.leaseSweep(ctx, "gc")
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer release()
	st := &GCStats{}
	st.SizeBefore, _ = r.spaceUsed()
	// gc deletes what no record names, and badger shows the records in a
	// damaged table as absent: it runs on whole metadata only.
	if err := r.verifyMetadata(); err != nil {
		return nil, fmt.Errorf("gc: nothing reclaimed: %w", err)
	}
	if err := r.sweepTrees(ctx, w, st); err != nil {
		return nil, fmt.Errorf("gc: trees: %w", err)
	}
	if err := r.sweepBlocks(ctx, w, st); err != nil {
		return nil, fmt.Errorf("gc: blocks: %w", err)
	}
	for r.db.RunValueLogGC(0.5) == nil {
	}
	// gc changes much: a new replica starts from after it.
	if _, err := r.Checkpoint(ctx, true); err != nil {
		r.log.Warn("gc: write a checkpoint of the metadata", "err", err)
	}
	r.syncMeta()
	st.SizeAfter, _ = r.spaceUsed()
	return st, nil
}

// sweepTrees deletes tree and content blobs no snapshot or image reaches.
func (r *Repo) sweepTrees(ctx context.Context, w *work, st *GCStats) error {
	mark := r.foreignMark()
	live := map[Hash]bool{}
	walk := NewWalk(r, TreeVisitor{
		Once: true,
		Dir: func(_ string, tree Hash, _ []Entry, err error) error {
			live[tree] = true
			return err
		},
		File: func(_ string, e *Entry) error {
			blobs, err := ContentBlobs(ctx, r, e)
			for _, h := range blobs {
				live[h] = true
			}
			return err
		},
	})
	err := r.liveSnapshots(ctx, func(v *Volume, snaps []Snapshot) error {
		for _, s := range snaps {
			if err := walk.Walk(ctx, s.Root); err != nil {
				return fmt.Errorf("snapshot %s/%s: %w", v.Name, s.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var dead [][]byte
	err = r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixTree}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var h Hash
			copy(h[:], it.Item().Key()[1:])
			if !live[h] {
				dead = append(dead, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.TreesFreed = uint64(len(dead))
	for len(dead) > 0 {
		chunk := dead[:min(chunkSize, len(dead))]
		dead = dead[len(chunk):]
		writes := make([]kv, len(chunk))
		for i, k := range chunk {
			writes[i] = kv{key: k}
		}
		if err := r.applyWrites(ctx, mark, w, writes); err != nil {
			return err
		}
	}
	return nil
}

// snapshotsOf lists the snapshots of a volume by id.
func (r *Repo) snapshotsOf(vol uint64) ([]Snapshot, error) {
	var snaps []Snapshot
	err := r.view(func(txn *badger.Txn) error {
		return scanJSON(txn, snapshotPrefix(vol), func(_ []byte, s *Snapshot) error {
			snaps = append(snaps, *s)
			return nil
		})
	})
	return snaps, err
}

// packUse is what gc learns of one pack.
type packUse struct {
	size       uint64
	live, dead []Hash
	liveOffs   []uint64 // where each live block lies in the pack
	liveBytes  uint64
	deadBytes  uint64
}

// add counts a block whose record says it lies in the pack.
func (p *packUse) add(h Hash, rec blockRecord) {
	if rec.Refs == 0 {
		p.dead = append(p.dead, h)
		p.deadBytes += uint64(rec.Length)
	} else {
		p.live = append(p.live, h)
		p.liveOffs = append(p.liveOffs, rec.Offset)
		p.liveBytes += uint64(rec.Length)
	}
}

// smallPackShare: a pack under this share of the pack size is small. Each
// snapshot writes its new blocks to packs of its own, so a chain of small
// snapshots leaves many small packs, and a file of the newest snapshot
// lies in many of them: a cold read seeks between files. gc merges them.
const smallPackShare = 1.0 / 8

// sweepBlocks drops unreferenced blocks: packs with nothing live go, packs
// mostly dead are rewritten with their live blocks only.
func (r *Repo) sweepBlocks(ctx context.Context, w *work, st *GCStats) error {
	rewrite, order, err := r.planRepack(ctx, w, st)
	if err != nil || len(rewrite) == 0 {
		return err
	}
	if err := r.repack(ctx, w, rewrite, order, st); errors.Is(err, syscall.ENOSPC) {
		// No room to copy the live blocks: the packs stay as they are.
		r.log.Warn("gc: packs not rewritten", "packs", len(rewrite), "err", err)
	} else if err != nil {
		return err
	}
	return nil
}

// planRepack drops the packs nothing live is in, and returns those to
// rewrite with their live blocks in the order to write them.
func (r *Repo) planRepack(ctx context.Context, w *work, st *GCStats) (map[uint64]*packUse, []liveBlock, error) {
	sizes, err := r.packSizes()
	if err != nil {
		return nil, nil, err
	}
	packs := map[uint64]*packUse{}
	for id, size := range sizes {
		packs[id] = &packUse{size: size}
	}
	err = r.scanBlocks(func(h Hash, rec blockRecord) error {
		p := packs[rec.Pack]
		if p == nil {
			return fmt.Errorf("block %s in unknown pack %016x: %w", h.Short(), rec.Pack, ErrCorrupt)
		}
		p.add(h, rec)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// Packs mostly dead are rewritten with their live blocks; small packs
	// are merged, when there are several.
	rewrite, small := map[uint64]*packUse{}, map[uint64]*packUse{}
	for id, p := range packs {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		switch {
		case len(p.live) == 0:
			if err := r.dropPack(ctx, w, id, p, st); err != nil {
				return nil, nil, err
			}
		case p.deadBytes > 0 && float64(p.liveBytes) < repackBelow*float64(p.size):
			rewrite[id] = p
		case float64(p.size) < smallPackShare*float64(r.packSize):
			small[id] = p
		}
	}
	// A pack is being written anyway, or several small ones would be one.
	if len(small) > 1 || len(small) == 1 && len(rewrite) > 0 {
		maps.Copy(rewrite, small)
	}
	if len(rewrite) == 0 {
		return nil, nil, nil
	}
	order, err := r.newestOrder(ctx, rewrite)
	return rewrite, order, err
}

// newestOrder orders the live blocks of packs the way the newest snapshot
// of each volume (and each image) reads them, file by file in path order,
// so that a rewrite lays the files people read most out on disk in one
// run. Blocks no newest snapshot holds follow in their old packs' order.
func (r *Repo) newestOrder(ctx context.Context, packs map[uint64]*packUse) ([]liveBlock, error) {
	where := map[Hash]place{}
	for id, p := range packs {
		for i, h := range p.live {
			where[h] = place{pack: id, offset: p.liveOffs[i]}
		}
	}
	order := make([]Hash, 0, len(where))
	taken := map[Hash]bool{}
	w := NewWalk(r, TreeVisitor{Once: true, File: func(_ string, e *Entry) error {
		list, err := OpenBlocks(ctx, r, e)
		if err != nil {
			return err
		}
		return list.Each(ctx, func(_ int, b Hash) error {
			if _, ok := where[b]; ok && !taken[b] {
				taken[b] = true
				order = append(order, b)
			}
			return nil
		})
	}})
	err := r.liveSnapshots(ctx, func(v *Volume, snaps []Snapshot) error {
		if len(snaps) == 0 {
			return nil
		}
		newest := slices.MaxFunc(snaps, func(a, b Snapshot) int { return cmp.Compare(a.Seq, b.Seq) })
		if err := w.Walk(ctx, newest.Root); err != nil {
			return fmt.Errorf("snapshot %s/%s: %w", v.Name, newest.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var rest []Hash
	for h := range where {
		if !taken[h] {
			rest = append(rest, h)
		}
	}
	slices.SortFunc(rest, func(a, b Hash) int {
		pa, pb := where[a], where[b]
		return cmp.Or(cmp.Compare(pa.pack, pb.pack), cmp.Compare(pa.offset, pb.offset))
	})
	blocks := make([]liveBlock, 0, len(where))
	for _, h := range append(order, rest...) {
		blocks = append(blocks, liveBlock{hash: h, pack: where[h].pack})
	}
	return blocks, nil
}

// liveBlock is a live block of a pack being rewritten.
type liveBlock struct {
	hash Hash
	pack uint64
}

// dropDead deletes the records of a pack's dead blocks, each only if it
// is still unreferenced (a deletion may not have raced it, but a snapshot
// never can: gc holds gcMu).
func (r *Repo) dropDead(ctx context.Context, w *work, id uint64, dead []Hash, st *GCStats) error {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	for len(dead) > 0 {
		chunk := dead[:min(chunkSize, len(dead))]
		dead = dead[len(chunk):]
		var freed, bytes uint64 // counted once the commit is made: it may run twice
		err := r.commitWork(ctx, w, func(m metaTxn) error {
			freed, bytes = 0, 0
			for _, h := range chunk {
				rec, err := getBlockRecord(m.txn, h)
				if err != nil || rec.Refs != 0 || rec.Pack != id {
					continue
				}
				if err := m.deleteBlock(h); err != nil {
					return err
				}
				freed++
				bytes += uint64(rec.Length)
			}
			return nil
		})
		if err != nil {
			return err
		}
		st.BlocksFreed += freed
		st.BytesFreed += bytes
	}
	return nil
}

// dropPack removes a pack none of whose blocks is referenced.
func (r *Repo) dropPack(ctx context.Context, w *work, id uint64, p *packUse, st *GCStats) error {
	return r.dropPacks(ctx, w, map[uint64][]Hash{id: p.dead}, st)
}

// dropPacks removes packs none of whose blocks is referenced, given the
// dead blocks of each, whose records go first. Once begun it is not cut
// short by ctx: a pack whose record went and whose file stayed would stay
// until the next Open, and in an object store for good.
func (r *Repo) dropPacks(ctx context.Context, w *work, dead map[uint64][]Hash, st *GCStats) error {
	if len(dead) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	for id, blocks := range dead {
		if err := r.dropDead(ctx, w, id, blocks, st); err != nil {
			return err
		}
		if err := r.commitWork(ctx, w, func(m metaTxn) error { return m.deletePack(id) }); err != nil {
			return err
		}
	}
	// The metadata is written without a sync per write: what dropped or
	// moved these packs' records must be on disk before the files go, or
	// a power loss could bring back records naming bytes that are gone
	// (one sync for them all: a crash before the files go leaves files no
	// record names, which the next open deletes).
	if err := r.syncMeta(); err != nil {
		return err
	}
	for id := range dead {
		if err := r.blocks.Remove(ctx, id); err != nil {
			return err
		}
		st.PacksRemoved++
	}
	return nil
}

// repack copies the live blocks of packs, each verified, in order, into
// new packs, then points their records at them and removes the old packs.
// The new packs are durable and recorded before any record moves, so a
// crash at any point loses nothing: an old pack stays until nothing points
// into it. Cancelled while it copies, it removes the packs it made, which
// nothing points into yet, and returns ctx's error; once records begin to
// move, it finishes, whatever ctx says.
func (r *Repo) repack(ctx context.Context, w *work, packs map[uint64]*packUse, order []liveBlock, st *GCStats) error {
	var liveBytes, liveBlocks uint64
	for _, p := range packs {
		liveBytes += p.liveBytes
		liveBlocks += uint64(len(p.live))
	}
	keep := map[uint64]bool{}
	if err := r.haveSpace(liveBytes+liveBlocks*recordBytes, fmt.Sprintf("rewriting %d packs", len(packs))); err != nil {
		return err
	}
	var (
		pack  *packBuilder
		made  []uint64
		moved []struct {
			pendingBlock
			pack uint64
		}
	)
	// giveUp removes what the copy made, which nothing points into yet:
	// the pack being written and those finished.
	giveUp := func(err error) error {
		if pack != nil {
			pack.abort()
		}
		// Cleaning up is not cut short by the cancellation that may
		// have brought it.
		ctx := context.WithoutCancel(ctx)
		for _, id := range made {
			if derr := r.dropPack(ctx, w, id, &packUse{}, &GCStats{}); derr != nil {
				r.log.Warn("gc: a new pack stays until the next gc", "pack", fmt.Sprintf("%016x", id), "err", derr)
			}
		}
		st.BytesMoved = 0
		return err
	}
	finish := func() error {
		id := pack.id
		size, err := pack.finish(ctx) // removes the pack when it fails
		pack = nil
		if err != nil {
			return err
		}
		made = append(made, id)
		st.BytesMoved += uint64(size)
		return nil
	}
	buf := make([]byte, maxStored)
	for _, b := range order {
		if err := ctx.Err(); err != nil {
			return giveUp(err)
		}
		h := b.hash
		stored, codec, err := r.readStored(ctx, h, buf)
		if errors.Is(err, ErrCorrupt) {
			// The damaged block stays where it is, and so does its pack;
			// the rest of the rewrite goes on. check names what it holds.
			r.log.Warn("gc: damaged block left in its pack", "block", h.Short(), "pack", fmt.Sprintf("%016x", b.pack), "err", err)
			keep[b.pack] = true
			continue
		}
		if err != nil {
			return giveUp(fmt.Errorf("rewriting packs: %w", err))
		}
		if pack == nil {
			if pack, err = r.newPack(ctx); err != nil {
				return giveUp(err)
			}
		}
		// Copied as kept: a compressed block stays compressed.
		pb, err := pack.add(h, stored, codec)
		if err != nil {
			return giveUp(err)
		}
		moved = append(moved, struct {
			pendingBlock
			pack uint64
		}{pb, pack.id})
		if pack.size() >= r.packSize {
			if err := finish(); err != nil {
				return giveUp(err)
			}
		}
	}
	if pack != nil {
		if err := finish(); err != nil {
			return giveUp(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return giveUp(err)
	}
	// Moved in part, the blocks not yet moved would stay in both places
	// until a gc: the moves and the drops are finished.
	ctx = context.WithoutCancel(ctx)
	r.commitMu.Lock()
	for len(moved) > 0 {
		chunk := moved[:min(chunkSize, len(moved))]
		moved = moved[len(chunk):]
		err := r.commitWork(ctx, w, func(m metaTxn) error {
			for _, b := range chunk {
				rec, err := getBlockRecord(m.txn, b.hash)
				if err != nil {
					return err
				}
				rec.Pack, rec.Offset = b.pack, uint64(b.offset)
				if err := m.putBlock(b.hash, rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			r.commitMu.Unlock()
			return err
		}
	}
	r.commitMu.Unlock()
	drop := map[uint64][]Hash{}
	for id, p := range packs {
		if keep[id] {
			st.PacksKept++
			if err := r.dropDead(ctx, w, id, p.dead, st); err != nil {
				return err
			}
			continue
		}
		st.PacksRepacked++
		drop[id] = p.dead
	}
	return r.dropPacks(ctx, w, drop, st)
}

// reclaim gives back what a writer that never committed stored: the packs
// it finished and the trees it wrote. Only a commit can link them, and
// commits need the gc lock shared, so this runs under it held exclusively:
// a pack goes unless one of its blocks is referenced, and the trees go
// only if no snapshot was committed since the writer began (else gc takes
// them later). When the lock is taken it runs once it is free (gcLock).
func (r *Repo) reclaim(ctx context.Context, packs []finishedPack, trees []Hash, commitsAtBegin uint64) {
	if len(packs) == 0 && len(trees) == 0 {
		return
	}
	if r.journal != nil {
		// Another host's snapshot may have linked them, and only its
		// commit would say so: gc, which waits for it, takes them.
		return
	}
	r.gcMu.whenFree(func() {
		mark := r.foreignMark()
		if err := r.reclaimPacks(ctx, packs); err != nil {
			r.log.Warn("giving back an unfinished snapshot's packs; gc will", "err", err)
		}
		if r.commits.Load() != commitsAtBegin {
			return
		}
		for len(trees) > 0 {
			chunk := trees[:min(chunkSize, len(trees))]
			trees = trees[len(chunk):]
			writes := make([]kv, len(chunk))
			for i, h := range chunk {
				writes[i] = kv{key: treeKey(h)}
			}
			if err := r.applyWrites(ctx, mark, nil, writes); err != nil {
				r.log.Warn("giving back an unfinished snapshot's trees; gc will", "err", err)
				return
			}
		}
	})
}

func (r *Repo) reclaimPacks(ctx context.Context, packs []finishedPack) error {
	if len(packs) > 0 && packs[0].blocks == nil {
		return r.reclaimUnlisted(ctx, packs)
	}
	for _, p := range packs {
		live, gone := false, false
		err := r.view(func(txn *badger.Txn) error {
			// A merge of small packs may have dropped it already.
			if _, err := txn.Get(packKey(p.id)); errors.Is(err, badger.ErrKeyNotFound) {
				gone = true
				return nil
			}
			for _, h := range p.blocks {
				rec, err := getBlockRecord(txn, h)
				if err != nil {
					// Unknown is not dead: the pack stays for gc.
					r.log.Warn("an aborted writer's pack is kept: a block record is unreadable",
						"pack", fmt.Sprintf("%016x", p.id), "block", h.Short(), "err", err)
					live = true
					return nil
				}
				if rec.Pack == p.id && rec.Refs > 0 {
					live = true
					return nil
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if live || gone {
			continue
		}
		if err := r.dropPack(ctx, nil, p.id, &packUse{dead: p.blocks}, &GCStats{}); err != nil {
			return err
		}
	}
	return nil
}

// reclaimUnlisted is reclaimPacks for packs whose blocks were not listed
// (reclaimListMax): a scan of the block records finds the packs a block
// of which is referenced, which stay, and a second drops the others'
// records chunk by chunk, so that what it holds does not grow with them.
func (r *Repo) reclaimUnlisted(ctx context.Context, packs []finishedPack) error {
	live := make(map[uint64]bool, len(packs))
	for _, p := range packs {
		live[p.id] = false
	}
	err := r.scanBlocks(func(_ Hash, rec blockRecord) error {
		if l, ok := live[rec.Pack]; ok && !l && rec.Refs > 0 {
			live[rec.Pack] = true
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	drop := map[uint64][]Hash{}
	for id, l := range live {
		if !l {
			drop[id] = nil
		}
	}
	if len(drop) == 0 {
		return nil
	}
	dead, n := map[uint64][]Hash{}, 0
	flush := func() error {
		for id, hs := range dead {
			if err := r.dropDead(ctx, nil, id, hs, &GCStats{}); err != nil {
				return err
			}
		}
		clear(dead)
		n = 0
		return nil
	}
	err = r.scanBlocks(func(h Hash, rec blockRecord) error {
		if _, ok := drop[rec.Pack]; !ok {
			return nil
		}
		dead[rec.Pack] = append(dead[rec.Pack], h)
		if n++; n == chunkSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	// Their records are gone: the packs go with no block to drop.
	return r.dropPacks(ctx, nil, drop, &GCStats{})
}
