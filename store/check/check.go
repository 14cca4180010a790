// Package check verifies a repository and mends what can be mended: every
// snapshot's and image's trees and blocks, read back and named by path,
// on top of what the store checks of itself (its metadata tables, packs
// and reference counts). It reads the store through its public surface
// and its Index; repair reads lost blocks back from where they came from
// through a Source it is handed.
package check

import (
	"context"
	"fmt"

	"github.com/chainfs/chainfs/store"
)

// Problem is one thing check found wrong, and what it affects.
type Problem struct {
	Volume   string `json:"volume,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Path     string `json:"path,omitempty"`
	What     string `json:"what"`
}

// String is the problem as check prints it: where, then what.
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

// Report is what check did and found.
type Report struct {
	Snapshots uint64    `json:"snapshots"`
	Images    uint64    `json:"images"`
	Trees     uint64    `json:"trees"`
	Blocks    uint64    `json:"blocks"`
	BytesRead uint64    `json:"bytes_read"`
	Problems  []Problem `json:"problems"`
}

// Options choose how deep check goes.
type Options struct {
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
func Check(ctx context.Context, r *store.Repo, opts Options) (*Report, error) {
	rep := &Report{Problems: []Problem{}}
	x := r.Index()
	// A damaged metadata table makes badger's iterators stop early, so
	// entries would silently seem absent: say so first.
	damaged := x.VerifyMetadata()
	if damaged != nil {
		rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf("metadata tables fail their checksums (entries in them are unreadable; %s): %v", MetadataRepairNote, damaged)})
	}
	packs, err := x.PackProblems(ctx, damaged != nil)
	if err != nil {
		return nil, err
	}
	for _, p := range packs {
		rep.Problems = append(rep.Problems, Problem{What: p})
	}
	type snapOf struct {
		vol  *store.Volume
		snap store.Snapshot
	}
	var all []snapOf
	err = x.EachVolume(ctx, func(v *store.Volume, snaps []store.Snapshot) error {
		// A commit, deletion or removal running now is not one a crash
		// interrupted.
		if (v.Applying != 0 || v.Deleting != 0 || v.Removing) && v.Running == "" {
			rep.Problems = append(rep.Problems, Problem{Volume: v.Name, What: "an interrupted operation was not finished"})
		}
		for _, s := range snaps {
			all = append(all, snapOf{v, s})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c := &checker{r: r, rep: rep, opts: opts, trees: map[store.Hash]bool{}, blocks: map[store.Hash]bool{}}
	for i, s := range all {
		c.vol, c.snap = s.vol, &s.snap
		if err := c.walk(ctx, s.snap.Root); err != nil {
			return nil, err
		}
		if s.vol.Kind == store.KindImage {
			rep.Images++
		} else {
			rep.Snapshots++
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(all))
		}
	}
	refs, err := x.RefProblems(ctx)
	if err != nil {
		return nil, err
	}
	names, err := x.NameProblems(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range append(refs, names...) {
		rep.Problems = append(rep.Problems, Problem{What: p})
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
	r      *store.Repo
	rep    *Report
	opts   Options
	vol    *store.Volume
	snap   *store.Snapshot
	trees  map[store.Hash]bool // checked, and whether good
	blocks map[store.Hash]bool
	buf    []byte
}

func (c *checker) problem(path, format string, a ...any) {
	c.rep.Problems = append(c.rep.Problems, Problem{Volume: displayVolume(c.vol), Snapshot: c.snap.Name, Path: path, What: fmt.Sprintf(format, a...)})
}

// displayVolume names an image's volume as the image.
func displayVolume(v *store.Volume) string {
	if v.Kind == store.KindImage {
		return "image " + store.ImageNameOf(v)
	}
	return v.Name
}

// walk checks every path of a snapshot: a subtree shared by several is
// checked in each, since a block's chain run is per snapshot.
func (c *checker) walk(ctx context.Context, root store.Hash) error {
	return store.NewWalk(c.r, store.TreeVisitor{
		Dir: func(path string, tree store.Hash, _ []store.Entry, err error) error {
			if _, seen := c.trees[tree]; !seen {
				c.rep.Trees++
			}
			c.trees[tree] = err == nil
			if err != nil {
				c.problem(path+"/", "directory unreadable: %v", err)
			}
			return nil
		},
		File: func(dir string, e *store.Entry) error {
			c.file(ctx, e, dir+"/"+e.Name)
			return nil
		},
	}).Walk(ctx, root)
}

func (c *checker) file(ctx context.Context, e *store.Entry, path string) {
	// The chain runs of a file's good blocks are looked up a batch at a
	// time, each batch in one view of the index.
	var batch []store.Hash
	var at []int
	covered := func() error {
		holders, err := c.r.Index().Holders(ctx, c.vol.ID, c.snap.Seq, batch)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			c.problem(path, "chain runs of blocks %d to %d unreadable: %v", at[0], at[len(at)-1], err)
		}
		for k, holder := range holders {
			if holder == 0 && err == nil {
				c.problem(path, "block %d (%s) has no chain run covering this snapshot", at[k], batch[k].Short())
			}
		}
		batch, at = batch[:0], at[:0]
		return nil
	}
	l, err := store.OpenBlocks(ctx, c.r, e)
	if err == nil {
		err = l.Each(ctx, func(i int, h store.Hash) error {
			if h.IsHole() {
				return nil
			}
			good, seen := c.blocks[h]
			if !seen {
				c.rep.Blocks++
				good = c.block(ctx, h)
				c.blocks[h] = good
			}
			if !good {
				c.problem(path, "block %d (%s) is damaged or missing", i, h.Short())
				return nil
			}
			batch, at = append(batch, h), append(at, i)
			if len(batch) == store.ChunkBlocks {
				return covered()
			}
			return nil
		})
	}
	if err == nil && len(batch) > 0 {
		err = covered()
	}
	if err != nil {
		c.problem(path, "block list unreadable: %v", err)
	}
}

// block checks one block's record, and with ReadData its bytes.
func (c *checker) block(ctx context.Context, h store.Hash) bool {
	if !c.opts.ReadData {
		return c.r.Index().HasBlock(h)
	}
	if c.buf == nil {
		c.buf = make([]byte, store.MaxBlockSize)
	}
	n, err := c.r.Index().ReadRecorded(ctx, h, c.buf)
	c.rep.BytesRead += uint64(n)
	return err == nil
}
