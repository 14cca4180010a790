package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Tree loads and decodes a tree blob.
func (r *Repo) Tree(ctx context.Context, h Hash) ([]Entry, error) {
	blob, err := r.blob(ctx, h)
	if err != nil {
		return nil, err
	}
	entries, err := DecodeTree(blob)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", h.Short(), err)
	}
	return entries, nil
}

// blob reads a tree or content blob and checks its hash. A cancelled
// ctx ends it before the read.
func (r *Repo) blob(ctx context.Context, h Hash) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var blob []byte
	err := r.view(func(txn *badger.Txn) error {
		item, err := txn.Get(treeKey(h))
		if err != nil {
			return err
		}
		blob, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("tree %s missing: %w", h.Short(), ErrCorrupt)
	} else if err != nil {
		return nil, fmt.Errorf("tree %s: %w", h.Short(), err)
	}
	if r.ids.Sum(blob) != h {
		r.verifyFailures.Add(1)
		return nil, fmt.Errorf("tree %s: hash mismatch: %w", h.Short(), ErrCorrupt)
	}
	return blob, nil
}

// Blob returns a tree or content blob as stored, checked against its hash.
func (r *Repo) Blob(ctx context.Context, h Hash) ([]byte, error) { return r.blob(ctx, h) }

// Reader reads what a tree names, by hash: a repository, or an image file
// served from a catalog. A file's block list is read with OpenBlocks.
type Reader interface {
	// Tree loads and decodes a tree blob.
	Tree(ctx context.Context, h Hash) ([]Entry, error)
	// Blob returns a tree or content blob, checked against its hash.
	Blob(ctx context.Context, h Hash) ([]byte, error)
	// ReadBlock reads block h into p, checked against its hash.
	ReadBlock(ctx context.Context, h Hash, p []byte) (int, error)
	// Sum names bytes as this reader names blocks and blobs.
	Sum(b []byte) Hash
}

// Sum names b as the repository names blocks and blobs: keyed when it is
// encrypted.
func (r *Repo) Sum(b []byte) Hash { return r.ids.Sum(b) }

// FileBlocks returns a regular file's whole block list. Long lists are
// better read a chunk at a time (OpenBlocks).
func FileBlocks(ctx context.Context, rd Reader, e *Entry) ([]Hash, error) {
	l, err := OpenBlocks(ctx, rd, e)
	if err != nil {
		return nil, err
	}
	blocks := make([]Hash, 0, l.Len())
	err = l.Each(ctx, func(_ int, h Hash) error {
		blocks = append(blocks, h)
		return nil
	})
	return blocks, err
}

// ReadBlock reads block h into p, which must hold the block, checks it
// against its hash and returns its length. A hole reads as zeros of the
// length the caller gives. A mismatch is ErrCorrupt, never wrong bytes.
func (r *Repo) ReadBlock(ctx context.Context, h Hash, p []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if h.IsHole() {
		clear(p)
		return len(p), nil
	}
	at, cached := r.places.get(h)
	if !cached {
		rec, err := r.blockRecord(h)
		if err != nil {
			return 0, err
		}
		at = rec.place()
	}
	n, err := r.readAt(ctx, h, at, p, false)
	// gc or a merge of small packs may have moved the block and removed
	// its pack since its place was read or remembered, or check --repair
	// stored it anew: look again, as long as the place keeps changing (a
	// merge may move a block twice in a row), a few times at most.
	for again := 0; err != nil && again < 3; again++ {
		if r.journal != nil && errors.Is(err, ErrCorrupt) {
			// Another host's gc may have moved it (its pack is gone):
			// take in its commits, unless a commit or a catch-up is under
			// way already. A store that does not answer is no reason.
			r.tryRefresh(ctx)
		}
		rec, rerr := r.blockRecord(h)
		if rerr != nil || rec.place() == at {
			break
		}
		at, cached = rec.place(), false
		n, err = r.readAt(ctx, h, at, p, false)
	}
	if err != nil {
		r.places.drop(h)
		return 0, err
	}
	if !cached {
		r.places.put(h, at)
	}
	return n, nil
}

// readRecorded reads block h from where its record says, never from a
// remembered place: check, repair and gc judge and move what the
// metadata names.
func (r *Repo) readRecorded(ctx context.Context, h Hash, p []byte) (int, error) {
	rec, err := r.blockRecord(h)
	if err != nil {
		return 0, err
	}
	return r.readAt(ctx, h, rec.place(), p, true)
}

// readAt reads block h from where it lies into p (which holds the block
// as it was read, whatever the codec), decodes and verifies it. A store
// with a local cache of its packs reads through it, unless direct asks
// for what the store itself holds (check, repair and gc judge that); a
// block the cache held damaged is read from the store once more.
func (r *Repo) readAt(ctx context.Context, h Hash, at place, p []byte, direct bool) (int, error) {
	read := r.blocks.ReadAt
	cache, cached := r.blocks.(cachedBlockStore)
	if direct && cached {
		read = cache.readStore
	}
	// verify reads and checks: bytes that do not decode are damage as a
	// hash mismatch is (ok false, the reason in bad), any other error is
	// the read's. Hashed once per read: it is most of a read's CPU.
	verify := func(read func(context.Context, uint64, []byte, int64) error) (n int, ok bool, bad, err error) {
		n, err = r.readDecoded(ctx, read, h, at, p)
		if errors.Is(err, errUndecodable) {
			return 0, false, err, nil
		} else if err != nil {
			return 0, false, nil, err
		}
		if r.ids.Sum(p[:n]) != h {
			return 0, false, errors.New("hash mismatch"), nil
		}
		return n, true, nil, nil
	}
	n, ok, bad, err := verify(read)
	if err != nil {
		return 0, fmt.Errorf("block %s: %w", h.Short(), err)
	}
	if !ok && !direct && cached && cache.dropCached(at.pack, int64(at.offset), int(at.length)) {
		// Fetched again, into the cache.
		if n, ok, bad, err = verify(cache.ReadAt); err != nil {
			return 0, fmt.Errorf("block %s: %w", h.Short(), err)
		}
		if ok {
			r.log.Warn("a block in this host's cache of the store failed its hash; read from the store again", "block", h.Short())
		}
	}
	if !ok {
		r.verifyFailures.Add(1)
		return 0, fmt.Errorf("block %s: %v: %w", h.Short(), bad, ErrCorrupt)
	}
	return n, nil
}

// readDecoded reads the bytes of block h at a place with read and decodes
// them into p: a raw block of a repository that is not encrypted is read
// into p itself, any other into a pooled buffer first (and a sealed raw
// one opened into p).
func (r *Repo) readDecoded(ctx context.Context, read func(context.Context, uint64, []byte, int64) error, h Hash, at place, p []byte) (int, error) {
	if at.codec == CodecRaw && r.keys == nil {
		if int(at.length) > len(p) {
			return 0, fmt.Errorf("%d bytes, buffer %d: %w", at.length, len(p), ErrCorrupt)
		}
		return int(at.length), read(ctx, at.pack, p[:at.length], int64(at.offset))
	}
	if at.length > maxStored {
		return 0, fmt.Errorf("%d bytes stored: %w", at.length, ErrCorrupt)
	}
	bp := storedBuffer(int(at.length))
	defer putStored(bp)
	stored := *bp
	if err := read(ctx, at.pack, stored, int64(at.offset)); err != nil {
		return 0, err
	}
	if r.keys != nil {
		if at.codec == CodecRaw {
			if len(stored)-sealOverhead > len(p) {
				return 0, fmt.Errorf("%d bytes, buffer %d: %w", len(stored)-sealOverhead, len(p), errUndecodable)
			}
			plain, err := r.openStored(h, at.codec, stored, p[:0])
			return len(plain), err
		}
		var err error
		if stored, err = r.openStored(h, at.codec, stored, stored[sealNonce:sealNonce]); err != nil {
			return 0, err
		}
	}
	return decodeBlock(at.codec, stored, p)
}

// readStored reads block h as its pack keeps it into dst, from where its
// record says, never through a cache, and checks it by decoding it: what
// gc copies into a new pack as it is. It returns the stored bytes and
// their codec.
func (r *Repo) readStored(ctx context.Context, h Hash, dst []byte) ([]byte, Codec, error) {
	rec, err := r.blockRecord(h)
	if err != nil {
		return nil, 0, err
	}
	if int(rec.Length) > len(dst) {
		return nil, 0, fmt.Errorf("block %s: %d bytes stored: %w", h.Short(), rec.Length, ErrCorrupt)
	}
	stored := dst[:rec.Length]
	read := r.blocks.ReadAt
	if cache, ok := r.blocks.(cachedBlockStore); ok {
		read = cache.readStore
	}
	if err := read(ctx, rec.Pack, stored, int64(rec.Offset)); err != nil {
		return nil, 0, fmt.Errorf("block %s: %w", h.Short(), err)
	}
	plain := stored
	if rec.Codec != CodecRaw || r.keys != nil {
		bp := storedBuffer(MaxBlockSize)
		defer putStored(bp)
		n, err := r.decodeCopy(h, rec.Codec, stored, *bp)
		if err != nil {
			r.verifyFailures.Add(1)
			return nil, 0, fmt.Errorf("block %s: %v: %w", h.Short(), err, ErrCorrupt)
		}
		plain = (*bp)[:n]
	}
	if r.ids.Sum(plain) != h {
		r.verifyFailures.Add(1)
		return nil, 0, fmt.Errorf("block %s: hash mismatch: %w", h.Short(), ErrCorrupt)
	}
	return stored, rec.Codec, nil
}

func (r *Repo) blockRecord(h Hash) (blockRecord, error) {
	var rec blockRecord
	err := r.view(func(txn *badger.Txn) error {
		item, err := txn.Get(blockKey(h))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) (e error) { rec, e = decodeBlockRecord(v); return e })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return rec, fmt.Errorf("block %s missing: %w", h.Short(), ErrCorrupt)
	} else if err != nil {
		return rec, fmt.Errorf("block %s: %w", h.Short(), err)
	}
	return rec, nil
}

// Lookup resolves a slash-separated path below the directory root (a
// snapshot's RootDir, say). The empty path (or "/") is root itself.
func Lookup(ctx context.Context, rd Reader, root *Entry, path string) (*Entry, error) {
	cur := root
	for _, name := range strings.Split(strings.Trim(path, "/"), "/") {
		if name == "" || name == "." {
			continue
		}
		if cur.Type != TypeDir {
			return nil, fmt.Errorf("%s: not a directory: %w", path, ErrNotFound)
		}
		entries, err := rd.Tree(ctx, cur.Subtree)
		if err != nil {
			return nil, err
		}
		i := SearchEntries(entries, name)
		if i < 0 {
			return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
		}
		cur = &entries[i]
	}
	return cur, nil
}

// SearchEntries finds name in entries sorted by name (a tree), or returns -1.
func SearchEntries(entries []Entry, name string) int {
	lo, hi := 0, len(entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if entries[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(entries) && entries[lo].Name == name {
		return lo
	}
	return -1
}

// recover finishes or undoes what a crashed process left: interrupted
// chain updates are undone, half-removed volumes are removed, and pack
// files no committed record names are deleted. In a repository in an
// object store, it does the same with another host's work whose lease ran
// out (takeOver), and leaves alone what another host may still be doing.
func (r *Repo) recover(ctx context.Context) error {
	vols, err := r.allVolumes()
	if err != nil {
		return err
	}
	for _, v := range vols {
		switch {
		case !v.underWay():
		case v.Writer == r.info.Replica:
			if err := r.adopt(ctx, v); err != nil {
				return err
			}
		default:
			// Still leased, or taken over by a third host meanwhile: left
			// to them, and this open goes on.
			if err := r.takeOver(ctx, v.Name); err != nil {
				r.log.Warn("another host's unfinished work on a volume was not taken over", "volume", v.Name, "err", err)
			}
		}
	}
	if r.journal != nil {
		// Another host may be sending a pack it has not recorded yet:
		// none is removed for want of a record here (the staging
		// directory, this host's own, was cleared at open).
		return r.dropOwnLeases(ctx)
	}
	return r.dropUnrecordedPacks(ctx)
}

// dropUnrecordedPacks deletes pack files that no pack record names: the
// remains of a snapshot that was killed before it finished a pack. It acts
// on positive knowledge only: the pack records come from a complete scan,
// and since badger shows a record in a damaged table as absent, the
// metadata tables are checked before anything is deleted. When they fail,
// every pack file is kept and the damage is logged (check reports it).
func (r *Repo) dropUnrecordedPacks(ctx context.Context) error {
	ids, err := r.blocks.List(ctx)
	if err != nil {
		return err
	}
	recorded, err := r.packSizes()
	if err != nil {
		return fmt.Errorf("list pack records: %w", err)
	}
	var unrecorded []uint64
	for _, id := range ids {
		if _, ok := recorded[id]; !ok {
			unrecorded = append(unrecorded, id)
		}
	}
	if len(unrecorded) == 0 {
		return nil
	}
	if err := r.verifyMetadata(); err != nil {
		r.log.Error("pack files without a pack record are kept: the metadata cannot tell whether they are used",
			"packs", len(unrecorded), "err", err)
		return nil
	}
	for _, id := range unrecorded {
		r.log.Info("removing unfinished pack", "pack", fmt.Sprintf("%016x", id))
		if err := r.blocks.Remove(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// packSizes returns every recorded pack with its recorded size.
func (r *Repo) packSizes() (map[uint64]uint64, error) {
	sizes := map[uint64]uint64{}
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixPack}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id, err := parsePackKey(it.Item().Key())
			if err != nil {
				return err
			}
			if err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("pack %016x record: %w", id, ErrCorrupt)
				}
				sizes[id] = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return sizes, err
}

// scanBlocks calls fn for every block record, in hash order; a record
// that does not decode ends it.
func (r *Repo) scanBlocks(fn func(h Hash, rec blockRecord) error) error {
	return r.view(func(txn *badger.Txn) error {
		return eachBlock(txn, func(h Hash, rec blockRecord, err error) error {
			if err != nil {
				return fmt.Errorf("block %s record: %w", h.Short(), err)
			}
			return fn(h, rec)
		})
	})
}

// eachBlock calls fn for every block record in txn, in hash order, with
// the error of a record that does not decode.
func eachBlock(txn *badger.Txn, fn func(h Hash, rec blockRecord, err error) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixBlock}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var h Hash
		copy(h[:], it.Item().Key()[1:])
		var rec blockRecord
		err := it.Item().Value(func(v []byte) (e error) { rec, e = decodeBlockRecord(v); return e })
		if err := fn(h, rec, err); err != nil {
			return err
		}
	}
	return nil
}
