package check

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/chainfs/chainfs/store"
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

// Site is one place a block is used: block Index of the file at Path of a
// volume's snapshot.
type Site struct {
	Volume   *store.Volume
	Snapshot string
	// Path is the file's path in the snapshot, with a leading slash.
	Path  string
	Entry store.Entry
	Index int
}

// A Source reads a block back from where a volume's data came from (the
// same file at the same path of a tree, or the disk), and says where it
// read it. Repair checks what it returns against the block's hash.
type Source interface {
	ReadBlock(ctx context.Context, at Site) (data []byte, from string, err error)
}

// sitesPerBlock bounds the places remembered for one bad block.
const sitesPerBlock = 8

// Repair mends what can be mended and reports exactly what is lost: it
// recounts reference counts from the chain runs, stores again every
// damaged or missing block whose bytes src still has at the same place,
// and removes the snapshots and images whose top tree is lost, of which
// nothing could be read. What check still finds after that is returned
// as lost; nothing else is changed. Over damaged metadata it changes
// nothing (the error wraps store.ErrDamagedMetadata).
func Repair(ctx context.Context, r *store.Repo, src Source) (*RepairReport, error) {
	rep := &RepairReport{Healed: []Healed{}, Dropped: []string{}}
	err := r.Index().Mend(ctx, func(m store.Mender) error {
		fixed, err := m.FixRefs(ctx)
		rep.RefsFixed = fixed
		if err != nil {
			return err
		}
		bad, err := findBad(ctx, r, rep)
		if err != nil {
			return err
		}
		var found []store.Block
		for h, sites := range bad {
			for _, s := range sites {
				data, from, err := src.ReadBlock(ctx, s)
				if err == nil && r.Sum(data) == h {
					found = append(found, store.Block{Hash: h, Data: data})
					rep.Healed = append(rep.Healed, Healed{Block: h.String(), From: from})
					break
				}
			}
		}
		if err := m.StoreAgain(ctx, found); err != nil {
			rep.Healed = rep.Healed[:0]
			return err
		}
		return m.DropLostPacks(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	for _, name := range rep.Dropped {
		if img, ok := strings.CutPrefix(name, "image "); ok {
			err = r.ImageVolumes().Remove(ctx, img)
		} else {
			vol, snap, _ := strings.Cut(name, "/")
			// Its top tree is lost: a hold has nothing left to keep.
			err = r.DropSnapshot(ctx, vol, snap, store.DeleteOptions{IgnoreHold: true})
		}
		if err != nil {
			return nil, fmt.Errorf("repair: drop %s: %w", name, err)
		}
	}
	check, err := Check(ctx, r, Options{ReadData: true})
	if err != nil {
		return nil, err
	}
	rep.Lost = check.Problems
	return rep, nil
}

// findBad reads every block of every live snapshot and image once, and
// returns the ones that fail with the places they are used; snapshots
// whose top tree is lost go to rep.Dropped.
func findBad(ctx context.Context, r *store.Repo, rep *RepairReport) (map[store.Hash][]Site, error) {
	bad := map[store.Hash][]Site{}
	good := map[store.Hash]bool{}
	buf := make([]byte, store.MaxBlockSize)
	err := r.Index().EachVolume(ctx, func(v *store.Volume, snaps []store.Snapshot) error {
		if v.Removing {
			return nil
		}
		for _, s := range snaps {
			if _, err := r.Tree(ctx, s.Root); err != nil {
				if !errors.Is(err, store.ErrCorrupt) {
					return err // not known to be lost
				}
				name := v.Name + "/" + s.Name
				if s.Trashed != nil {
					name = v.Name + "/" + s.TrashRef() // its name may be another's now
				}
				if v.Kind == store.KindImage {
					name = displayVolume(v)
				}
				rep.Dropped = append(rep.Dropped, name)
				continue
			}
			// Every path, not each subtree once: each is a place in the
			// source where a bad block may still be found.
			walk := store.NewWalk(r, store.TreeVisitor{Dir: store.SkipUnreadable, File: func(dir string, e *store.Entry) error {
				path := dir + "/" + e.Name
				l, err := store.OpenBlocks(ctx, r, e)
				if err != nil {
					return nil // the list is lost; check reports it
				}
				return l.Each(ctx, func(i int, h store.Hash) error {
					if h.IsHole() {
						return nil
					}
					ok, seen := good[h]
					if !seen {
						_, rerr := r.Index().ReadRecorded(ctx, h, buf[:e.BlockLen(i)])
						ok = rerr == nil
						good[h] = ok
					}
					if !ok && len(bad[h]) < sitesPerBlock {
						bad[h] = append(bad[h], Site{Volume: v, Snapshot: s.Name, Path: path, Entry: *e, Index: i})
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
	return bad, err
}
