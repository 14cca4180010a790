package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DeleteSnapshot deletes one snapshot of a volume. Blocks only it held lose
// their last reference (gc reclaims them); blocks later snapshots link to
// pass to the next surviving snapshot, so "the earliest snapshot that holds
// this block" stays true. It fails with ErrBusy while a snapshot of the
// volume runs, with a LatestRefusedError for "latest", and with a
// HeldError while the snapshot is held.
func (r *Repo) DeleteSnapshot(ctx context.Context, volume, name string) error {
	return r.DropSnapshot(ctx, volume, name, DeleteOptions{})
}

// DeleteOptions change what DeleteSnapshot refuses.
type DeleteOptions struct {
	// IgnoreHold deletes a held snapshot: for repair, which drops a
	// snapshot whose top tree is lost, so that nothing is left to keep.
	IgnoreHold bool
	// InTrashSince, when set, deletes the snapshot only while it is in
	// the trash from the deletion made then: emptying what was listed
	// does not take one restored and deleted again meanwhile, whose days
	// in the trash began anew.
	InTrashSince time.Time
}

// DropSnapshot is DeleteSnapshot with options. A snapshot in the trash is
// named by its TrashRef ("NAME~SEQ").
func (r *Repo) DropSnapshot(ctx context.Context, volume, name string, opts DeleteOptions) error {
	if err := r.refuseLatest(ctx, "delete", volume, name); err != nil {
		return err
	}
	release, err := r.claimVolume(volume, "deletion of "+volume+"/"+name)
	if err != nil {
		return err
	}
	defer release()
	if err := r.takeOver(ctx, volume); err != nil {
		return err
	}
	// A snapshot in the trash is named by its TrashRef.
	var snap *Snapshot
	_, _, inTrash := parseTrashRef(name)
	if inTrash {
		snap, err = r.TrashedSnapshot(ctx, volume, name)
	} else {
		snap, err = r.Snapshot(ctx, volume, name)
	}
	if err != nil {
		return err
	}
	// A deletion this process marked and did not finish (its caller went
	// away) is finished first: a new mark would leave it half done. If it
	// was this snapshot's, it is the deletion asked for.
	if v, err := r.Volume(ctx, volume); err != nil {
		return err
	} else if v.Deleting != 0 && v.Writer == r.info.Replica {
		r.log.Info("finishing interrupted deletion", "volume", volume, "seq", v.Deleting)
		if err := r.finishDelete(ctx, volume); err != nil {
			return fmt.Errorf("volume %s: finish an interrupted deletion: %w", volume, err)
		}
		if v.Deleting == snap.Seq {
			release()
			r.changed(volume, name)
			return nil
		}
	}
	err = r.commit(ctx, func(m metaTxn) error {
		// Read in the transaction that marks the volume: a hold placed
		// meanwhile makes this one conflict and look again.
		var cur Snapshot
		if err := getJSON(m.txn, snapshotKey(snap.VolumeID, snap.Seq), &cur); err != nil {
			return fmt.Errorf("snapshot %s/%s: %w", volume, name, err)
		}
		if !opts.IgnoreHold {
			if err := cur.Refusal(); err != nil {
				return err
			}
		}
		if inTrash && (cur.Trashed == nil || !opts.InTrashSince.IsZero() && !cur.Trashed.Time.Equal(opts.InTrashSince)) {
			return fmt.Errorf("snapshot %s/%s was restored from the trash meanwhile: %w", volume, cur.Name, ErrNotFound)
		}
		return m.updateVolume(volume, func(v *Volume) error {
			if err := v.idle(r.info.Replica); err != nil {
				return err
			}
			v.Deleting, v.Writer, v.Lease = snap.Seq, r.info.Replica, r.leaseEnd()
			return nil
		})
	})
	if err != nil {
		return err
	}
	// Held from the mark on: finishDelete may first wait for commitMu.
	defer r.hold(r.work(volume, func(cur *Volume) bool { return cur.Deleting == snap.Seq }))()
	if err := r.finishDelete(ctx, volume); err != nil {
		return fmt.Errorf("delete snapshot %s/%s: %w", volume, name, err)
	}
	release()
	r.changed(volume, name)
	return nil
}

// LatestRefusedError refuses to destroy the snapshot named "latest". What
// latest means changes whenever a snapshot lands (an automatic one, say),
// so between a user's look and the operation it may come to mean another
// snapshot than the one meant: destructive operations take explicit names
// only. It is an ErrInvalid.
type LatestRefusedError struct {
	// Op is the operation refused, as a verb: "delete".
	Op     string
	Volume string
	// Latest is the snapshot latest meant when refused, "" if none.
	Latest string
}

func (e *LatestRefusedError) Error() string {
	msg := fmt.Sprintf("refusing to %s \"latest\": name the snapshot", e.Op)
	if e.Latest != "" {
		msg += fmt.Sprintf("; latest is now %q", e.Latest)
	}
	return msg
}

// Is makes the error an ErrInvalid.
func (e *LatestRefusedError) Is(target error) bool { return target == ErrInvalid }

// refuseLatest is the one check of every operation that destroys a
// snapshot its caller names: "latest" is refused, naming what it means
// now so that the caller can name that.
func (r *Repo) refuseLatest(ctx context.Context, op, volume, name string) error {
	if name != "latest" {
		return nil
	}
	e := &LatestRefusedError{Op: op, Volume: volume}
	if s, err := r.Snapshot(ctx, volume, name); err == nil {
		e.Latest = s.Name
	}
	return e
}

// neighbours returns the surviving snapshots just before and after seq
// (0 when there is none).
func (r *Repo) neighbours(vol, seq uint64) (prev, next uint64, err error) {
	err = r.view(func(txn *badger.Txn) error {
		for _, reverse := range []bool{true, false} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: snapshotPrefix(vol), Reverse: reverse})
			if reverse {
				it.Seek(snapshotKey(vol, seq-1))
			} else {
				it.Seek(snapshotKey(vol, seq+1))
			}
			if it.Valid() {
				_, s, err := parseSnapshotKey(it.Item().Key())
				if err != nil {
					it.Close()
					return err
				}
				if reverse {
					prev = s
				} else {
					next = s
				}
			}
			it.Close()
		}
		return nil
	})
	return prev, next, err
}

// finishDelete carries out the deletion marked in the volume's Deleting.
// Each block's changes commit together with the removal of its delta
// record, so a deletion interrupted by a crash resumes where it stopped.
func (r *Repo) finishDelete(ctx context.Context, volume string) error {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	var v Volume
	if err := r.view(func(txn *badger.Txn) error { return getJSON(txn, volumeKey(volume), &v) }); err != nil {
		return err
	}
	k := v.Deleting
	if k == 0 {
		return nil
	}
	w := r.work(volume, func(cur *Volume) bool { return cur.Deleting == k })
	defer r.hold(w)()
	prev, next, err := r.neighbours(v.ID, k)
	if err != nil {
		return err
	}
	err = r.eachDeltaChunk(ctx, v.ID, k, func(hs []Hash, _ []blockDelta) error {
		_, err := r.applyPlanned(ctx, w, hs, func(txn *badger.Txn, h Hash, _ *planTally) ([]kv, error) {
			return planDelete(txn, v.ID, k, next, h)
		})
		return err
	})
	if err != nil {
		return err
	}
	// The next snapshot holds, from now on, the blocks k held that it
	// keeps, and no longer those whose runs merged into an earlier one:
	// its record's figures are counted again from its runs. (Repeated
	// after a crash, this counts the same.)
	var nextHeld Holding
	if next != 0 {
		if nextHeld, err = r.holdings(v.ID, next, 0, false); err != nil {
			return err
		}
	}
	return r.commitWork(ctx, w, func(m metaTxn) error {
		var snap Snapshot
		if err := getJSON(m.txn, snapshotKey(v.ID, k), &snap); err != nil {
			return err
		}
		if err := m.deleteSnapshot(&snap); err != nil {
			return err
		}
		if next != 0 {
			var n Snapshot
			if err := getJSON(m.txn, snapshotKey(v.ID, next), &n); err != nil {
				return err
			}
			n.Parent = prev
			n.Stats.AddedBytes, n.Stats.AddedBlocks = nextHeld.AddedBytes, nextHeld.AddedBlocks
			if err := m.putSnapshot(&n); err != nil {
				return err
			}
		}
		return m.updateVolume(volume, func(cur *Volume) error {
			cur.Deleting, cur.Writer, cur.Lease = 0, "", time.Time{} // the work done: no one holds it
			if cur.Head == k {
				cur.Head = prev
			}
			return nil
		})
	})
}

// planDelete plans the changes for one block of the delta of snapshot k,
// whose next surviving snapshot is next (0: k is the head).
func planDelete(txn *badger.Txn, vol, k, next uint64, h Hash) ([]kv, error) {
	d, err := getDelta(txn, vol, k, h)
	if err != nil {
		return nil, err
	}
	writes := []kv{{deltaKey(vol, k, h), nil}}
	start, iv, found, err := lastInterval(txn, vol, h, k)
	if err != nil {
		return nil, err
	}
	inK := found && (iv.End == 0 || iv.End > k)
	endsAtK := found && iv.End == k
	dropRun := func() error {
		ref, err := dropRef(txn, h)
		writes = append(writes, ref)
		return err
	}
	switch {
	case inK && start == k:
		// k holds the block: the next snapshot inherits it, if it has it.
		writes = append(writes, kv{intervalKey(vol, h, k), nil})
		if next != 0 && (iv.End == 0 || iv.End > next) {
			writes = append(writes, kv{intervalKey(vol, h, next), intervalRecord{End: iv.End, Count: iv.Count}.encode()})
		} else if err := dropRun(); err != nil {
			return nil, err
		}
	case inK && next == 0:
		// The head goes: the run's count becomes the previous snapshot's.
		count := int64(iv.Count) - d.Count
		if count <= 0 {
			return nil, fmt.Errorf("reference count below zero: %w", ErrCorrupt)
		}
		writes = append(writes, kv{intervalKey(vol, h, start), intervalRecord{End: iv.End, Count: uint64(count)}.encode()})
	case endsAtK && next == 0:
		// k dropped the block; without k the previous snapshot is the head
		// and its run is open again.
		writes = append(writes, kv{intervalKey(vol, h, start), intervalRecord{Count: uint64(-d.Count)}.encode()})
	case endsAtK:
		// The previous snapshot had it, k did not. If the next one has it
		// again, the two runs become one, held by the earlier snapshot.
		merged := intervalRecord{End: next, Count: iv.Count}
		if nextRun, ok, err := getInterval(txn, vol, h, next); err != nil {
			return nil, err
		} else if ok {
			merged = intervalRecord{End: nextRun.End, Count: nextRun.Count}
			writes = append(writes, kv{intervalKey(vol, h, next), nil})
			if err := dropRun(); err != nil {
				return nil, err
			}
		}
		writes = append(writes, kv{intervalKey(vol, h, start), merged.encode()})
	}
	if next != 0 {
		// The next snapshot's delta becomes relative to k's parent.
		nd, err := getDelta(txn, vol, next, h)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		nd.Count += d.Count
		nd.Length = max(nd.Length, d.Length)
		if nd.Count == 0 {
			writes = append(writes, kv{deltaKey(vol, next, h), nil})
		} else {
			writes = append(writes, kv{deltaKey(vol, next, h), nd.encode()})
		}
	}
	return writes, nil
}

func getDelta(txn *badger.Txn, vol, seq uint64, h Hash) (blockDelta, error) {
	item, err := txn.Get(deltaKey(vol, seq, h))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return blockDelta{}, ErrNotFound
	} else if err != nil {
		return blockDelta{}, err
	}
	var d blockDelta
	err = item.Value(func(v []byte) (e error) { d, e = decodeBlockDelta(v); return e })
	return d, err
}

func getInterval(txn *badger.Txn, vol uint64, h Hash, start uint64) (intervalRecord, bool, error) {
	item, err := txn.Get(intervalKey(vol, h, start))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return intervalRecord{}, false, nil
	} else if err != nil {
		return intervalRecord{}, false, err
	}
	var iv intervalRecord
	err = item.Value(func(v []byte) (e error) { iv, e = decodeIntervalRecord(v); return e })
	return iv, err == nil, err
}
