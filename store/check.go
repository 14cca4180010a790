package store

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Problem is one thing check found wrong, and what it affects.
type Problem struct {
	Volume   string `json:"volume,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Path     string `json:"path,omitempty"`
	What     string `json:"what"`
}

func (p Problem) String() string {
	where := p.Volume
	if p.Snapshot != "" {
		where += "/" + p.Snapshot
	}
	if p.Path != "" {
		where += p.Path
	}
	if where == "" {
		return p.What
	}
	return where + ": " + p.What
}

// CheckReport is what check did and found.
type CheckReport struct {
	Snapshots uint64    `json:"snapshots"`
	Images    uint64    `json:"images"`
	Trees     uint64    `json:"trees"`
	Blocks    uint64    `json:"blocks"`
	BytesRead uint64    `json:"bytes_read"`
	Problems  []Problem `json:"problems"`
}

// CheckOptions choose how deep check goes.
type CheckOptions struct {
	// ReadData re-reads every block and checks it against its hash.
	ReadData bool
	// Progress, if set, is called after each snapshot with how many of how
	// many are done.
	Progress func(done, total int)
}

// Check verifies the whole repository: every snapshot's and image's trees
// (by their hashes), that every block they name has a record and a chain
// run covering the snapshot, that reference counts match the runs, that
// packs are whole, and with ReadData every block's bytes. Each problem
// names the volume, snapshot and path it affects.
func (r *Repo) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	rep := &CheckReport{Problems: []Problem{}}
	// A damaged metadata table makes badger's iterators stop early, so
	// entries would silently seem absent: say so first.
	if err := r.verifyMetadata(); err != nil {
		rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("metadata tables fail their checksums (entries in them are unreadable; %s): %v", MetadataRepairNote, err)})
		if err := r.checkUnrecordedPacks(rep); err != nil {
			return nil, err
		}
	}
	if err := r.checkPacks(rep); err != nil {
		return nil, err
	}
	vols, err := r.allVolumes()
	if err != nil {
		return nil, err
	}
	type snapOf struct {
		vol  *Volume
		snap Snapshot
	}
	var all []snapOf
	for i := range vols {
		v := &vols[i]
		if v.Applying != 0 || v.Deleting != 0 || v.Removing {
			rep.Problems = append(rep.Problems, Problem{Volume: v.Name, What: "an interrupted operation was not finished"})
		}
		snaps, err := r.snapshotsOf(v.ID)
		if err != nil {
			return nil, err
		}
		for _, s := range snaps {
			all = append(all, snapOf{v, s})
		}
	}
	c := &checker{r: r, rep: rep, opts: opts, trees: map[Hash]bool{}, blocks: map[Hash]bool{}}
	for i, s := range all {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.vol, c.snap = s.vol, &s.snap
		if err := c.walk(ctx, s.snap.Root); err != nil {
			return nil, err
		}
		if s.vol.Kind == KindImage {
			rep.Images++
		} else {
			rep.Snapshots++
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(all))
		}
	}
	if err := r.checkRefs(rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// MetadataRepairNote says what check --repair can do about a damaged
// metadata table: nothing. The records in it are kept nowhere else.
const MetadataRepairNote = "check --repair cannot mend a metadata table: snapshots, directories and where each block lies " +
	"are recorded only there (the pack files hold the blocks' bytes alone); restore the repository directory from a backup. " +
	"--repair mends damaged or missing blocks and reference counts"

// checker walks snapshots, checking each tree and block once (holders per
// snapshot).
type checker struct {
	r      *Repo
	rep    *CheckReport
	opts   CheckOptions
	vol    *Volume
	snap   *Snapshot
	trees  map[Hash]bool // checked, and whether good
	blocks map[Hash]bool
	buf    []byte
}

func (c *checker) problem(path, format string, a ...any) {
	c.rep.Problems = append(c.rep.Problems, Problem{Volume: displayVolume(c.vol), Snapshot: c.snap.Name, Path: path, What: fmt.Sprintf(format, a...)})
}

// displayVolume names an image's volume as the image.
func displayVolume(v *Volume) string {
	if v.Kind == KindImage {
		return "image " + imageName(v)
	}
	return v.Name
}

// walk checks every path of a snapshot: a subtree shared by several is
// checked in each, since a block's chain run is per snapshot.
func (c *checker) walk(ctx context.Context, root Hash) error {
	return NewWalk(c.r, TreeVisitor{
		Dir: func(path string, tree Hash, _ []Entry, err error) error {
			if _, seen := c.trees[tree]; !seen {
				c.rep.Trees++
			}
			c.trees[tree] = err == nil
			if err != nil {
				c.problem(path+"/", "directory unreadable: %v", err)
			}
			return nil
		},
		File: func(dir string, e *Entry) error {
			c.file(ctx, e, dir+"/"+e.Name)
			return nil
		},
	}).Walk(ctx, root)
}

func (c *checker) file(ctx context.Context, e *Entry, path string) {
	l, err := OpenBlocks(ctx, c.r, e)
	if err == nil {
		err = l.Each(ctx, func(i int, h Hash) error {
			if h.IsHole() {
				return nil
			}
			good, seen := c.blocks[h]
			if !seen {
				c.rep.Blocks++
				good = c.block(ctx, h, path, i)
				c.blocks[h] = good
			}
			if !good {
				c.problem(path, "block %d (%s) is damaged or missing", i, h.Short())
				return nil
			}
			if _, err := c.r.Index().Holder(ctx, c.vol.ID, c.snap.Seq, h); err != nil {
				c.problem(path, "block %d (%s) has no chain run covering this snapshot", i, h.Short())
			}
			return nil
		})
	}
	if err != nil {
		c.problem(path, "block list unreadable: %v", err)
	}
}

// block checks one block's record, and with ReadData its bytes.
func (c *checker) block(ctx context.Context, h Hash, path string, i int) bool {
	rec, err := c.r.blockRecord(h)
	if err != nil {
		return false
	}
	if !c.opts.ReadData {
		return true
	}
	if len(c.buf) < int(rec.Length) {
		c.buf = make([]byte, max(rec.Length, DefaultBlockSize))
	}
	n, err := c.r.readAt(h, rec.place(), c.buf)
	c.rep.BytesRead += uint64(n)
	return err == nil
}

// checkPacks finds recorded packs that are missing or shorter than
// recorded.
func (r *Repo) checkPacks(rep *CheckReport) error {
	sizes, err := r.packSizes()
	if err != nil {
		return err
	}
	for id, size := range sizes {
		if got, err := r.blocks.PackSize(id); err != nil || uint64(got) < size {
			rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("pack %016x: missing or short (%d of %d bytes): %v", id, got, size, err)})
		}
	}
	return nil
}

// checkUnrecordedPacks reports pack files no pack record names. Open
// deletes them, unless the metadata is damaged: then it keeps them, and
// this says so. (A running snapshot's pack has no record yet either, so
// it is asked only over damaged metadata.)
func (r *Repo) checkUnrecordedPacks(rep *CheckReport) error {
	sizes, err := r.packSizes()
	if err != nil {
		return err
	}
	ids, err := r.blocks.List()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, ok := sizes[id]; !ok {
			rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("pack %016x: no readable pack record names it (kept: the damaged metadata cannot tell whether it is used)", id)})
		}
	}
	return nil
}

// checkRefs compares every block's reference count with the chain runs
// that reference it.
func (r *Repo) checkRefs(rep *CheckReport) error {
	runs := map[Hash]uint64{}
	return r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixInterval}, PrefetchValues: false})
		for it.Rewind(); it.Valid(); it.Next() {
			_, h, _, err := parseIntervalKey(it.Item().Key())
			if err != nil {
				it.Close()
				return err
			}
			runs[h]++
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixBlock}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var h Hash
			copy(h[:], it.Item().Key()[1:])
			var rec blockRecord
			if err := it.Item().Value(func(v []byte) (e error) { rec, e = decodeBlockRecord(v); return e }); err != nil {
				rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("block %s: unreadable record", h.Short())})
				continue
			}
			if rec.Refs != runs[h] {
				rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("block %s: reference count %d, but %d chain runs", h.Short(), rec.Refs, runs[h])})
			}
			delete(runs, h)
		}
		for h := range runs {
			rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("block %s: chain runs reference it but it has no record", h.Short())})
		}
		return nil
	})
}
