package store

import "context"

// packBuilder writes one new pack, the one way every writer of packs (a
// snapshot, gc's rewrite, repair) does. Its order is what keeps a crash
// from losing anything: the pack's bytes are made durable (the file, then
// its directory: PackWriter.Finish), then the pack is recorded, and only
// then may block records point into it. A crash before the record leaves
// a pack file that no record names, which the next open deletes; a crash
// after it leaves a recorded pack that no block names yet, which gc
// drops. No block record ever names a pack that could vanish.
type packBuilder struct {
	r      *Repo
	id     uint64
	w      PackWriter
	blocks []pendingBlock
}

// packCrash, when set (by tests only), runs at each step of finish after
// which a crash must leave the repository whole.
var packCrash func(step string)

// newPack starts a pack under a new id.
func (r *Repo) newPack(ctx context.Context) (*packBuilder, error) {
	var id uint64
	if err := r.commit(ctx, func(m metaTxn) (err error) { id, err = m.nextID("pack"); return err }); err != nil {
		return nil, err
	}
	w, err := r.blocks.Create(ctx, id)
	if err != nil {
		return nil, err
	}
	return &packBuilder{r: r, id: id, w: w}, nil
}

// add appends a block's bytes, kept with codec, and returns where they
// went.
func (p *packBuilder) add(h Hash, stored []byte, codec Codec) (pendingBlock, error) {
	off, err := p.w.Append(stored)
	if err != nil {
		return pendingBlock{}, err
	}
	b := pendingBlock{hash: h, offset: off, length: uint32(len(stored)), codec: codec}
	p.blocks = append(p.blocks, b)
	return b, nil
}

// size is the bytes appended so far.
func (p *packBuilder) size() int64 { return p.w.Size() }

// abort removes the pack, unfinished.
func (p *packBuilder) abort() { p.w.Abort() }

// finish makes the pack durable and records it, and returns its size; the
// caller records its blocks after. A pack that cannot be made durable is
// removed, and so is one whose record could not be written (cancelled,
// say): no block names it yet. One a crash left durable but not recorded
// is removed at the next open.
func (p *packBuilder) finish(ctx context.Context) (int64, error) {
	size := p.w.Size()
	if err := p.w.Finish(ctx); err != nil {
		p.w.Abort()
		return 0, err
	}
	crashPoint("durable")
	if err := p.r.commit(ctx, func(m metaTxn) error { return m.putPack(p.id, size) }); err != nil {
		p.r.blocks.Remove(context.WithoutCancel(ctx), p.id)
		return 0, err
	}
	crashPoint("recorded")
	return size, nil
}

func crashPoint(step string) {
	if packCrash != nil {
		packCrash(step)
	}
}
