package store

import (
	"context"
	"slices"
)

// Change is one path that differs between two snapshots.
type Change struct {
	Path string `json:"path"`
	// Kind is "added", "removed" or "changed".
	Kind string   `json:"kind"`
	Type FileType `json:"type"`
	// Content and Meta say what changed: the data (or a symlink's target),
	// and the mode, owner, mtime or xattrs.
	Content bool `json:"content,omitempty"`
	Meta    bool `json:"meta,omitempty"`
	// Ranges are a changed file's byte ranges that differ, block by block.
	Ranges []Extent `json:"ranges,omitempty"`
}

// Diff calls fn for every path that differs from snapshot a to snapshot b,
// in path order. Subtrees with the same hash are skipped, so its cost
// follows the size of the difference.
func (r *Repo) Diff(ctx context.Context, a, b *Snapshot, fn func(Change) error) error {
	if metaChanged(&a.RootDir, &b.RootDir) {
		if err := fn(Change{Path: "/", Kind: "changed", Type: TypeDir, Meta: true}); err != nil {
			return err
		}
	}
	return r.diffDir(ctx, "", a.Root, b.Root, fn)
}

func (r *Repo) diffDir(ctx context.Context, dir string, oldTree, newTree Hash, fn func(Change) error) error {
	if oldTree == newTree {
		return nil
	}
	olds, err := r.Tree(ctx, oldTree)
	if err != nil {
		return err
	}
	news, err := r.Tree(ctx, newTree)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(olds) || j < len(news) {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case j == len(news) || (i < len(olds) && olds[i].Name < news[j].Name):
			err = r.diffAll(ctx, dir, &olds[i], "removed", fn)
			i++
		case i == len(olds) || news[j].Name < olds[i].Name:
			err = r.diffAll(ctx, dir, &news[j], "added", fn)
			j++
		default:
			err = r.diffEntry(ctx, dir, &olds[i], &news[j], fn)
			i++
			j++
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func join(dir, name string) string {
	if dir == "" {
		return "/" + name
	}
	return dir + "/" + name
}

// diffAll reports an entry, and everything below it, as added or removed.
func (r *Repo) diffAll(ctx context.Context, dir string, e *Entry, kind string, fn func(Change) error) error {
	path := join(dir, e.Name)
	if err := fn(Change{Path: path, Kind: kind, Type: e.Type}); err != nil {
		return err
	}
	if e.Type != TypeDir {
		return nil
	}
	entries, err := r.Tree(ctx, e.Subtree)
	if err != nil {
		return err
	}
	for i := range entries {
		if err := r.diffAll(ctx, path, &entries[i], kind, fn); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repo) diffEntry(ctx context.Context, dir string, o, n *Entry, fn func(Change) error) error {
	path := join(dir, n.Name)
	if o.Type != n.Type {
		if err := r.diffAll(ctx, dir, o, "removed", fn); err != nil {
			return err
		}
		return r.diffAll(ctx, dir, n, "added", fn)
	}
	c := Change{Path: path, Kind: "changed", Type: n.Type, Meta: metaChanged(o, n)}
	switch n.Type {
	case TypeRegular:
		if !sameContent(o, n) {
			c.Content = true
			ranges, err := r.changedRanges(ctx, o, n)
			if err != nil {
				return err
			}
			c.Ranges = ranges
		}
	case TypeSymlink:
		c.Content = o.Target != n.Target
	case TypeCharDev, TypeBlockDev:
		c.Content = o.Rdev != n.Rdev
	}
	if c.Content || c.Meta {
		if err := fn(c); err != nil {
			return err
		}
	}
	if n.Type == TypeDir {
		return r.diffDir(ctx, path, o.Subtree, n.Subtree, fn)
	}
	return nil
}

// metaChanged compares what a user changes with chmod, chown, touch and
// setfattr. atime and ctime are left out: reading and any change move them.
func metaChanged(o, n *Entry) bool {
	return o.Mode != n.Mode || o.UID != n.UID || o.GID != n.GID || o.Mtime != n.Mtime ||
		!slices.EqualFunc(o.Xattrs, n.Xattrs, func(a, b Xattr) bool { return a.Name == b.Name && string(a.Value) == string(b.Value) })
}

// changedRanges returns the byte ranges of n whose blocks differ from o's,
// merged where adjacent.
// Chunks equal in both lists are skipped unread.
func (r *Repo) changedRanges(ctx context.Context, o, n *Entry) ([]Extent, error) {
	lo, err := OpenBlocks(ctx, r, o)
	if err != nil {
		return nil, err
	}
	ln, err := OpenBlocks(ctx, r, n)
	if err != nil {
		return nil, err
	}
	var out []Extent
	compare := func(i int, h Hash) error {
		if i < lo.Len() && o.BlockSize == n.BlockSize && o.BlockLen(i) == n.BlockLen(i) {
			oh, err := lo.At(ctx, i)
			if err != nil || oh == h {
				return err
			}
		}
		off, l := uint64(i)*uint64(n.BlockSize), uint64(n.BlockLen(i))
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == off {
			out[k].Len += l
		} else {
			out = append(out, Extent{Off: off, Len: l})
		}
		return nil
	}
	co, okO := lo.Chunked()
	cn, okN := ln.Chunked()
	if !okO || !okN || co.Per != cn.Per || o.BlockSize != n.BlockSize {
		return out, ln.Each(ctx, compare)
	}
	for c := range cn.Hashes {
		if c < len(co.Hashes) && co.Hashes[c] == cn.Hashes[c] && co.ChunkLen(c) == cn.ChunkLen(c) {
			continue
		}
		hs, err := ln.loadChunk(ctx, c)
		if err != nil {
			return nil, err
		}
		for j, h := range hs {
			if err := compare(c*cn.Per+j, h); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
