package imagefile

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// maxTarFileSize bounds the size a tar entry may claim, and the sizes all
// sparse entries of one archive claim together. A sparse entry's holes
// cost no stream bytes but archive/tar hands them over as zeros, so each
// is scanned (at memory speed: about a minute a TiB) and takes a
// block-list entry; without a bound on the sum, a small archive of many
// such entries would take hours.
const maxTarFileSize = 1 << 40

// tarNode is one path of the tree a tar import builds.
type tarNode struct {
	entry    store.Entry
	children map[string]*tarNode // directories
	// implied is a directory made because a path passed through it; an
	// entry of its own may still come and describe it.
	implied bool
	// links is the hard-link group the node belongs to (nil: none).
	links *[]*tarNode
}

// tarImport builds a tree from a tar stream.
type tarImport struct {
	dst     sink
	prog    *Progress
	root    *tarNode
	nextIno uint64
	now     store.Timespec
	res     readResult
	buf     []byte
	entries uint64
	maxSize int64
	// sparseSize is what the sparse entries so far claimed, in all.
	sparseSize int64
}

// readTar reads a tar stream into dst. Paths are checked as they come:
// absolute paths, "..", a path through a symlink or a file, a name given
// twice, a hard link to anything not earlier in the archive are refused.
func readTar(ctx context.Context, r *bufio.Reader, dst sink, prog *Progress, maxSize int64) (*readResult, error) {
	now := time.Now()
	ti := &tarImport{dst: dst, prog: prog, maxSize: maxSize,
		now: store.Timespec{Sec: now.Unix(), Nsec: uint32(now.Nanosecond())}}
	ti.root = ti.dir(true)
	tail := &tailReader{r: r}
	tr := tar.NewReader(tail)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, tarError("", err)
		}
		if err := ti.add(ctx, hdr, tr); err != nil {
			return nil, err
		}
	}
	if !tail.endsInZeros() {
		// archive/tar takes a stream cut at an entry's end as the end.
		return nil, fmt.Errorf("tar archive: truncated: no end-of-archive blocks: %w", ErrMalformed)
	}
	// What follows must be the zero padding of the last record. Reading it
	// to the end also lets a download of promised length prove it whole.
	if err := zerosToEnd(r); err != nil {
		return nil, err
	}
	if ti.entries == 0 {
		return nil, fmt.Errorf("tar archive with no entries: %w", ErrMalformed)
	}
	for _, n := range ti.groups() {
		for _, m := range *n {
			m.entry.Nlink = uint32(len(*n))
		}
	}
	if _, err := ti.store(ctx, ti.root); err != nil {
		return nil, err
	}
	ti.res.root = ti.root.entry
	ti.res.stats.Dirs++ // the top directory
	return &ti.res, nil
}

// tarError wraps an error of the tar reader: a malformed archive, or a
// failure to read the input.
func tarError(name string, err error) error {
	where := "tar archive"
	if name != "" {
		where = fmt.Sprintf("tar entry %q", name)
	}
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrFieldTooLong) ||
		strings.HasPrefix(err.Error(), "archive/tar") {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s: truncated: %w", where, ErrMalformed)
		}
		return fmt.Errorf("%s: %v: %w", where, err, ErrMalformed)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func (ti *tarImport) malformed(name, format string, a ...any) error {
	return fmt.Errorf("tar entry %q: %s: %w", name, fmt.Sprintf(format, a...), ErrMalformed)
}

func (ti *tarImport) dir(implied bool) *tarNode {
	ti.nextIno++
	return &tarNode{implied: implied, children: map[string]*tarNode{},
		entry: store.Entry{Type: store.TypeDir, Mode: 0o755, Atime: ti.now, Mtime: ti.now, Ctime: ti.now, Ino: ti.nextIno, Nlink: 1}}
}

// splitPath checks an archive path and returns its names; none for the
// top directory ("." or "./").
func splitPath(p string) ([]string, error) {
	if strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("absolute path")
	}
	var names []string
	for _, n := range strings.Split(p, "/") {
		switch {
		case n == "" || n == ".":
		case n == "..":
			return nil, fmt.Errorf("path with \"..\"")
		case !store.ValidName(n):
			return nil, fmt.Errorf("invalid name %q", n)
		default:
			names = append(names, n)
		}
	}
	return names, nil
}

// parent finds (making implied directories) the directory holding path's
// last name.
func (ti *tarImport) parent(name string, names []string) (*tarNode, error) {
	cur := ti.root
	for i, n := range names[:len(names)-1] {
		next := cur.children[n]
		switch {
		case next == nil:
			next = ti.dir(true)
			next.entry.Name = n
			cur.children[n] = next
		case next.entry.Type == store.TypeSymlink:
			return nil, ti.malformed(name, "would be written through the symlink %s", strings.Join(names[:i+1], "/"))
		case next.entry.Type != store.TypeDir:
			return nil, ti.malformed(name, "%s is not a directory", strings.Join(names[:i+1], "/"))
		}
		cur = next
	}
	return cur, nil
}

// lookup finds an existing path.
func (ti *tarImport) lookup(names []string) *tarNode {
	cur := ti.root
	for _, n := range names {
		if cur = cur.children[n]; cur == nil {
			return nil
		}
	}
	return cur
}

// add takes one archive entry.
func (ti *tarImport) add(ctx context.Context, hdr *tar.Header, tr *tar.Reader) error {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	names, err := splitPath(name)
	if err != nil {
		return ti.malformed(name, "%v", err)
	}
	if len(names) > maxDepth {
		return ti.malformed(name, "nested deeper than %d directories", maxDepth)
	}
	e, err := ti.entryOf(hdr)
	if err != nil {
		return err
	}
	ti.entries++
	if len(names) == 0 {
		if e.Type != store.TypeDir {
			return ti.malformed(name, "the top directory is not a directory")
		}
		if !ti.root.implied {
			return ti.malformed(name, "given twice")
		}
		ti.root.entry, ti.root.implied = e, false
		return nil
	}
	dir, err := ti.parent(name, names)
	if err != nil {
		return err
	}
	base := names[len(names)-1]
	e.Name = base
	old := dir.children[base]
	if old != nil && !(old.implied && e.Type == store.TypeDir) {
		return ti.malformed(name, "given twice")
	}
	switch e.Type {
	case store.TypeDir:
		if old != nil {
			e.Ino = old.entry.Ino
			old.entry, old.implied = e, false
			return nil
		}
		n := ti.dir(false)
		e.Ino = n.entry.Ino
		n.entry = e
		dir.children[base] = n
		return nil
	case store.TypeRegular:
		if hdr.Typeflag == tar.TypeLink {
			return ti.link(dir, base, name, hdr)
		}
		if err := ti.data(ctx, &e, hdr, tr); err != nil {
			return err
		}
		ti.res.stats.Files++
		ti.res.stats.LogicalBytes += e.Size
	case store.TypeSymlink:
		ti.res.stats.Symlinks++
	default:
		ti.res.stats.Others++
	}
	ti.nextIno++
	e.Ino, e.Nlink = ti.nextIno, 1
	dir.children[base] = &tarNode{entry: e}
	return nil
}

// link adds a hard link to an earlier entry.
func (ti *tarImport) link(dir *tarNode, base, name string, hdr *tar.Header) error {
	target, err := splitPath(hdr.Linkname)
	if err != nil {
		return ti.malformed(name, "hard link to %q: %v", hdr.Linkname, err)
	}
	t := ti.lookup(target)
	if t == nil || len(target) == 0 {
		return ti.malformed(name, "hard link to %q, which is not earlier in the archive", hdr.Linkname)
	}
	if t.entry.Type == store.TypeDir {
		return ti.malformed(name, "hard link to the directory %q", hdr.Linkname)
	}
	if t.links == nil {
		t.links = &[]*tarNode{t}
	}
	n := &tarNode{entry: t.entry, links: t.links}
	n.entry.Name = base
	*t.links = append(*t.links, n)
	dir.children[base] = n
	switch t.entry.Type {
	case store.TypeRegular:
		ti.res.stats.Files++
		ti.res.stats.LogicalBytes += t.entry.Size
	case store.TypeSymlink:
		ti.res.stats.Symlinks++
	default:
		ti.res.stats.Others++
	}
	return nil
}

// groups lists the hard-link groups, each once.
func (ti *tarImport) groups() []*[]*tarNode {
	var out []*[]*tarNode
	seen := map[*[]*tarNode]bool{}
	var walk func(n *tarNode)
	walk = func(n *tarNode) {
		if n.links != nil && !seen[n.links] {
			seen[n.links] = true
			out = append(out, n.links)
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(ti.root)
	return out
}

// entryOf makes the entry a header describes, without data.
func (ti *tarImport) entryOf(hdr *tar.Header) (store.Entry, error) {
	name := hdr.Name
	e := store.Entry{Mode: uint32(hdr.Mode) & 0o7777, Nlink: 1}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > 1<<32-1 || int64(hdr.Gid) > 1<<32-1 {
		return e, ti.malformed(name, "owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	e.UID, e.GID = uint32(hdr.Uid), uint32(hdr.Gid)
	e.Mtime = timespec(hdr.ModTime)
	e.Atime, e.Ctime = e.Mtime, e.Mtime
	if !hdr.AccessTime.IsZero() {
		e.Atime = timespec(hdr.AccessTime)
	}
	if !hdr.ChangeTime.IsZero() {
		e.Ctime = timespec(hdr.ChangeTime)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeLink: // archive/tar turns the old TypeRegA into TypeReg
		e.Type = store.TypeRegular
	case tar.TypeDir:
		e.Type = store.TypeDir
	case tar.TypeSymlink:
		e.Type = store.TypeSymlink
		e.Target = hdr.Linkname
		if e.Target == "" || strings.ContainsRune(e.Target, 0) || len(e.Target) > 4096 {
			// Linux makes no symlink to "" (ENOENT): one could not be restored.
			return e, ti.malformed(name, "symlink target not a path")
		}
	case tar.TypeChar, tar.TypeBlock:
		e.Type = map[byte]store.FileType{tar.TypeChar: store.TypeCharDev, tar.TypeBlock: store.TypeBlockDev}[hdr.Typeflag]
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 1<<32-1 || hdr.Devminor > 1<<32-1 {
			return e, ti.malformed(name, "device number out of range")
		}
		e.Rdev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	case tar.TypeFifo:
		e.Type = store.TypeFIFO
	default:
		return e, ti.malformed(name, "entry type %q is not supported", hdr.Typeflag)
	}
	xattrs, err := xattrsOf(hdr.PAXRecords)
	if err != nil {
		return e, ti.malformed(name, "%v", err)
	}
	e.Xattrs = xattrs
	return e, nil
}

// tailReader remembers the last bytes read through it.
type tailReader struct {
	r    io.Reader
	tail [2 * tarBlock]byte
	n    int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n >= len(t.tail) {
		copy(t.tail[:], p[n-len(t.tail):n])
	} else if n > 0 {
		copy(t.tail[:], t.tail[n:])
		copy(t.tail[len(t.tail)-n:], p[:n])
	}
	t.n += int64(n)
	return n, err
}

// zerosToEnd reads r to its end and fails on anything but zeros.
func zerosToEnd(r io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if !store.IsZero(buf[:n]) {
			return fmt.Errorf("tar archive: data after the end-of-archive blocks: %w", ErrMalformed)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return tarError("", err)
		}
	}
}

// endsInZeros reports whether what was read ends in the two zero blocks
// that end a tar archive.
func (t *tailReader) endsInZeros() bool {
	return t.n >= int64(len(t.tail)) && t.n%tarBlock == 0 && store.IsZero(t.tail[:])
}

func timespec(t time.Time) store.Timespec {
	return store.Timespec{Sec: t.Unix(), Nsec: uint32(t.Nanosecond())}
}

// Pax records of extended attributes and ACLs.
const (
	paxXattr      = "SCHILY.xattr."
	paxACLAccess  = "SCHILY.acl.access"
	paxACLDefault = "SCHILY.acl.default"
	xattrAccess   = "system.posix_acl_access"
	xattrDefault  = "system.posix_acl_default"
)

// xattrsOf reads an entry's xattrs from its pax records, sorted by name.
// ACLs GNU tar wrote as text only (--acls without --xattrs) become the
// xattrs the kernel keeps them in.
func xattrsOf(recs map[string]string) ([]store.Xattr, error) {
	var xs []store.Xattr
	for k, v := range recs {
		if name, ok := strings.CutPrefix(k, paxXattr); ok {
			if name == "" || len(name) > 255 || len(v) > 64<<10 {
				return nil, fmt.Errorf("xattr %q of %d bytes", name, len(v))
			}
			xs = append(xs, store.Xattr{Name: name, Value: []byte(v)})
		}
	}
	for _, acl := range [][2]string{{paxACLAccess, xattrAccess}, {paxACLDefault, xattrDefault}} {
		text, ok := recs[acl[0]]
		if !ok || slices.ContainsFunc(xs, func(x store.Xattr) bool { return x.Name == acl[1] }) {
			continue
		}
		value, err := aclFromText(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", acl[0], err)
		}
		if value != nil {
			xs = append(xs, store.Xattr{Name: acl[1], Value: value})
		}
	}
	slices.SortFunc(xs, func(a, b store.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return xs, nil
}

// data reads a regular file's data into blocks. Of a sparse entry, blocks
// that are all zeros are stored as holes and its extents are the blocks
// that are not (tar's own map is read by archive/tar and not shown).
func (ti *tarImport) data(ctx context.Context, e *store.Entry, hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	if hdr.Size < 0 || hdr.Size > ti.maxSize {
		return ti.malformed(name, "size %d, more than %d", hdr.Size, ti.maxSize)
	}
	sparse := hdr.Typeflag == tar.TypeGNUSparse
	for k := range hdr.PAXRecords {
		sparse = sparse || strings.HasPrefix(k, "GNU.sparse.")
	}
	if sparse {
		if ti.sparseSize += hdr.Size; ti.sparseSize > ti.maxSize {
			return ti.malformed(name, "sparse entries claim more than %d bytes in all", ti.maxSize)
		}
	}
	e.Size = uint64(hdr.Size)
	e.BlockSize = store.DefaultBlockSize
	if ti.buf == nil && e.Size > 0 {
		ti.buf = make([]byte, store.DefaultBlockSize)
	}
	var blocks []store.Hash
	var extents []store.Extent
	for off := uint64(0); off < e.Size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(uint64(len(ti.buf)), e.Size-off)
		b := ti.buf[:n]
		if _, err := io.ReadFull(r, b); err != nil {
			return tarError(name, err)
		}
		ti.prog.add(len(b))
		if sparse && store.IsZero(b) {
			blocks = append(blocks, store.HoleHash)
		} else {
			h := ti.dst.Sum(b)
			if err := ti.dst.PutBlock(ctx, h, b); err != nil {
				return err
			}
			blocks = append(blocks, h)
			if k := len(extents) - 1; k >= 0 && extents[k].Off+extents[k].Len == off {
				extents[k].Len += n
			} else {
				extents = append(extents, store.Extent{Off: off, Len: n})
			}
			ti.res.blocks++
			ti.res.blockBytes += n
		}
		off += n
	}
	if sparse && (len(extents) != 1 || extents[0].Len != e.Size) {
		e.Sparse, e.Extents = true, extents
	}
	return e.SetBlocks(blocks, func(b []byte) (store.Hash, error) { return ti.dst.PutTree(ctx, b) })
}

// store writes the tree below n, deepest first, and returns its hash.
func (ti *tarImport) store(ctx context.Context, n *tarNode) (store.Hash, error) {
	entries := make([]store.Entry, 0, len(n.children))
	for _, c := range n.children {
		if c.entry.Type == store.TypeDir {
			h, err := ti.store(ctx, c)
			if err != nil {
				return h, err
			}
			c.entry.Subtree = h
			ti.res.stats.Dirs++
		}
		entries = append(entries, c.entry)
	}
	h, err := ti.dst.PutTree(ctx, store.EncodeTree(entries))
	n.entry.Subtree = h
	return h, err
}
