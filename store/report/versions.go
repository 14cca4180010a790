package report

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
)

// Version is one distinct version of a file across a volume's snapshots:
// its content and the metadata a user changes (metaChanged), as the
// earliest snapshot that holds it has them.
type Version struct {
	// Snapshot is the earliest snapshot that holds this version, and Seq
	// and Time are its.
	Snapshot string    `json:"snapshot"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	// Entry is the version: its metadata and where its content is.
	Entry store.Entry `json:"entry"`
	// Change says how it differs from the version the snapshot before held:
	// "added" (the path held nothing there, or a directory), "content",
	// "metadata", "type"; "added again" after snapshots without it.
	Change string `json:"change"`
	// Snapshots counts the snapshots that hold this version.
	Snapshots int `json:"snapshots"`
	// Dir is the tree the entry lies in, for reading it.
	Dir store.Hash `json:"-"`
}

// ErrIsDirectory: versions are of files, not of directories.
var ErrIsDirectory = errors.New("is a directory")

// Versions lists the distinct versions of the file at path in snaps (one
// volume's, oldest first), each once, in the order they first appear. A
// snapshot whose top tree, or any directory on the way, is the one the
// snapshot before had holds what that one held, so only the directories
// that changed are read: the cost follows the number of changes, not of
// snapshots. Where the path is a directory it holds no version of the
// file. A path no snapshot holds is ErrNotFound; one that only ever was a
// directory, ErrIsDirectory.
func Versions(ctx context.Context, rd store.Reader, snaps []store.Snapshot, path string) ([]Version, error) {
	names := splitPath(path)
	if len(names) == 0 {
		return nil, ErrIsDirectory
	}
	var (
		versions []Version
		cur      = -1         // the version the previous snapshot held, -1 none
		trail    []store.Hash // the trees the previous lookup went through
		sawDir   bool         // a snapshot held a directory there
	)
	for _, s := range snaps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, dir, t, same, err := lookupVersion(ctx, rd, s.Root, names, trail)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s/%s: %w", s.Volume, s.Name, err)
		}
		trail = t
		if !same {
			if e != nil && e.Type == store.TypeDir {
				sawDir, e = true, nil
			}
			cur = pickVersion(&versions, cur, e, dir, &s)
		}
		if cur >= 0 {
			versions[cur].Snapshots++
		}
	}
	if len(versions) == 0 && sawDir {
		return nil, ErrIsDirectory
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("in no snapshot: %w", store.ErrNotFound)
	}
	return versions, nil
}

// pickVersion returns which version e is, adding it if it is new; -1 when
// the snapshot holds nothing at the path.
func pickVersion(versions *[]Version, prev int, e *store.Entry, dir store.Hash, s *store.Snapshot) int {
	if e == nil {
		return -1
	}
	for i := range *versions {
		if sameVersion(&(*versions)[i].Entry, e) {
			return i
		}
	}
	v := Version{Snapshot: s.Name, Seq: s.Seq, Time: s.Time, Entry: *e, Dir: dir}
	switch {
	case prev < 0 && len(*versions) == 0:
		v.Change = "added"
	case prev < 0:
		v.Change = "added again"
	default:
		p := &(*versions)[prev].Entry
		switch {
		case p.Type != e.Type:
			v.Change = "type"
		case !sameData(p, e):
			v.Change = "content"
		default:
			v.Change = "metadata"
		}
	}
	*versions = append(*versions, v)
	return len(*versions) - 1
}

// sameVersion reports whether two entries are one version: the same type,
// data and user-set metadata.
func sameVersion(a, b *store.Entry) bool {
	return a.Type == b.Type && sameData(a, b) && !metaChanged(a, b)
}

// sameData compares what a file, symlink or device holds.
func sameData(a, b *store.Entry) bool {
	switch a.Type {
	case store.TypeRegular:
		return a.SameContent(b)
	case store.TypeSymlink:
		return a.Target == b.Target
	case store.TypeCharDev, store.TypeBlockDev:
		return a.Rdev == b.Rdev
	}
	return true
}

// lookupVersion finds names below the tree root: the entry (nil when
// absent), the tree it lies in, and the trees the lookup went through.
// same says a tree on the way is the one at the same place of the
// previous lookup (trail), so that the entry is the one found then.
func lookupVersion(ctx context.Context, rd store.Reader, root store.Hash, names []string, trail []store.Hash) (e *store.Entry, dir store.Hash, path []store.Hash, same bool, err error) {
	tree := root
	for i, name := range names {
		if i < len(trail) && trail[i] == tree {
			return nil, store.Hash{}, trail, true, nil
		}
		path = append(path, tree)
		entries, err := rd.Tree(ctx, tree)
		if err != nil {
			return nil, store.Hash{}, nil, false, err
		}
		j := store.SearchEntries(entries, name)
		if j < 0 {
			return nil, store.Hash{}, path, false, nil
		}
		if i == len(names)-1 {
			found := entries[j]
			return &found, tree, path, false, nil
		}
		if entries[j].Type != store.TypeDir {
			return nil, store.Hash{}, path, false, nil
		}
		tree = entries[j].Subtree
	}
	return nil, store.Hash{}, path, false, nil
}

// splitPath is a path's names, without empty ones or ".".
func splitPath(path string) []string {
	var names []string
	for _, n := range strings.Split(path, "/") {
		if n != "" && n != "." {
			names = append(names, n)
		}
	}
	return names
}
