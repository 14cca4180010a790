package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/zeebo/blake3"
)

// Checkpoints. A replica made from the journal alone applies every entry
// since the repository began; a checkpoint is the whole metadata as of
// one entry, <prefix>checkpoints/<seq>, from which a new replica starts,
// applying only the entries after it. Any host writes one (a daemon every
// checkpointEvery entries, and gc); its bytes follow from the metadata at
// that entry alone (badger's key order), so two hosts that write the same
// one write the same bytes and need no conditional write. Entries are
// never deleted: a host whose replica is behind, or whose write's answer
// was lost, reads them back, and the create-only write of the next entry
// is what orders commits; a checkpoint only spares new replicas the
// replay. The two newest are kept.
//
// A checkpoint is "CFK1", the entry's number (8 bytes, big-endian), then
// each key and value as uvarint lengths and bytes, in key order, a key
// length of 0 after the last, and the BLAKE3 hash of everything before.
// The replica's own record of its last entry is not in it.

var checkpointMagic = []byte("CFK1")

// checkpointEvery is how many entries a daemon lets pass between two
// checkpoints it writes.
const checkpointEvery = 1024

func (j *journal) checkpointKey(seq uint64) string {
	return fmt.Sprintf("%scheckpoints/%016x", j.remote.Prefix, seq)
}

// Checkpoint writes a checkpoint of the replica as of the last entry it
// applied, unless one of that entry or, without force, of one less than
// checkpointEvery entries before it is known to be there. It returns the
// entry's number (0: none written), and removes all but the two newest.
// Elsewhere than in an object store it does nothing.
func (r *Repo) Checkpoint(ctx context.Context, force bool) (uint64, error) {
	j := r.journal
	if j == nil {
		return 0, nil
	}
	j.mu.Lock()
	applied, last, listed := j.applied, j.checkpointed, j.checkpointsListed
	j.mu.Unlock()
	if listed && !force && applied-last < checkpointEvery {
		return 0, nil // no request: the newest is known, and recent
	}
	have, err := j.checkpoints(ctx)
	if err != nil {
		return 0, err
	}
	if len(have) > 0 {
		last = have[len(have)-1]
	}
	j.mu.Lock()
	j.checkpointed, j.checkpointsListed = last, true
	j.mu.Unlock()
	if last >= applied || (!force && applied-last < checkpointEvery) {
		return 0, nil
	}
	tmp, err := os.CreateTemp(r.dir, "checkpoint-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	var w io.Writer = tmp
	var sealing *sealingWriter
	if r.keys != nil {
		sealing = r.keys.sealStream(tmp, sealCheckpoint)
		w = sealing
	}
	seq, err := r.writeCheckpoint(w)
	if err == nil && sealing != nil {
		err = sealing.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if _, err := j.remote.Objects.Put(ctx, j.checkpointKey(seq), tmp, size); err != nil {
		return 0, fmt.Errorf("send checkpoint %d: %w", seq, err)
	}
	j.mu.Lock()
	j.checkpointed = seq
	j.mu.Unlock()
	have = append(have, seq)
	for _, old := range have[:max(len(have)-2, 0)] {
		if old != seq {
			if err := j.remote.Objects.Remove(ctx, j.checkpointKey(old)); err != nil {
				r.log.Warn("remove an old checkpoint", "entry", old, "err", err)
			}
		}
	}
	r.log.Info("checkpoint written", "entry", seq, "bytes", size)
	return seq, nil
}

// writeCheckpoint writes the replica's metadata, as one read sees it, to
// w, and returns the entry it is as of.
func (r *Repo) writeCheckpoint(w io.Writer) (uint64, error) {
	var seq uint64
	err := r.view(func(txn *badger.Txn) error {
		var err error
		if seq, err = readApplied(txn); err != nil {
			return err
		}
		h := blake3.New()
		bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
		bw.Write(checkpointMagic)
		bw.Write(binary.BigEndian.AppendUint64(nil, seq))
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		var lens []byte
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if bytes.Equal(item.Key(), journalKey) {
				continue
			}
			err := item.Value(func(v []byte) error {
				lens = binary.AppendUvarint(lens[:0], uint64(len(item.Key())))
				bw.Write(lens)
				bw.Write(item.Key())
				lens = binary.AppendUvarint(lens[:0], uint64(len(v)))
				bw.Write(lens)
				_, err := bw.Write(v)
				return err
			})
			if err != nil {
				return err
			}
		}
		bw.Write([]byte{0})
		if err := bw.Flush(); err != nil {
			return err
		}
		_, err = w.Write(h.Sum(nil))
		return err
	})
	return seq, err
}

// checkpoints lists the entries of the checkpoints in the object store,
// oldest first.
func (j *journal) checkpoints(ctx context.Context) ([]uint64, error) {
	var seqs []uint64
	for obj, err := range j.remote.Objects.List(ctx, j.remote.Prefix+"checkpoints/") {
		if err != nil {
			return nil, err
		}
		if seq, err := strconv.ParseUint(path.Base(obj.Key), 16, 64); err == nil && !strings.Contains(path.Base(obj.Key), ".") {
			seqs = append(seqs, seq)
		}
	}
	return seqs, nil
}

// loadCheckpoint fills the empty replica from the newest checkpoint, if
// there is one, as of its entry, which it records: the journal's entries
// after it are then all the replica lacks. A checkpoint that is damaged
// (its hash) leaves the replica empty again, and the journal is replayed
// from its beginning. Called with j.mu held.
func (r *Repo) loadCheckpoint(ctx context.Context) error {
	j := r.journal
	// A replica cut off while it loaded holds part of a checkpoint, and
	// says it holds nothing: start clean, whether one is loaded or not.
	if err := r.dropAllMeta(); err != nil {
		return err
	}
	have, err := j.checkpoints(ctx)
	if err != nil || len(have) == 0 {
		return err
	}
	seq := have[len(have)-1]
	key := j.checkpointKey(seq)
	obj, err := j.remote.Objects.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", seq, err)
	}
	err = r.loadEntries(seq, func(put func(k, v []byte) error) error {
		return readCheckpoint(ctx, j.remote.Objects, key, obj.Size, seq, r.keys, put)
	})
	if errors.Is(err, ErrCorrupt) {
		r.log.Warn("a damaged checkpoint is passed over; the whole journal is applied", "entry", seq, "err", err)
		return r.dropAllMeta()
	}
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", seq, err)
	}
	j.applied, j.checkpointed, j.checkpointsListed = seq, seq, true
	r.log.Info("replica made from a checkpoint", "entry", seq, "bytes", obj.Size)
	return nil
}

// readCheckpoint reads checkpoint seq, the object key of size bytes, front
// to back, and gives put each key and value; it fails with ErrCorrupt
// when the object is not that checkpoint or its hash does not match, which
// is known only at its end.
func readCheckpoint(ctx context.Context, objs Objects, key string, size int64, seq uint64, keys *keyring, put func(k, v []byte) error) error {
	bad := func(why string) error { return fmt.Errorf("checkpoint %d: %s: %w", seq, why, ErrCorrupt) }
	var src io.Reader = io.NewSectionReader(objectReaderAt{ctx, objs, key}, 0, size)
	if keys != nil {
		if size = plainSize(size); size < 0 {
			return bad("no sealed stream has its size")
		}
		// Read in 8 MiB requests, as a checkpoint in the clear is.
		opened, err := keys.openStream(bufio.NewReaderSize(src, 8<<20), sealCheckpoint)
		if errors.Is(err, errUndecodable) {
			return bad(err.Error())
		} else if err != nil {
			return err
		}
		src = opened
	}
	body := size - HashSize
	if body < int64(len(checkpointMagic))+9 {
		return bad("too short")
	}
	h := blake3.New()
	// Read no further than the body: the hash after it is read from
	// src itself.
	br := bufio.NewReaderSize(io.TeeReader(io.LimitReader(src, body), h), 8<<20)
	head := make([]byte, len(checkpointMagic)+8)
	if _, err := io.ReadFull(br, head); err != nil {
		if errors.Is(err, errUndecodable) || errors.Is(err, io.ErrUnexpectedEOF) {
			return bad(err.Error())
		}
		return err
	}
	if !bytes.Equal(head[:len(checkpointMagic)], checkpointMagic) || binary.BigEndian.Uint64(head[len(checkpointMagic):]) != seq {
		return bad("not this checkpoint")
	}
	field := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, bad("cut short")
		}
		if n > maxEntry {
			return nil, bad("a field too long")
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, bad("cut short")
		}
		return b, nil
	}
	for {
		k, err := field()
		if err != nil {
			return err
		}
		if len(k) == 0 {
			break
		}
		v, err := field()
		if err != nil {
			return err
		}
		if err := put(k, v); err != nil {
			return err
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return bad("data after its last key")
	}
	sum := make([]byte, HashSize)
	if _, err := io.ReadFull(src, sum); err != nil {
		if errors.Is(err, errUndecodable) {
			return bad(err.Error())
		}
		return err
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return bad("its hash does not match")
	}
	return nil
}

// objectReaderAt reads an object as an io.ReaderAt.
type objectReaderAt struct {
	ctx  context.Context
	objs Objects
	key  string
}

func (o objectReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := o.objs.ReadAt(o.ctx, o.key, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}
