package report

import (
	"context"
	"slices"

	"github.com/chainfs/chainfs/store"
)

// Change is one path that differs between two snapshots.
type Change struct {
	Path string `json:"path"`
	// Kind is "added", "removed" or "changed".
	Kind string         `json:"kind"`
	Type store.FileType `json:"type"`
	// Content and Meta say what changed: the data (or a symlink's target),
	// and the mode, owner, mtime or xattrs.
	Content bool `json:"content,omitempty"`
	Meta    bool `json:"meta,omitempty"`
	// Ranges are a changed file's byte ranges that differ, block by block.
	Ranges []store.Extent `json:"ranges,omitempty"`
}

// differ walks two trees side by side.
type differ struct {
	rd store.Reader
	fn func(Change) error
}

// Diff calls fn for every path that differs from snapshot a to snapshot b,
// in path order. Subtrees with the same hash are skipped, so its cost
// follows the size of the difference.
func Diff(ctx context.Context, rd store.Reader, a, b *store.Snapshot, fn func(Change) error) error {
	d := differ{rd: rd, fn: fn}
	if metaChanged(&a.RootDir, &b.RootDir) && !onlyEntriesChanged(&a.RootDir, &b.RootDir) {
		if err := fn(Change{Path: "/", Kind: "changed", Type: store.TypeDir, Meta: true}); err != nil {
			return err
		}
	}
	return d.dir(ctx, "", a.Root, b.Root)
}

func (d *differ) dir(ctx context.Context, dir string, oldTree, newTree store.Hash) error {
	if oldTree == newTree {
		return nil
	}
	olds, err := d.rd.Tree(ctx, oldTree)
	if err != nil {
		return err
	}
	news, err := d.rd.Tree(ctx, newTree)
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
			err = d.all(ctx, dir, &olds[i], "removed")
			i++
		case i == len(olds) || news[j].Name < olds[i].Name:
			err = d.all(ctx, dir, &news[j], "added")
			j++
		default:
			err = d.entry(ctx, dir, &olds[i], &news[j])
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
func (d *differ) all(ctx context.Context, dir string, e *store.Entry, kind string) error {
	path := join(dir, e.Name)
	if err := d.fn(Change{Path: path, Kind: kind, Type: e.Type}); err != nil {
		return err
	}
	if e.Type != store.TypeDir {
		return nil
	}
	entries, err := d.rd.Tree(ctx, e.Subtree)
	if err != nil {
		return err
	}
	for i := range entries {
		if err := d.all(ctx, path, &entries[i], kind); err != nil {
			return err
		}
	}
	return nil
}

func (d *differ) entry(ctx context.Context, dir string, o, n *store.Entry) error {
	path := join(dir, n.Name)
	if o.Type != n.Type {
		if err := d.all(ctx, dir, o, "removed"); err != nil {
			return err
		}
		return d.all(ctx, dir, n, "added")
	}
	c := Change{Path: path, Kind: "changed", Type: n.Type, Meta: metaChanged(o, n) && !onlyEntriesChanged(o, n)}
	switch n.Type {
	case store.TypeRegular:
		if !o.SameContent(n) {
			c.Content = true
			ranges, err := d.changedRanges(ctx, o, n)
			if err != nil {
				return err
			}
			c.Ranges = ranges
		}
	case store.TypeSymlink:
		c.Content = o.Target != n.Target
	case store.TypeCharDev, store.TypeBlockDev:
		c.Content = o.Rdev != n.Rdev
	}
	if c.Content || c.Meta {
		if err := d.fn(c); err != nil {
			return err
		}
	}
	if n.Type == store.TypeDir {
		return d.dir(ctx, path, o.Subtree, n.Subtree)
	}
	return nil
}

// onlyEntriesChanged reports whether two versions of a directory differ in
// their entries and, of what metaChanged compares, in their mtime alone:
// adding, removing or renaming an entry moves a directory's mtime, so the
// entries' own lines say it all.
func onlyEntriesChanged(o, n *store.Entry) bool {
	if o.Type != store.TypeDir || o.Subtree == n.Subtree {
		return false
	}
	same := *o
	same.Mtime = n.Mtime
	return !metaChanged(&same, n)
}

// metaChanged compares what a user changes with chmod, chown, touch and
// setfattr. atime and ctime are left out: reading and any change move them.
func metaChanged(o, n *store.Entry) bool {
	return o.Mode != n.Mode || o.UID != n.UID || o.GID != n.GID || o.Mtime != n.Mtime ||
		!slices.EqualFunc(o.Xattrs, n.Xattrs, func(a, b store.Xattr) bool { return a.Name == b.Name && string(a.Value) == string(b.Value) })
}

// changedRanges returns the byte ranges of n whose blocks differ from o's,
// merged where adjacent.
// Chunks equal in both lists are skipped unread.
func (d *differ) changedRanges(ctx context.Context, o, n *store.Entry) ([]store.Extent, error) {
	lo, err := store.OpenBlocks(ctx, d.rd, o)
	if err != nil {
		return nil, err
	}
	ln, err := store.OpenBlocks(ctx, d.rd, n)
	if err != nil {
		return nil, err
	}
	var out []store.Extent
	compare := func(i int, h store.Hash) error {
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
			out = append(out, store.Extent{Off: off, Len: l})
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
		hs, err := ln.Chunk(ctx, c)
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
