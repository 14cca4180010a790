package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The one metadata write path. Every change to the repository's metadata
// is made in this file: records that must change together go through a
// metaTxn inside commit; large sets of independent records written while
// a snapshot runs (its trees, its delta journal) go through a metaBatch.
// Reads stay where they are, with view and the get helpers. A backend
// that records, replicates or fences mutations (a log in a bucket, say)
// has one place to do it; TestMetadataWritesInOneFile holds the rule.

// metaTxn is one read-write transaction over the metadata. Its txn reads
// as a view's does, seeing the writes made before in the same
// transaction; its methods write.
type metaTxn struct{ txn *badger.Txn }

// commit runs fn in one transaction, which commits when fn returns nil
// and is dropped otherwise. A panic raised inside badger (reading a
// damaged table) becomes an error naming the table.
func (r *Repo) commit(ctx context.Context, fn func(m metaTxn) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer r.recoverBadger(&err)
	return r.db.Update(func(txn *badger.Txn) error { return fn(metaTxn{txn}) })
}

// syncMeta makes every committed change durable. Commits are not synced
// one by one; a caller about to act on them outside the metadata (remove
// a pack file, report a snapshot done) syncs first.
func (r *Repo) syncMeta() error { return r.db.Sync() }

// setSchema records that the metadata has this chainfs's schema.
func (m metaTxn) setSchema() error {
	return m.txn.Set(metaSchemaKey, binary.BigEndian.AppendUint64(nil, SchemaVersion))
}

// nextID allocates the next number of a named counter.
func (m metaTxn) nextID(name string) (uint64, error) {
	var n uint64
	item, err := m.txn.Get(counterKey(name))
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("counter %s: %w", name, ErrCorrupt)
			}
			n = binary.BigEndian.Uint64(v)
			return nil
		}); err != nil {
			return 0, err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return 0, err
	}
	n++
	return n, m.txn.Set(counterKey(name), binary.BigEndian.AppendUint64(nil, n))
}

// putVolume writes a volume's record.
func (m metaTxn) putVolume(v *Volume) error { return m.setJSON(volumeKey(v.Name), v) }

// updateVolume reads a volume's record, lets fn change it and writes it.
func (m metaTxn) updateVolume(name string, fn func(*Volume) error) error {
	var v Volume
	if err := getJSON(m.txn, volumeKey(name), &v); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if err := fn(&v); err != nil {
		return err
	}
	return m.putVolume(&v)
}

// updateVolume changes a volume record in a transaction of its own.
func (r *Repo) updateVolume(ctx context.Context, name string, fn func(*Volume) error) error {
	return r.commit(ctx, func(m metaTxn) error { return m.updateVolume(name, fn) })
}

// deleteVolume removes a volume's record (its snapshots are removed
// before, by deletePrefix).
func (m metaTxn) deleteVolume(name string) error { return m.txn.Delete(volumeKey(name)) }

// putSnapshot writes a snapshot's record and the index from its name.
func (m metaTxn) putSnapshot(s *Snapshot) error {
	if err := m.setJSON(snapshotKey(s.VolumeID, s.Seq), s); err != nil {
		return err
	}
	return m.txn.Set(snapNameKey(s.VolumeID, s.Name), binary.BigEndian.AppendUint64(nil, s.Seq))
}

// deleteSnapshot removes a snapshot's record and its name.
func (m metaTxn) deleteSnapshot(s *Snapshot) error {
	if err := m.txn.Delete(snapshotKey(s.VolumeID, s.Seq)); err != nil {
		return err
	}
	return m.txn.Delete(snapNameKey(s.VolumeID, s.Name))
}

// putBlock writes a block's record.
func (m metaTxn) putBlock(h Hash, rec blockRecord) error {
	return m.txn.Set(blockKey(h), rec.encode())
}

// deleteBlock removes a block's record.
func (m metaTxn) deleteBlock(h Hash) error { return m.txn.Delete(blockKey(h)) }

// addRefs changes a block's reference count.
func (m metaTxn) addRefs(h Hash, n int64) error {
	rec, err := getBlockRecord(m.txn, h)
	if err != nil {
		return err
	}
	if n < 0 && rec.Refs < uint64(-n) {
		return fmt.Errorf("block reference count below zero: %w", ErrCorrupt)
	}
	rec.Refs = uint64(int64(rec.Refs) + n)
	return m.putBlock(h, rec)
}

// deleteInterval removes one run of a block in a volume, without touching
// the block's reference count.
func (m metaTxn) deleteInterval(vol uint64, h Hash, start uint64) error {
	return m.txn.Delete(intervalKey(vol, h, start))
}

// putPack records a durable pack file and its size.
func (m metaTxn) putPack(id uint64, size int64) error {
	return m.txn.Set(packKey(id), binary.BigEndian.AppendUint64(nil, uint64(size)))
}

// deletePack removes a pack's record (its file goes after).
func (m metaTxn) deletePack(id uint64) error { return m.txn.Delete(packKey(id)) }

// deleteRecord removes a record of a package built on the store
// (records.go writes them with setJSON).
func (m metaTxn) deleteRecord(key []byte) error { return m.txn.Delete(key) }

func (m metaTxn) setJSON(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return m.txn.Set(key, b)
}

// kv is one planned write of a chain update (chain.go, delete.go); a nil
// val deletes the key.
type kv struct{ key, val []byte }

// apply makes planned writes.
func (m metaTxn) apply(writes []kv) error {
	for _, w := range writes {
		var err error
		if w.val == nil {
			err = m.txn.Delete(w.key)
		} else {
			err = m.txn.Set(w.key, w.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyWrites makes planned writes in one transaction.
func (r *Repo) applyWrites(ctx context.Context, writes []kv) error {
	return r.commit(ctx, func(m metaTxn) error { return m.apply(writes) })
}

// deletePrefix removes every key under prefix, in transactions small
// enough for badger.
func (r *Repo) deletePrefix(ctx context.Context, prefix []byte) error {
	return r.drainPrefix(ctx, prefix, func(keys [][]byte) error {
		return r.commit(ctx, func(m metaTxn) error {
			for _, k := range keys {
				if err := m.txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// drainPrefix hands the keys under prefix to remove, a chunk at a time,
// until none is left: remove must take away the keys it is given. It
// honours ctx between chunks.
func (r *Repo) drainPrefix(ctx context.Context, prefix []byte, remove func(keys [][]byte) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var keys [][]byte
		err := r.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < chunkSize; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		if err := remove(keys); err != nil {
			return err
		}
	}
}

// metaBatch writes many independent records without one transaction's
// limits: what it holds lands in several commits, in no promised order,
// at flush at the latest. Its records are found by nothing until a
// commit names them (a tree by a snapshot record, a delta by the
// volume's Applying).
type metaBatch struct{ wb *badger.WriteBatch }

func (r *Repo) newBatch() *metaBatch { return &metaBatch{wb: r.db.NewWriteBatch()} }

// putTree writes a tree or content-list blob.
func (b *metaBatch) putTree(h Hash, blob []byte) error { return b.wb.Set(treeKey(h), blob) }

// putDelta writes one block's entry of a snapshot's delta journal.
func (b *metaBatch) putDelta(vol, seq uint64, h Hash, d blockDelta) error {
	return b.wb.Set(deltaKey(vol, seq, h), d.encode())
}

// flush commits what the batch holds; it can be used no more after.
func (b *metaBatch) flush() error { return b.wb.Flush() }

// cancel drops what the batch has not committed; after flush it does
// nothing.
func (b *metaBatch) cancel() { b.wb.Cancel() }
