package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

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
type metaTxn struct {
	txn *badger.Txn
	// journal, when set, receives every write too, for the journal of a
	// repository in an object store (journal.go).
	journal *[]kv
}

// set writes key's value.
func (m metaTxn) set(key, val []byte) error {
	if val == nil {
		val = []byte{} // a nil value is a deletion to the journal and to apply
	}
	if m.journal != nil {
		*m.journal = append(*m.journal, kv{key: key, val: val})
	}
	return m.txn.Set(key, val)
}

// del deletes key.
func (m metaTxn) del(key []byte) error {
	if m.journal != nil {
		*m.journal = append(*m.journal, kv{key: key})
	}
	return m.txn.Delete(key)
}

// commit runs fn in one transaction, which commits when fn returns nil
// and is dropped otherwise. fn may run more than once (in a repository in
// an object store, again after another writer's commit came first), so it
// reads what it changes through m and changes nothing outside m that a
// second run would not set again. A panic raised inside badger (reading a
// damaged table) becomes an error naming the table.
func (r *Repo) commit(ctx context.Context, fn func(m metaTxn) error) (err error) {
	return r.commitPlanned(ctx, anyMark, fn)
}

// commitPlanned is commit for writes planned in an earlier read, after
// foreignMark gave mark: in a repository in an object store, it is
// refused when another writer's commit came in since (commitJournaled).
func (r *Repo) commitPlanned(ctx context.Context, mark uint64, fn func(m metaTxn) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer r.recoverBadger(&err)
	if r.journal != nil {
		return r.commitJournaled(ctx, mark, fn)
	}
	// Transactions that touched the same key at once (two snapshots
	// taking pack ids) conflict: the one refused runs again, as a commit
	// in an object store does when another host's came first (fn runs
	// again from what it reads).
	for try := 1; ; try++ {
		err = r.db.Update(func(txn *badger.Txn) error { return fn(metaTxn{txn: txn}) })
		if !errors.Is(err, badger.ErrConflict) || try == maxCommitTries {
			return err
		}
	}
}

// maxCommitTries bounds how often a local commit that conflicted runs.
const maxCommitTries = 10

// updateJournaled is commit's transaction in a repository in an object
// store (commitJournaled): fn's writes are gathered as it makes them, and
// send, given them, sends them as the next journal entry and returns its
// number, which the transaction records with them. Nothing is written
// when fn or send fails.
func (r *Repo) updateJournaled(fn func(m metaTxn) error, send func(muts []kv) (uint64, error)) error {
	return r.db.Update(func(txn *badger.Txn) error {
		var muts []kv
		if err := fn(metaTxn{txn: txn, journal: &muts}); err != nil {
			return err
		}
		if len(muts) == 0 {
			return nil
		}
		seq, err := send(muts)
		if err != nil {
			return err
		}
		return txn.Set(journalKey, binary.BigEndian.AppendUint64(nil, seq))
	})
}

// loadEntries writes, into the empty replica, the keys and values read
// gives it (a checkpoint's, as of journal entry seq), and then records
// seq: once read has returned nil, never before, so that a load cut
// short or refused leaves a replica that says it holds nothing.
func (r *Repo) loadEntries(seq uint64, read func(put func(k, v []byte) error) error) error {
	wb := r.db.NewWriteBatch()
	defer wb.Cancel()
	if err := read(func(k, v []byte) error { return wb.Set(k, v) }); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return r.db.Update(func(txn *badger.Txn) error {
		return txn.Set(journalKey, binary.BigEndian.AppendUint64(nil, seq))
	})
}

// dropAllMeta empties the replica's metadata: a checkpoint's load starts
// from nothing.
func (r *Repo) dropAllMeta() error { return r.db.DropAll() }

// applyEntry applies journal entry seq, another writer's commit or one
// of this replica's it missed, with its number, in one transaction.
func (r *Repo) applyEntry(seq uint64, muts []kv) error {
	return r.db.Update(func(txn *badger.Txn) error {
		if err := (metaTxn{txn: txn}).apply(muts); err != nil {
			return err
		}
		return txn.Set(journalKey, binary.BigEndian.AppendUint64(nil, seq))
	})
}

// syncMeta makes every committed change durable. Commits are not synced
// one by one; a caller about to act on them outside the metadata (remove
// a pack file, report a snapshot done) syncs first.
func (r *Repo) syncMeta() error { return r.db.Sync() }

// setSchema records that the metadata has schema s.
func (m metaTxn) setSchema(s uint64) error {
	return m.set(metaSchemaKey, binary.BigEndian.AppendUint64(nil, s))
}

// raiseSchema raises the metadata's schema to SchemaVersion, in the
// transaction that first writes what an older chainfs would mishandle
// (a hold, a snapshot in the trash). Its read conflicts only with the one
// transaction that raises it.
func (m metaTxn) raiseSchema() error {
	item, err := m.txn.Get(metaSchemaKey)
	if err != nil {
		return fmt.Errorf("schema record: %w", err)
	}
	var s uint64
	if err := item.Value(func(v []byte) error {
		if len(v) == 8 {
			s = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		return err
	}
	if s >= SchemaVersion {
		return nil
	}
	return m.setSchema(SchemaVersion)
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
	return n, m.set(counterKey(name), binary.BigEndian.AppendUint64(nil, n))
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
func (m metaTxn) deleteVolume(name string) error { return m.del(volumeKey(name)) }

// putSnapshot writes a snapshot's record and the index from its name;
// a snapshot in the trash has no name in the index (another snapshot may
// have taken it), only its entry in the trash's.
func (m metaTxn) putSnapshot(s *Snapshot) error {
	if err := m.setJSON(snapshotKey(s.VolumeID, s.Seq), s); err != nil {
		return err
	}
	if s.Trashed != nil {
		return m.set(trashKey(s.VolumeID, s.Seq), nil)
	}
	return m.set(snapNameKey(s.VolumeID, s.Name), binary.BigEndian.AppendUint64(nil, s.Seq))
}

// deleteSnapshot removes a snapshot's record and its name, or its entry in
// the trash (whose name another snapshot may have taken).
func (m metaTxn) deleteSnapshot(s *Snapshot) error {
	if err := m.del(snapshotKey(s.VolumeID, s.Seq)); err != nil {
		return err
	}
	if s.Trashed != nil {
		return m.del(trashKey(s.VolumeID, s.Seq))
	}
	return m.del(snapNameKey(s.VolumeID, s.Name))
}

// putBlock writes a block's record.
func (m metaTxn) putBlock(h Hash, rec blockRecord) error {
	return m.set(blockKey(h), rec.encode())
}

// deleteBlock removes a block's record.
func (m metaTxn) deleteBlock(h Hash) error { return m.del(blockKey(h)) }

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
	return m.del(intervalKey(vol, h, start))
}

// putPack records a durable pack file and its size.
func (m metaTxn) putPack(id uint64, size int64) error {
	return m.set(packKey(id), binary.BigEndian.AppendUint64(nil, uint64(size)))
}

// deletePack removes a pack's record (its file goes after).
func (m metaTxn) deletePack(id uint64) error { return m.del(packKey(id)) }

// putLease writes a repository-wide lease (lease.go).
func (m metaTxn) putLease(key []byte, l leaseRecord) error { return m.setJSON(key, l) }

// deleteLease removes one.
func (m metaTxn) deleteLease(key []byte) error { return m.del(key) }

// deleteRecord removes a record of a package built on the store
// (records.go writes them with setJSON).
func (m metaTxn) deleteRecord(key []byte) error { return m.del(key) }

func (m metaTxn) setJSON(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return m.set(key, b)
}

// kv is one planned write of a chain update (chain.go, delete.go); a nil
// val deletes the key.
type kv struct{ key, val []byte }

// apply makes planned writes.
func (m metaTxn) apply(writes []kv) error {
	for _, w := range writes {
		var err error
		if w.val == nil {
			err = m.del(w.key)
		} else {
			err = m.set(w.key, w.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyWrites makes, in one transaction, writes planned in a read made
// after foreignMark gave mark, as part of w (nil: no volume's work).
func (r *Repo) applyWrites(ctx context.Context, mark uint64, w *work, writes []kv) error {
	return r.commitPlanned(ctx, mark, func(m metaTxn) error {
		if err := m.fence(w); err != nil {
			return err
		}
		return m.apply(writes)
	})
}

// deletePrefix removes every key under prefix, in transactions small
// enough for badger.
func (r *Repo) deletePrefix(ctx context.Context, prefix []byte) error {
	return r.drainPrefix(ctx, prefix, func(keys [][]byte) error {
		return r.commit(ctx, func(m metaTxn) error {
			for _, k := range keys {
				if err := m.del(k); err != nil {
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
// volume's Applying). In a repository in an object store, its records
// are gathered and committed as journal entries of batchEntrySize bytes,
// so that they reach the journal as every commit does.
type metaBatch struct {
	wb *badger.WriteBatch // nil in a repository in an object store

	r *Repo
	// work, when set, is the volume's work the records are part of: in an
	// object store, they are written only while it is this host's.
	work    *work
	mu      sync.Mutex
	pending []kv
	size    int
}

// batchEntrySize is how much of a batch one journal entry carries.
const batchEntrySize = 1 << 20

func (r *Repo) newBatch() *metaBatch {
	if r.journal != nil {
		return &metaBatch{r: r}
	}
	return &metaBatch{wb: r.db.NewWriteBatch()}
}

// putTree writes a tree or content-list blob.
func (b *metaBatch) putTree(ctx context.Context, h Hash, blob []byte) error {
	return b.set(ctx, treeKey(h), blob)
}

// putDelta writes one block's entry of a snapshot's delta journal.
func (b *metaBatch) putDelta(ctx context.Context, vol, seq uint64, h Hash, d blockDelta) error {
	return b.set(ctx, deltaKey(vol, seq, h), d.encode())
}

// del deletes a record the batch's writer alone writes.
func (b *metaBatch) del(ctx context.Context, key []byte) error {
	if b.wb != nil {
		return b.wb.Delete(key)
	}
	return b.set(ctx, key, nil) // applyWrites deletes a key with no value
}

func (b *metaBatch) set(ctx context.Context, key, val []byte) error {
	if b.wb != nil {
		return b.wb.Set(key, val)
	}
	b.mu.Lock()
	b.pending = append(b.pending, kv{key: key, val: val})
	b.size += len(key) + len(val)
	var full []kv
	if b.size >= batchEntrySize {
		full, b.pending, b.size = b.pending, nil, 0
	}
	b.mu.Unlock()
	if full == nil {
		return nil
	}
	// Records no commit names yet: no plan to go stale.
	return b.r.applyWrites(ctx, anyMark, b.work, full)
}

// flush commits what the batch holds; it can be used no more after.
func (b *metaBatch) flush(ctx context.Context) error {
	if b.wb != nil {
		return b.wb.Flush()
	}
	b.mu.Lock()
	rest := b.pending
	b.pending, b.size = nil, 0
	b.mu.Unlock()
	if len(rest) == 0 {
		return nil
	}
	return b.r.applyWrites(ctx, anyMark, b.work, rest)
}

// cancel drops what the batch has not committed; after flush it does
// nothing.
func (b *metaBatch) cancel() {
	if b.wb != nil {
		b.wb.Cancel()
		return
	}
	b.mu.Lock()
	b.pending, b.size = nil, 0
	b.mu.Unlock()
}
