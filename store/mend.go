package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/dgraph-io/badger/v4"
)

// What check and repair (store/check) ask of the store itself: the
// consistency of what only it can read, and the few writes that mend it.

// VerifyMetadata checks every block of every metadata table against its
// checksum. A damaged table is an error wrapping ErrDamagedMetadata that
// names it: its records read as absent, so nothing may act on their
// absence.
func (x Index) VerifyMetadata() error { return x.r.verifyMetadata() }

// PackProblems finds recorded packs that are missing or shorter than
// recorded; with unrecorded (over damaged metadata, which Open then
// leaves alone) pack files no record names too. Each is a sentence.
func (x Index) PackProblems(ctx context.Context, unrecorded bool) ([]string, error) {
	r := x.r
	var out []string
	sizes, err := r.packSizes()
	if err != nil {
		return nil, err
	}
	if unrecorded {
		ids, err := r.blocks.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if _, ok := sizes[id]; !ok {
				out = append(out, fmt.Sprintf("pack %016x: no readable pack record names it (kept: the damaged metadata cannot tell whether it is used)", id))
			}
		}
	}
	for id, size := range sizes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if got, err := r.blocks.PackSize(ctx, id); err != nil || uint64(got) < size {
			out = append(out, fmt.Sprintf("pack %016x: missing or short (%d of %d bytes): %v", id, got, size, err))
		}
	}
	return out, nil
}

// RefProblems compares every block's reference count with the chain runs
// that reference it, both read in one view of the metadata, so that a
// snapshot committing meanwhile is never a problem. Each is a sentence.
func (x Index) RefProblems(ctx context.Context) ([]string, error) {
	var out []string
	err := x.r.view(func(txn *badger.Txn) error {
		runs, err := countRuns(ctx, txn)
		if err != nil {
			return err
		}
		err = eachBlock(txn, func(h Hash, rec blockRecord, err error) error {
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("block %s: unreadable record", h.Short()))
				return nil
			case rec.Refs != runs[h]:
				out = append(out, fmt.Sprintf("block %s: reference count %d, but %d chain runs", h.Short(), rec.Refs, runs[h]))
			}
			delete(runs, h)
			return nil
		})
		if err != nil {
			return err
		}
		for h := range runs {
			out = append(out, fmt.Sprintf("block %s: chain runs reference it but it has no record", h.Short()))
		}
		return ctx.Err()
	})
	return out, err
}

// countRuns counts the chain runs that reference each block.
func countRuns(ctx context.Context, txn *badger.Txn) (map[Hash]uint64, error) {
	runs := map[Hash]uint64{}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixInterval}, PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		_, h, _, err := parseIntervalKey(it.Item().Key())
		if err != nil {
			return nil, err
		}
		runs[h]++
	}
	return runs, ctx.Err()
}

// runsNow counts the chain runs in a view of their own.
func (r *Repo) runsNow(ctx context.Context) (runs map[Hash]uint64, err error) {
	err = r.view(func(txn *badger.Txn) error {
		runs, err = countRuns(ctx, txn)
		return err
	})
	return runs, err
}

// ReadRecorded reads block h from where its record says into p, checked
// against its hash, past every cache: what check reads to know the data
// is there.
func (x Index) ReadRecorded(ctx context.Context, h Hash, p []byte) (int, error) {
	return x.r.readRecorded(ctx, h, p)
}

// EachVolume calls fn for every volume record as stored (images' and
// those being removed too, with what runs on each) with its snapshots,
// oldest first.
func (x Index) EachVolume(ctx context.Context, fn func(v *Volume, snaps []Snapshot) error) error {
	// Read with the claims held still: a volume whose record shows an
	// operation under way and that no one claims was cut short by a crash.
	x.r.mu.Lock()
	vols, err := x.r.allVolumes()
	for i := range vols {
		vols[i].Running = x.r.running[vols[i].Name]
	}
	x.r.mu.Unlock()
	if err != nil {
		return err
	}
	for i := range vols {
		if err := ctx.Err(); err != nil {
			return err
		}
		snaps, err := x.r.snapshotsOf(vols[i].ID)
		if err != nil {
			return err
		}
		if err := fn(&vols[i], snaps); err != nil {
			return err
		}
	}
	return nil
}

// Mender makes the writes that repair the indexes.
type Mender struct {
	r *Repo
	// sweep fences the repair's commits, in an object store (lease.go).
	sweep *work
}

// Mend runs fn with the gc lock held: no snapshot and no gc runs
// meanwhile. A deletion may (it changes chain runs under the commit lock,
// which each of the Mender's writes takes, counting the runs under it).
// Over a damaged metadata table, whose records read as absent, mending
// would destroy what is still there: then fn is not run and the error
// wraps ErrDamagedMetadata.
func (x Index) Mend(ctx context.Context, fn func(m Mender) error) error {
	if err := x.r.verifyMetadata(); err != nil {
		return fmt.Errorf("nothing changed: %w", err)
	}
	x.r.gcMu.Lock()
	defer x.r.gcMu.Unlock()
	w, release, err := x.r.leaseSweep(ctx, "a repair (check --repair)")
	if err != nil {
		return fmt.Errorf("nothing changed: %w", err)
	}
	defer release()
	return fn(Mender{r: x.r, sweep: w})
}

// FixRefs sets every block record's reference count to the chain runs
// that reference it, and returns how many it changed.
func (m Mender) FixRefs(ctx context.Context) (uint64, error) {
	mark := m.r.foreignMark()
	r := m.r
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	runs, err := r.runsNow(ctx)
	if err != nil {
		return 0, err
	}
	var writes []kv
	err = r.scanBlocks(func(h Hash, rec blockRecord) error {
		if rec.Refs != runs[h] {
			rec.Refs = runs[h]
			writes = append(writes, kv{key: blockKey(h), val: rec.encode()})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var fixed uint64
	for len(writes) > 0 {
		if err := ctx.Err(); err != nil {
			return fixed, err
		}
		chunk := writes[:min(chunkSize, len(writes))]
		writes = writes[len(chunk):]
		if err := r.applyWrites(ctx, mark, m.sweep, chunk); err != nil {
			return fixed, err
		}
		fixed += uint64(len(chunk))
	}
	return fixed, nil
}

// Block is a block's bytes and their hash.
type Block struct {
	Hash Hash
	Data []byte
}

// StoreAgain writes blocks whose stored bytes are damaged or missing into
// a new pack and points their records there, each with the reference
// count of its chain runs. A block whose bytes do not match its hash is
// refused.
func (m Mender) StoreAgain(ctx context.Context, blocks []Block) error {
	mark := m.r.foreignMark()
	if len(blocks) == 0 {
		return nil
	}
	r := m.r
	for _, b := range blocks {
		if r.ids.Sum(b.Data) != b.Hash {
			return fmt.Errorf("block %s: the bytes offered do not match it: %w", b.Hash.Short(), ErrInvalid)
		}
	}
	pack, err := r.newPack(ctx)
	if err != nil {
		return err
	}
	for _, b := range blocks {
		stored, release := r.sealStored(b.Hash, CodecRaw, b.Data)
		_, err := pack.add(b.Hash, stored, CodecRaw)
		release()
		if err != nil {
			pack.abort()
			return err
		}
	}
	if _, err := pack.finish(ctx); err != nil {
		return err
	}
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	runs, err := r.runsNow(ctx)
	if err != nil {
		return err
	}
	for start := 0; start < len(pack.blocks); start += chunkSize {
		chunk := pack.blocks[start:min(start+chunkSize, len(pack.blocks))]
		writes := make([]kv, len(chunk))
		for i, b := range chunk {
			rec := blockRecord{Pack: pack.id, Offset: uint64(b.offset), Length: b.length, Refs: runs[b.hash]}
			writes[i] = kv{key: blockKey(b.hash), val: rec.encode()}
		}
		if err := r.applyWrites(ctx, mark, m.sweep, writes); err != nil {
			return err
		}
	}
	return nil
}

// DropLostPacks forgets recorded packs that are missing or short once no
// referenced block lies in them any more (their blocks were stored again,
// or were garbage).
func (m Mender) DropLostPacks(ctx context.Context) error {
	r := m.r
	sizes, err := r.packSizes()
	if err != nil {
		return err
	}
	used := map[uint64]bool{}
	dead := map[uint64][]Hash{}
	if err := r.scanBlocks(func(h Hash, rec blockRecord) error {
		if rec.Refs > 0 {
			used[rec.Pack] = true
		} else {
			dead[rec.Pack] = append(dead[rec.Pack], h)
		}
		return nil
	}); err != nil {
		return err
	}
	for id, size := range sizes {
		// Only a pack known to be missing or short: a store that did not
		// answer says nothing of it.
		if got, err := r.blocks.PackSize(ctx, id); (errors.Is(err, fs.ErrNotExist) || (err == nil && uint64(got) < size)) && !used[id] {
			if err := r.dropPack(ctx, m.sweep, id, &packUse{dead: dead[id]}, &GCStats{}); err != nil {
				return err
			}
		}
	}
	return nil
}
