// Package imagefile writes images to streams and reads them back: the
// native format (self-contained, deduplicated, every block carried with
// its BLAKE3 hash; docs/image-format.md) and plain POSIX tar. It also
// serves a catalog of native image files read-only, without importing
// them.
//
// Everything read here comes from outside: each length is bounded before
// anything is allocated for it, each tree is decoded with the store's
// checks, each block is verified against its hash before it is stored, and
// an import that fails leaves nothing behind (the store's image writer
// gives back what it stored).
package imagefile

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	"github.com/zeebo/blake3"
)

// Magic starts every native image stream. The high first byte and the
// CR LF / ^Z / LF tail catch transfers that mangle binary files, as PNG's
// signature does.
const Magic = "\x89chainfs\r\n\x1a\n"

// Version is the native format version this build writes and reads.
const Version = 1

// Frame types. A stream is Magic, a big-endian u16 version, then frames:
// type:1 uvarint(length) payload[length].
const (
	frameHeader  = 'H' // JSON Header; first
	frameRoot    = 'R' // tree blob of one entry named "root": the top directory
	frameTree    = 'T' // a tree blob
	frameContent = 'C' // a content blob (a long file's block list)
	frameBlock   = 'B' // hash:32 data
	frameEnd     = 'E' // uvarint trees, uvarint blocks, uvarint block bytes, digest:32; last
)

// Limits on what a frame may claim, checked before anything is read into
// memory.
const (
	maxHeader = 1 << 20
	// maxBlob bounds a tree or content blob: a directory of a million
	// entries, or the block list of a 2 TiB file at 256 KiB blocks.
	maxBlob  = 256 << 20
	maxBlock = store.MaxBlockSize
	// maxDepth bounds how deep directories nest: a path of PATH_MAX bytes
	// holds at most half as many names.
	maxDepth = 2048
)

// rootName is the name the top directory's entry carries in the root
// frame; a tree entry must have a name.
const rootName = "root"

// ErrMalformed is returned for a stream that is not a valid image: wrong
// hashes, truncation, hostile paths, absurd sizes, an unknown version.
var ErrMalformed = errors.New("malformed image")

// Header describes the image a native stream carries.
type Header struct {
	// Name is the image's name where it was exported.
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// Region is the region of the repository it was exported from.
	Region string        `json:"region"`
	Origin images.Origin `json:"origin"`
	// Thin says blocks the receiving repository already holds may be left
	// out: only image copy between repositories writes such streams.
	Thin bool `json:"thin,omitempty"`
	// Kind is "disk" for the image of a disk (one file), empty for a tree.
	Kind store.VolumeKind `json:"kind,omitempty"`
}

// frameWriter writes frames and hashes everything but block data, which
// its own hash covers: the end frame's digest thus covers the whole
// stream.
type frameWriter struct {
	w      *bufio.Writer
	digest *blake3.Hasher
	buf    [binary.MaxVarintLen64 + 1]byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 1<<20), digest: blake3.New()}
}

func (fw *frameWriter) start() error {
	b := binary.BigEndian.AppendUint16([]byte(Magic), Version)
	fw.digest.Write(b)
	_, err := fw.w.Write(b)
	return err
}

// head writes a frame's type and length.
func (fw *frameWriter) head(typ byte, length int) error {
	fw.buf[0] = typ
	n := 1 + binary.PutUvarint(fw.buf[1:], uint64(length))
	fw.digest.Write(fw.buf[:n])
	_, err := fw.w.Write(fw.buf[:n])
	return err
}

// frame writes a frame whose payload the digest covers.
func (fw *frameWriter) frame(typ byte, payload []byte) error {
	if err := fw.head(typ, len(payload)); err != nil {
		return err
	}
	fw.digest.Write(payload)
	_, err := fw.w.Write(payload)
	return err
}

// block writes a block frame: its hash is digested, its data is not.
func (fw *frameWriter) block(h store.Hash, data []byte) error {
	if err := fw.head(frameBlock, store.HashSize+len(data)); err != nil {
		return err
	}
	fw.digest.Write(h[:])
	if _, err := fw.w.Write(h[:]); err != nil {
		return err
	}
	_, err := fw.w.Write(data)
	return err
}

// end writes the end frame and flushes.
func (fw *frameWriter) end(trees, blocks, blockBytes uint64) error {
	var p []byte
	for _, v := range []uint64{trees, blocks, blockBytes} {
		p = binary.AppendUvarint(p, v)
	}
	if err := fw.head(frameEnd, len(p)+store.HashSize); err != nil {
		return err
	}
	fw.digest.Write(p)
	p = fw.digest.Sum(p)
	if _, err := fw.w.Write(p); err != nil {
		return err
	}
	return fw.w.Flush()
}

// frameReader reads frames, keeping the digest and the offset for
// messages.
type frameReader struct {
	r      *bufio.Reader
	digest *blake3.Hasher
	off    int64
}

func (fr *frameReader) malformed(format string, a ...any) error {
	return fmt.Errorf("image stream at byte %d: %s: %w", fr.off, fmt.Sprintf(format, a...), ErrMalformed)
}

// read fills p, digesting it when digest is set; running out of input is
// truncation.
func (fr *frameReader) read(p []byte, digest bool) error {
	n, err := io.ReadFull(fr.r, p)
	fr.off += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fr.malformed("truncated")
		}
		return fmt.Errorf("image stream at byte %d: %w", fr.off, err)
	}
	if digest {
		fr.digest.Write(p)
	}
	return nil
}

// start reads the magic and the version.
func (fr *frameReader) start() error {
	b := make([]byte, len(Magic)+2)
	if err := fr.read(b, true); err != nil {
		return err
	}
	if string(b[:len(Magic)]) != Magic {
		return fr.malformed("not a chainfs image")
	}
	if v := binary.BigEndian.Uint16(b[len(Magic):]); v != Version {
		return fmt.Errorf("image format version %d: this chainfs reads version %d: %w", v, Version, ErrMalformed)
	}
	return nil
}

// next reads a frame's type and length, refusing lengths over the type's
// limit.
func (fr *frameReader) next() (typ byte, length int, err error) {
	t, err := fr.r.ReadByte()
	if errors.Is(err, io.EOF) {
		return 0, 0, fr.malformed("truncated: no end frame")
	} else if err != nil {
		return 0, 0, err
	}
	rec := byteRecorder{r: fr.r, b: []byte{t}}
	v, err := binary.ReadUvarint(&rec)
	fr.off += int64(len(rec.b))
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, 0, fr.malformed("truncated")
	} else if err != nil {
		return 0, 0, fr.malformed("frame length: %v", err)
	}
	fr.digest.Write(rec.b)
	limit := frameLimit(t)
	if limit == 0 {
		return 0, 0, fr.malformed("unknown frame type %q", t)
	}
	if v > limit {
		return 0, 0, fr.malformed("frame %q of %d bytes, at most %d", t, v, limit)
	}
	return t, int(v), nil
}

// frameLimit is the largest payload a frame type may have; 0 for an
// unknown type.
func frameLimit(typ byte) uint64 {
	switch typ {
	case frameHeader, frameRoot:
		return maxHeader
	case frameTree, frameContent:
		return maxBlob
	case frameBlock:
		return store.HashSize + maxBlock
	case frameEnd:
		return 3*binary.MaxVarintLen64 + store.HashSize
	}
	return 0
}

// byteRecorder keeps the bytes read through it, for the digest.
type byteRecorder struct {
	r *bufio.Reader
	b []byte
}

func (b *byteRecorder) ReadByte() (byte, error) {
	c, err := b.r.ReadByte()
	if err == nil {
		b.b = append(b.b, c)
	}
	return c, err
}

// payload reads a whole frame payload into memory (bounded by next).
func (fr *frameReader) payload(length int) ([]byte, error) {
	p := make([]byte, length)
	return p, fr.read(p, true)
}

func encodeHeader(h *Header) ([]byte, error) { return json.Marshal(h) }

func decodeHeader(p []byte) (*Header, error) {
	var h Header
	if err := json.Unmarshal(p, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// encodeRoot encodes the top directory's entry as the root frame's blob.
func encodeRoot(root store.Entry) []byte {
	root.Name = rootName
	return store.EncodeTree([]store.Entry{root})
}

// decodeRoot reads the root frame's blob: one directory entry.
func decodeRoot(p []byte) (store.Entry, error) {
	entries, err := store.DecodeTree(p)
	if err != nil {
		return store.Entry{}, err
	}
	if len(entries) != 1 || entries[0].Name != rootName || entries[0].Type != store.TypeDir {
		return store.Entry{}, fmt.Errorf("root frame is not one directory named %q", rootName)
	}
	root := entries[0]
	root.Name = ""
	return root, nil
}

// plainNames reports whether rd names blocks and blobs as image streams
// do, by the plain BLAKE3 hash of their bytes: an encrypted repository
// keys its names.
func plainNames(rd interface{ Sum([]byte) store.Hash }) bool {
	return rd.Sum(nil) == store.Sum(nil)
}
