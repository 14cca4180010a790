package imagefile

import (
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// The tar writer is our own, not archive/tar's: archive/tar cannot write
// sparse files, and an image's holes must stay holes. It writes POSIX
// pax archives that GNU tar reads back exactly (tar --xattrs
// --xattrs-include='*' -xpf): every entry carries its times to the
// nanosecond, numeric owners (no user names, so extraction does not map
// them), xattrs and ACLs as SCHILY.xattr records, hard links as links to
// the first name, and sparse files in GNU's pax sparse format 1.0.

const tarBlock = 512

// tarWriter writes one archive.
type tarWriter struct {
	w  io.Writer
	n  uint64 // bytes written
	hd [tarBlock]byte
}

func (tw *tarWriter) write(p []byte) error {
	n, err := tw.w.Write(p)
	tw.n += uint64(n)
	return err
}

// pad writes zeros up to the next block boundary after size bytes.
func (tw *tarWriter) pad(size uint64) error {
	if r := size % tarBlock; r != 0 {
		return tw.write(make([]byte, tarBlock-r))
	}
	return nil
}

// tarHeader is one entry's ustar header and the pax records it needs.
type tarHeader struct {
	name     string
	typeflag byte
	mode     uint32
	uid, gid uint32
	size     uint64
	mtime    int64
	linkname string
	devmajor uint32
	devminor uint32
	pax      map[string]string
}

// Field limits of the ustar header.
const (
	ustarMaxID   = 0o7777777
	ustarMaxSize = 0o77777777777
	ustarMaxTime = 0o77777777777
)

// writeHeader writes a pax extended header when the entry needs one, then
// its ustar header.
func (tw *tarWriter) writeHeader(h *tarHeader) error {
	if h.pax == nil {
		h.pax = map[string]string{}
	}
	name, prefix, fits := splitUstarName(h.name)
	if !fits {
		h.pax["path"] = h.name
		name = truncate(h.name, 100)
	}
	if len(h.linkname) > 100 {
		h.pax["linkpath"] = h.linkname
	}
	if h.uid > ustarMaxID {
		h.pax["uid"] = strconv.FormatUint(uint64(h.uid), 10)
	}
	if h.gid > ustarMaxID {
		h.pax["gid"] = strconv.FormatUint(uint64(h.gid), 10)
	}
	if h.size > ustarMaxSize {
		h.pax["size"] = strconv.FormatUint(h.size, 10)
	}
	if len(h.pax) > 0 {
		if err := tw.writePax(h); err != nil {
			return err
		}
	}
	b := &tw.hd
	clear(b[:])
	copy(b[0:100], name)
	octal(b[100:108], uint64(h.mode))
	octal(b[108:116], min(uint64(h.uid), ustarMaxID))
	octal(b[116:124], min(uint64(h.gid), ustarMaxID))
	if h.size <= ustarMaxSize {
		octal(b[124:136], h.size)
	}
	octal(b[136:148], uint64(min(max(h.mtime, 0), ustarMaxTime)))
	b[156] = h.typeflag
	copy(b[157:257], truncate(h.linkname, 100))
	copy(b[257:265], "ustar\x0000")
	if h.typeflag == '3' || h.typeflag == '4' {
		octal(b[329:337], uint64(h.devmajor))
		octal(b[337:345], uint64(h.devminor))
	}
	copy(b[345:500], prefix)
	checksum(b)
	return tw.write(b[:])
}

// writePax writes the pax extended header ('x') holding h.pax, records in
// key order so that equal trees give equal archives.
func (tw *tarWriter) writePax(h *tarHeader) error {
	keys := make([]string, 0, len(h.pax))
	binary := false
	for k, v := range h.pax {
		keys = append(keys, k)
		if (k == "path" || k == "linkpath") && !utf8.ValidString(v) {
			binary = true
		}
	}
	if binary {
		// Names are bytes, not necessarily UTF-8: say so, as pax allows.
		keys = append(keys, "hdrcharset")
		h.pax["hdrcharset"] = "BINARY"
	}
	slices.Sort(keys)
	var recs []byte
	for _, k := range keys {
		recs = append(recs, paxRecord(k, h.pax[k])...)
	}
	xh := tarHeader{name: "PaxHeaders/" + truncate(path.Base(h.name), 80), typeflag: 'x', mode: 0o644,
		size: uint64(len(recs)), mtime: h.mtime}
	b := &tw.hd
	clear(b[:])
	copy(b[0:100], xh.name)
	octal(b[100:108], uint64(xh.mode))
	octal(b[108:116], 0)
	octal(b[116:124], 0)
	octal(b[124:136], xh.size)
	octal(b[136:148], uint64(min(max(xh.mtime, 0), ustarMaxTime)))
	b[156] = xh.typeflag
	copy(b[257:265], "ustar\x0000")
	checksum(b)
	if err := tw.write(b[:]); err != nil {
		return err
	}
	if err := tw.write(recs); err != nil {
		return err
	}
	return tw.pad(uint64(len(recs)))
}

// paxRecord formats "<length> key=value\n", the length counting itself.
func paxRecord(k, v string) string {
	size := len(k) + len(v) + 3 // space, '=', newline
	n := len(strconv.Itoa(size))
	if len(strconv.Itoa(size+n)) > n {
		n++
	}
	return fmt.Sprintf("%d %s=%s\n", size+n, k, v)
}

// splitUstarName fits a name into ustar's name (100) and prefix (155)
// fields, split at a slash.
func splitUstarName(name string) (n, prefix string, ok bool) {
	if len(name) <= 100 {
		return name, "", true
	}
	for i := len(name) - 1; i > 0; i-- {
		if name[i] == '/' && i <= 155 && len(name)-i-1 <= 100 && len(name)-i-1 > 0 {
			return name[i+1:], name[:i], true
		}
	}
	return "", "", false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// octal writes v as zero-padded octal digits and a NUL into field.
func octal(field []byte, v uint64) {
	s := strconv.FormatUint(v, 8)
	w := len(field) - 1
	for len(s) < w {
		s = "0" + s
	}
	copy(field, s[len(s)-w:])
	field[w] = 0
}

// checksum fills the header's checksum field: the sum of its bytes with
// the field itself counted as spaces.
func checksum(b *[tarBlock]byte) {
	copy(b[148:156], "        ")
	var sum uint64
	for _, c := range b {
		sum += uint64(c)
	}
	s := fmt.Sprintf("%06o", sum)
	copy(b[148:], s)
	b[154] = 0
	b[155] = ' '
}

// paxTime formats a time as pax wants it: seconds, a dot, nanoseconds.
// A negative time counts back, so -1.5 is half a second before -1.
func paxTime(t store.Timespec) string {
	if t.Sec < 0 && t.Nsec > 0 {
		return fmt.Sprintf("-%d.%09d", -(t.Sec + 1), 1e9-int64(t.Nsec))
	}
	return fmt.Sprintf("%d.%09d", t.Sec, t.Nsec)
}

// WriteTar writes the tree whose top directory is root, read from rd, as
// a pax tar archive. Sockets, which tar cannot hold, are left out with a
// warning each.
func WriteTar(ctx context.Context, rd store.Reader, root store.Entry, w io.Writer, opts ExportOptions) (*ExportStats, error) {
	tw := &tarWriter{w: w}
	st := &ExportStats{}
	links := map[[2]uint64]string{}
	var walk func(e *store.Entry, name string) error
	walk = func(e *store.Entry, name string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type == store.TypeSocket {
			st.Warnings = append(st.Warnings, name+": a socket, which tar cannot hold: left out")
			return nil
		}
		h := &tarHeader{name: name, mode: e.Mode, uid: e.UID, gid: e.GID, mtime: e.Mtime.Sec,
			pax: map[string]string{"mtime": paxTime(e.Mtime), "atime": paxTime(e.Atime), "ctime": paxTime(e.Ctime)}}
		for _, x := range e.Xattrs {
			h.pax["SCHILY.xattr."+x.Name] = string(x.Value)
		}
		if e.IsHardLink() {
			key := [2]uint64{e.Dev, e.Ino}
			if first, ok := links[key]; ok {
				h.typeflag, h.linkname = '1', first
				return tw.writeHeader(h)
			}
			links[key] = name
		}
		switch e.Type {
		case store.TypeDir:
			h.typeflag = '5'
			if name != "./" {
				h.name += "/"
			}
			if err := tw.writeHeader(h); err != nil {
				return err
			}
			entries, err := rd.Tree(ctx, e.Subtree)
			if err != nil {
				return err
			}
			for i := range entries {
				child := entries[i].Name
				if name != "./" {
					child = name + "/" + child
				}
				if err := walk(&entries[i], child); err != nil {
					return err
				}
			}
			return nil
		case store.TypeRegular:
			return tw.file(ctx, rd, e, h, st, opts.Progress)
		case store.TypeSymlink:
			h.typeflag, h.linkname = '2', e.Target
		case store.TypeCharDev, store.TypeBlockDev:
			h.typeflag = map[store.FileType]byte{store.TypeCharDev: '3', store.TypeBlockDev: '4'}[e.Type]
			h.devmajor, h.devminor = unix.Major(e.Rdev), unix.Minor(e.Rdev)
		case store.TypeFIFO:
			h.typeflag = '6'
		default:
			return fmt.Errorf("%s: entry type %s: %w", name, e.Type, store.ErrCorrupt)
		}
		return tw.writeHeader(h)
	}
	if err := walk(&root, "./"); err != nil {
		return nil, err
	}
	// Two zero blocks end the archive.
	if err := tw.write(make([]byte, 2*tarBlock)); err != nil {
		return nil, err
	}
	st.StreamBytes = tw.n
	return st, nil
}

// file writes a regular file's header and data; a sparse file in GNU's
// pax sparse format 1.0, whose data starts with the map of its extents.
func (tw *tarWriter) file(ctx context.Context, rd store.Reader, e *store.Entry, h *tarHeader, st *ExportStats, prog *Progress) error {
	h.typeflag = '0'
	h.size = e.Size
	extents := []store.Extent{{Off: 0, Len: e.Size}}
	var sparseMap []byte
	if e.Sparse {
		extents = e.Extents
		if n := len(extents); n == 0 || extents[n-1].Off+extents[n-1].Len < e.Size {
			// A file that ends in a hole ends its map with an empty
			// extent at its size, as GNU tar writes it and needs it to
			// give the file its size.
			extents = append(slices.Clip(extents), store.Extent{Off: e.Size, Len: 0})
		}
		sparseMap = fmt.Appendf(nil, "%d\n", len(extents))
		var data uint64
		for _, x := range extents {
			sparseMap = fmt.Appendf(sparseMap, "%d\n%d\n", x.Off, x.Len)
			data += x.Len
		}
		if r := len(sparseMap) % tarBlock; r != 0 {
			sparseMap = append(sparseMap, make([]byte, tarBlock-r)...)
		}
		h.pax["GNU.sparse.major"] = "1"
		h.pax["GNU.sparse.minor"] = "0"
		h.pax["GNU.sparse.name"] = h.name
		h.pax["GNU.sparse.realsize"] = strconv.FormatUint(e.Size, 10)
		dir, base := path.Split(h.name)
		h.name = dir + "GNUSparseFile.0/" + base
		if _, _, fits := splitUstarName(h.name); !fits {
			// GNU.sparse.name names the file; this name only has to fit.
			h.name = "GNUSparseFile.0/" + truncate(base, 80)
		}
		h.size = uint64(len(sparseMap)) + data
	}
	if err := tw.writeHeader(h); err != nil {
		return err
	}
	if err := tw.write(sparseMap); err != nil {
		return err
	}
	// Each block, read ahead in parallel (holes as zeros), is cut to the
	// extents.
	bs := uint64(e.BlockSize)
	err := eachBlockData(ctx, rd, e, func(i int, _ store.Hash, data []byte) error {
		start := uint64(i) * bs
		end := start + uint64(len(data))
		for _, x := range extents {
			lo, hi := max(start, x.Off), min(end, x.Off+x.Len)
			if lo >= hi {
				continue
			}
			if err := tw.write(data[lo-start : hi-start]); err != nil {
				return err
			}
		}
		prog.add(len(data))
		st.Blocks++
		st.BlockBytes += uint64(len(data))
		return nil
	})
	if err != nil {
		return err
	}
	return tw.pad(h.size)
}
