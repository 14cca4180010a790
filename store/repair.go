package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// RepairReport says what a repair mended and what stays lost.
type RepairReport struct {
	// RefsFixed counts block records whose reference count was recounted
	// from the chain runs.
	RefsFixed uint64 `json:"refs_fixed"`
	// Healed are damaged or missing blocks stored again, read back from a
	// volume's source where the same bytes still are.
	Healed []Healed `json:"healed"`
	// Dropped are snapshots (and images) removed because nothing of them
	// could be read: their top tree is lost.
	Dropped []string `json:"dropped"`
	// Lost is what check still finds: files whose data cannot be read
	// back, directories that cannot be listed, damage to the metadata.
	Lost []Problem `json:"lost"`
}

// Healed is one block stored again, and where its bytes were found.
type Healed struct {
	Block string `json:"block"`
	From  string `json:"from"`
}

// blockSite is one place a block is used: a file of a snapshot, block i.
type blockSite struct {
	vol   *Volume
	snap  string
	path  string // in the snapshot, with a leading slash
	entry Entry
	index int
}

// Repair mends what can be mended and reports exactly what is lost: it
// recounts reference counts from the chain runs, stores again every
// damaged or missing block whose bytes a volume's source still has at the
// same place (a file unchanged since the snapshot, a disk whose block did
// not change), and removes the snapshots and images whose top tree is
// lost, of which nothing could be read. What check still finds after
// that is returned as lost; nothing else is changed. It runs alone: it
// holds the gc lock, so no snapshot runs meanwhile.
func (r *Repo) Repair(ctx context.Context) (*RepairReport, error) {
	// Repair recounts references from the runs it can read and drops
	// snapshots whose top tree it cannot find; over a damaged metadata
	// table, whose records read as absent, both would destroy what is
	// still there. It changes nothing then.
	if err := r.verifyMetadata(); err != nil {
		return nil, fmt.Errorf("repair: nothing changed: %w", err)
	}
	r.gcMu.Lock()
	rep := &RepairReport{Healed: []Healed{}, Dropped: []string{}}
	err := r.repair(ctx, rep)
	r.gcMu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, name := range rep.Dropped {
		vol, snap, _ := strings.Cut(name, "/")
		if strings.HasPrefix(name, "image ") {
			err = r.ImageVolumes().Remove(ctx, strings.TrimPrefix(name, "image "))
		} else {
			err = r.DeleteSnapshot(ctx, vol, snap)
		}
		if err != nil {
			return nil, fmt.Errorf("repair: drop %s: %w", name, err)
		}
	}
	check, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		return nil, err
	}
	rep.Lost = check.Problems
	return rep, nil
}

func (r *Repo) repair(ctx context.Context, rep *RepairReport) error {
	runs, err := r.fixRefs(rep)
	if err != nil {
		return err
	}
	bad := map[Hash][]blockSite{}
	good := map[Hash]bool{}
	buf := make([]byte, MaxBlockSize)
	err = r.liveSnapshots(ctx, func(v *Volume, snaps []Snapshot) error {
		for _, s := range snaps {
			if _, err := r.Tree(ctx, s.Root); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					return err // not known to be lost
				}
				name := v.Name + "/" + s.Name
				if v.Kind == KindImage {
					name = displayVolume(v)
				}
				rep.Dropped = append(rep.Dropped, name)
				continue
			}
			// Every path, not each subtree Once: each is a place in the
			// source where a bad block may still be found.
			walk := NewWalk(r, TreeVisitor{Dir: SkipUnreadable, File: func(dir string, e *Entry) error {
				path := dir + "/" + e.Name
				l, err := OpenBlocks(ctx, r, e)
				if err != nil {
					return nil // the list is lost; check reports it
				}
				return l.Each(ctx, func(i int, h Hash) error {
					if h.IsHole() {
						return nil
					}
					ok, seen := good[h]
					if !seen {
						n := e.BlockLen(i)
						_, rerr := r.readRecorded(h, buf[:n])
						ok = rerr == nil
						good[h] = ok
					}
					if !ok && len(bad[h]) < 8 {
						bad[h] = append(bad[h], blockSite{vol: v, snap: s.Name, path: path, entry: *e, index: i})
					}
					return nil
				})
			}})
			if err := walk.Walk(ctx, s.Root); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.heal(ctx, bad, runs, rep); err != nil {
		return err
	}
	return r.dropLostPacks(rep)
}

// dropLostPacks forgets recorded packs that are missing or short once no
// block record points into them any more (their blocks were healed, or
// were garbage).
func (r *Repo) dropLostPacks(rep *RepairReport) error {
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
		if got, err := r.blocks.PackSize(id); (err != nil || uint64(got) < size) && !used[id] {
			if err := r.dropPack(id, &packUse{dead: dead[id]}, &GCStats{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// fixRefs sets every block record's reference count to its chain runs and
// returns the runs counted.
func (r *Repo) fixRefs(rep *RepairReport) (map[Hash]uint64, error) {
	runs := map[Hash]uint64{}
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixInterval}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			_, h, _, err := parseIntervalKey(it.Item().Key())
			if err != nil {
				return err
			}
			runs[h]++
		}
		return nil
	})
	if err != nil {
		return nil, err
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
		return nil, err
	}
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	for len(writes) > 0 {
		chunk := writes[:min(chunkSize, len(writes))]
		writes = writes[len(chunk):]
		if err := r.applyWrites(chunk); err != nil {
			return nil, err
		}
		rep.RefsFixed += uint64(len(chunk))
	}
	return runs, nil
}

// heal reads each bad block from its volume's source, where a file (or the
// disk) still holds it, into a new pack, and points its record there.
func (r *Repo) heal(ctx context.Context, bad map[Hash][]blockSite, runs map[Hash]uint64, rep *RepairReport) error {
	var found []pendingBlock
	var data [][]byte
	var from []string
	for h, sites := range bad {
		for _, s := range sites {
			b, src, err := readFromSource(s)
			if err == nil && Sum(b) == h {
				found = append(found, pendingBlock{hash: h, length: uint32(len(b))})
				data = append(data, b)
				from = append(from, src)
				break
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	pack, err := r.newPack()
	if err != nil {
		return err
	}
	for i := range found {
		if found[i], err = pack.add(found[i].hash, data[i]); err != nil {
			pack.abort()
			return err
		}
	}
	if _, err := pack.finish(); err != nil {
		return err
	}
	id := pack.id
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	for i, b := range found {
		rec := blockRecord{Pack: id, Offset: uint64(b.offset), Length: b.length, Refs: runs[b.hash]}
		if err := r.applyWrites([]kv{{key: blockKey(b.hash), val: rec.encode()}}); err != nil {
			return err
		}
		rep.Healed = append(rep.Healed, Healed{Block: b.hash.String(), From: from[i]})
	}
	return nil
}

// readFromSource reads the bytes a block had from the volume's source as
// it is now: the same file at the same path (a tree), or the disk.
func readFromSource(s blockSite) ([]byte, string, error) {
	var path string
	switch s.vol.Kind {
	case KindTree:
		path = filepath.Join(s.vol.Source, filepath.FromSlash(s.path))
	case KindDisk:
		path = s.vol.Source
	default:
		return nil, "", errors.New("no source")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	b := make([]byte, s.entry.BlockLen(s.index))
	if _, err := f.ReadAt(b, int64(s.index)*int64(s.entry.BlockSize)); err != nil {
		return nil, "", err
	}
	return b, fmt.Sprintf("%s (block %d)", path, s.index), nil
}
