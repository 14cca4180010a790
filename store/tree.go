package store

import (
	"encoding/binary"
	"fmt"
	"sort"
	"syscall"
)

// FileType is the kind of a tree entry.
type FileType uint8

// The kinds of entry a tree records.
const (
	TypeRegular FileType = iota + 1
	TypeDir
	TypeSymlink
	TypeFIFO
	TypeCharDev
	TypeBlockDev
	TypeSocket
)

var typeNames = [...]string{"", "file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket"}

// typeBits are the POSIX S_IF* bits of each type, in FileType order.
var typeBits = [...]uint32{0, syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK, syscall.S_IFIFO, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFSOCK}

// Bits returns the type's S_IF* bits, as stat and mknod use them.
func (t FileType) Bits() uint32 {
	if int(t) < len(typeBits) {
		return typeBits[t]
	}
	return 0
}

// TypeOfMode returns the type of a stat mode, or 0 for none known.
func TypeOfMode(mode uint32) FileType {
	for t, bits := range typeBits {
		if t > 0 && mode&syscall.S_IFMT == bits {
			return FileType(t)
		}
	}
	return 0
}

func (t FileType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", t)
}

// Timespec is a file time exact to the nanosecond. Seconds are signed and
// 64-bit so that any time a file system can hold round-trips.
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// Xattr is one extended attribute (POSIX ACLs are xattrs too).
type Xattr struct {
	Name  string
	Value []byte
}

// Entry is one name in a directory of a snapshot, with everything needed to
// show or restore it exactly.
type Entry struct {
	Name  string // any bytes but '/' and NUL
	Type  FileType
	Mode  uint32 // permission bits with setuid, setgid and sticky (07777)
	UID   uint32
	GID   uint32
	Size  uint64
	Atime Timespec
	Mtime Timespec
	// Ctime is the source's change time; it cannot be restored but decides,
	// with Mtime, Size, Ino and Mode, whether a file is re-read.
	Ctime Timespec
	// Dev and Ino identify the source file; entries of one snapshot with
	// the same Dev and Ino and Nlink > 1 are hard links of one file.
	Dev   uint64
	Ino   uint64
	Nlink uint32
	Rdev  uint64 // device number of character and block devices
	// Target is a symlink's target.
	Target string
	Xattrs []Xattr // sorted by name
	// Subtree is the tree blob of a directory.
	Subtree Hash
	// BlockSize, and either Blocks or Content, describe a regular file's
	// data: block i covers [i*BlockSize, min((i+1)*BlockSize, Size)).
	// Files with many blocks keep their list in a content blob (Content)
	// so that the directory blob stays small.
	BlockSize uint32
	Blocks    []Hash
	Content   Hash
	// HasContent says Content is set (the list is out of line).
	HasContent bool
	// Sparse says the file has holes; then Extents lists exactly its data
	// ranges, as SEEK_DATA and SEEK_HOLE reported them, and the rest reads
	// as zeros. Blocks wholly in a hole are HoleHash.
	Sparse  bool
	Extents []Extent
}

// Extent is a range of a sparse file that holds data.
type Extent struct {
	Off uint64 `json:"off"`
	Len uint64 `json:"len"`
}

// NumBlocks is the number of blocks a regular file of this size has.
func (e *Entry) NumBlocks() int {
	if e.BlockSize == 0 || e.Size == 0 {
		return 0
	}
	return int((e.Size + uint64(e.BlockSize) - 1) / uint64(e.BlockSize))
}

// BlockLen is the length of block i.
func (e *Entry) BlockLen(i int) uint32 {
	start := uint64(i) * uint64(e.BlockSize)
	if rest := e.Size - start; rest < uint64(e.BlockSize) {
		return uint32(rest)
	}
	return e.BlockSize
}

// IsHardLink reports whether the entry is one name of a multiply linked file.
func (e *Entry) IsHardLink() bool { return e.Type != TypeDir && e.Nlink > 1 }

// maxInlineBlocks is how many block hashes an entry carries itself before
// the list moves to a content blob.
const maxInlineBlocks = 16

// ExtentsOf gives the data ranges of a block list of block size bs for a
// file of size bytes: the blocks that are not holes, merged. A list
// without holes is not sparse (nil).
func ExtentsOf(blocks []Hash, bs, size uint64) (sparse bool, extents []Extent) {
	extents = []Extent{}
	for i, h := range blocks {
		if h.IsHole() {
			sparse = true
			continue
		}
		off := uint64(i) * bs
		length := min(bs, size-off)
		if k := len(extents) - 1; k >= 0 && extents[k].Off+extents[k].Len == off {
			extents[k].Len += length
		} else {
			extents = append(extents, Extent{Off: off, Len: length})
		}
	}
	if !sparse {
		return false, nil
	}
	return true, extents
}

const (
	treeBlobVersion    = 1
	contentBlobVersion = 1
	contentInline      = 0
	contentOutOfLine   = 1
)

// EncodeTree serialises a directory's entries, sorted by name, into a tree
// blob. The encoding is deterministic, so an unchanged directory gets the
// same hash and is stored once.
func EncodeTree(entries []Entry) []byte {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	b := make([]byte, 0, 64+len(entries)*96)
	b = append(b, treeBlobVersion)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for i := range entries {
		b = appendEntry(b, &entries[i])
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t Timespec) []byte {
	b = binary.AppendVarint(b, t.Sec)
	return binary.AppendUvarint(b, uint64(t.Nsec))
}

func appendEntry(b []byte, e *Entry) []byte {
	b = appendBytes(b, e.Name)
	b = append(b, byte(e.Type))
	for _, v := range []uint64{uint64(e.Mode), uint64(e.UID), uint64(e.GID), e.Size} {
		b = binary.AppendUvarint(b, v)
	}
	b = appendTime(b, e.Atime)
	b = appendTime(b, e.Mtime)
	b = appendTime(b, e.Ctime)
	for _, v := range []uint64{e.Dev, e.Ino, uint64(e.Nlink), e.Rdev} {
		b = binary.AppendUvarint(b, v)
	}
	b = appendBytes(b, e.Target)
	b = binary.AppendUvarint(b, uint64(len(e.Xattrs)))
	for _, x := range e.Xattrs {
		b = appendBytes(b, x.Name)
		b = appendBytes(b, string(x.Value))
	}
	switch e.Type {
	case TypeDir:
		b = append(b, e.Subtree[:]...)
	case TypeRegular:
		b = binary.AppendUvarint(b, uint64(e.BlockSize))
		if e.HasContent {
			b = append(b, contentOutOfLine)
			b = append(b, e.Content[:]...)
		} else {
			b = append(b, contentInline)
			b = binary.AppendUvarint(b, uint64(len(e.Blocks)))
			for _, h := range e.Blocks {
				b = append(b, h[:]...)
			}
		}
		if !e.Sparse {
			b = append(b, 0)
			break
		}
		b = append(b, flagSparse)
		b = binary.AppendUvarint(b, uint64(len(e.Extents)))
		var end uint64
		for _, x := range e.Extents {
			b = binary.AppendUvarint(b, x.Off-end)
			b = binary.AppendUvarint(b, x.Len)
			end = x.Off + x.Len
		}
	}
	return b
}

// flagSparse marks a regular file entry that carries an extent list.
const flagSparse = 1

// EncodeContent serialises a block list into a content blob.
func EncodeContent(blocks []Hash) []byte {
	b := make([]byte, 0, 12+len(blocks)*HashSize)
	b = append(b, contentBlobVersion)
	b = binary.AppendUvarint(b, uint64(len(blocks)))
	for _, h := range blocks {
		b = append(b, h[:]...)
	}
	return b
}

// decoder reads a blob and remembers the first error, so that decoding a
// corrupt blob never panics and reports once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or malformed blob: %w", ErrCorrupt)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail()
	}
	return uint32(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) hash() (h Hash) {
	if len(d.b) < HashSize {
		d.fail()
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[HashSize:]
	return h
}

func (d *decoder) time() Timespec {
	t := Timespec{Sec: d.varint(), Nsec: d.u32()}
	if t.Nsec >= 1e9 {
		d.fail()
	}
	return t
}

// count reads a count of items each at least min bytes long, refusing
// counts the remaining bytes cannot hold.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

// DecodeTree parses a tree blob. A malformed blob is ErrCorrupt.
func DecodeTree(blob []byte) ([]Entry, error) {
	d := &decoder{b: blob}
	if v := d.byte(); v != treeBlobVersion && d.err == nil {
		return nil, fmt.Errorf("tree blob version %d: %w", v, ErrCorrupt)
	}
	n := d.count(20)
	entries := make([]Entry, n)
	for i := range entries {
		d.entry(&entries[i])
		if d.err != nil {
			return nil, d.err
		}
		if i > 0 && entries[i-1].Name >= entries[i].Name {
			return nil, fmt.Errorf("tree blob entries out of order: %w", ErrCorrupt)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("tree blob has %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	return entries, d.err
}

func (d *decoder) entry(e *Entry) {
	e.Name = string(d.bytes())
	e.Type = FileType(d.byte())
	e.Mode = d.u32()
	e.UID = d.u32()
	e.GID = d.u32()
	e.Size = d.uvarint()
	e.Atime = d.time()
	e.Mtime = d.time()
	e.Ctime = d.time()
	e.Dev = d.uvarint()
	e.Ino = d.uvarint()
	e.Nlink = d.u32()
	e.Rdev = d.uvarint()
	e.Target = string(d.bytes())
	if nx := d.count(2); nx > 0 {
		e.Xattrs = make([]Xattr, nx)
		for i := range e.Xattrs {
			e.Xattrs[i] = Xattr{Name: string(d.bytes()), Value: append([]byte(nil), d.bytes()...)}
		}
	}
	switch e.Type {
	case TypeDir:
		e.Subtree = d.hash()
	case TypeRegular:
		e.BlockSize = d.u32()
		switch d.byte() {
		case contentOutOfLine:
			e.HasContent = true
			e.Content = d.hash()
		case contentInline:
			if n := d.count(HashSize); n > 0 {
				e.Blocks = make([]Hash, n)
				for i := range e.Blocks {
					e.Blocks[i] = d.hash()
				}
			}
			if d.err == nil && len(e.Blocks) != e.NumBlocks() {
				d.err = fmt.Errorf("entry %q: %d blocks for size %d: %w", e.Name, len(e.Blocks), e.Size, ErrCorrupt)
			}
		default:
			d.fail()
		}
		switch d.byte() {
		case 0:
		case flagSparse:
			e.Sparse = true
			if n := d.count(2); n > 0 {
				e.Extents = make([]Extent, n)
				var end uint64
				for i := range e.Extents {
					off := end + d.uvarint()
					l := d.uvarint()
					if l == 0 || off < end || off+l < off || off+l > e.Size {
						d.fail()
						break
					}
					e.Extents[i] = Extent{Off: off, Len: l}
					end = off + l
				}
			}
		default:
			d.fail()
		}
		if d.err == nil && e.Size > 0 && e.BlockSize == 0 {
			d.err = fmt.Errorf("entry %q: block size 0: %w", e.Name, ErrCorrupt)
		}
	case TypeSymlink, TypeFIFO, TypeCharDev, TypeBlockDev, TypeSocket:
	default:
		d.fail()
	}
	if d.err == nil && !ValidName(e.Name) {
		d.err = fmt.Errorf("entry name %q: %w", e.Name, ErrCorrupt)
	}
}

// DecodeContent parses a content blob.
func DecodeContent(blob []byte) ([]Hash, error) {
	d := &decoder{b: blob}
	if v := d.byte(); v != contentBlobVersion && d.err == nil {
		return nil, fmt.Errorf("content blob version %d: %w", v, ErrCorrupt)
	}
	blocks := make([]Hash, d.count(HashSize))
	for i := range blocks {
		blocks[i] = d.hash()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("content blob has %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	return blocks, d.err
}

// ValidName reports whether s can be a file name in a tree.
func ValidName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '/' || s[i] == 0 {
			return false
		}
	}
	return true
}
