package store

import (
	"context"
	"fmt"
)

// The one tree walker. gc, repair, check and the reports all visit what
// lies below snapshot roots; they differ only in what they do at a
// directory and at a file, in whether a subtree met twice is entered
// again, and in what an unreadable directory means to them.

// TreeVisitor is what a walk does. Dir and File may be nil.
type TreeVisitor struct {
	// Dir is called for each directory before its entries, with the
	// tree's hash and the directory's path ("" for a root, then "/a",
	// "/a/b"). err is the failure to read it, entries then nil: a nil
	// return skips the directory and the walk goes on, an error ends the
	// walk. Without Dir, a directory that cannot be read ends it.
	Dir func(path string, tree Hash, entries []Entry, err error) error
	// File is called for each regular file, with its directory's path.
	File func(dir string, e *Entry) error
	// Once enters each subtree once per walk, however many directories
	// (of one snapshot or of all those walked) hold it: for walks that
	// want what is reachable, not where. Without it every path is
	// visited, for walks that report by path.
	Once bool
}

// A Walk visits the trees below any number of roots with one visitor;
// with Once, what one root's walk entered is not entered again by the
// next's.
type Walk struct {
	rd   Reader
	v    TreeVisitor
	seen map[Hash]struct{}
}

// NewWalk starts a walk of trees read from rd.
func NewWalk(rd Reader, v TreeVisitor) *Walk {
	return &Walk{rd: rd, v: v, seen: map[Hash]struct{}{}}
}

// Walk visits the tree below root. It honours ctx at every directory.
func (w *Walk) Walk(ctx context.Context, root Hash) error {
	return w.dir(ctx, "", root)
}

func (w *Walk) dir(ctx context.Context, path string, tree Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.v.Once {
		if _, ok := w.seen[tree]; ok {
			return nil
		}
		w.seen[tree] = struct{}{}
	}
	entries, err := w.rd.Tree(ctx, tree)
	if err != nil && (w.v.Dir == nil || ctx.Err() != nil) {
		return fmt.Errorf("directory %s/: %w", path, err)
	}
	if w.v.Dir != nil {
		if verr := w.v.Dir(path, tree, entries, err); verr != nil || err != nil {
			return verr
		}
	}
	for i := range entries {
		e := &entries[i]
		switch e.Type {
		case TypeDir:
			if err := w.dir(ctx, path+"/"+e.Name, e.Subtree); err != nil {
				return err
			}
		case TypeRegular:
			if w.v.File != nil {
				if err := w.v.File(path, e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// liveSnapshots calls fn for every volume not being removed (images'
// volumes included) with its snapshots, oldest first.
func (r *Repo) liveSnapshots(ctx context.Context, fn func(v *Volume, snaps []Snapshot) error) error {
	vols, err := r.allVolumes()
	if err != nil {
		return err
	}
	for i := range vols {
		v := &vols[i]
		if v.Removing {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		snaps, err := r.snapshotsOf(v.ID)
		if err != nil {
			return err
		}
		if err := fn(v, snaps); err != nil {
			return err
		}
	}
	return nil
}

// SkipUnreadable is a Dir func that passes over directories that cannot
// be read (check reports them).
func SkipUnreadable(string, Hash, []Entry, error) error { return nil }

// CollectBlocks adds every data block below a tree, with its length.
func CollectBlocks(ctx context.Context, rd Reader, tree Hash, out map[Hash]uint32) error {
	return NewWalk(rd, TreeVisitor{Once: true, File: func(_ string, e *Entry) error {
		l, err := OpenBlocks(ctx, rd, e)
		if err != nil {
			return err
		}
		return l.Each(ctx, func(j int, h Hash) error {
			if !h.IsHole() {
				out[h] = e.BlockLen(j)
			}
			return nil
		})
	}}).Walk(ctx, tree)
}
