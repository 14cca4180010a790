package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/klauspost/compress/zstd"
)

// Codec is how a block's bytes are kept in its pack. The block record
// says which (its flags byte); a block's id is the hash of its bytes as
// they were read, whatever the codec, so deduplication does not depend
// on it, and a block is verified after it is decoded.
type Codec byte

// The codecs.
const (
	// CodecRaw keeps the bytes as they are.
	CodecRaw Codec = 0
	// CodecZstd keeps them as one zstd frame.
	CodecZstd Codec = 1
)

// Compression is what a repository or a volume does with the blocks it
// stores.
type Compression string

// The compressions.
const (
	// CompressionOff stores every block as it is.
	CompressionOff Compression = "off"
	// CompressionFast compresses with zstd's fastest level: about as
	// fast as the disk on one core, and most of the gain.
	CompressionFast Compression = "fast"
	// CompressionMax compresses with zstd's best level this package
	// offers: smaller, several times the CPU.
	CompressionMax Compression = "max"
)

// DefaultCompression is a new repository's until it is told otherwise.
// A repository made before compression, which records none, stores its
// blocks as they are until told to compress (SetCompression): compressed
// blocks raise its schema, which an older chainfs would then refuse.
const DefaultCompression = CompressionFast

// ParseCompression reads off, fast or max.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case CompressionOff, CompressionFast, CompressionMax:
		return c, nil
	}
	return "", fmt.Errorf("compression %q: want off, fast or max: %w", s, ErrInvalid)
}

var compressionKey = metaKey("compression")

// Compression is the repository's compression: what a volume that names
// none does with the blocks it stores.
func (r *Repo) Compression(ctx context.Context) (Compression, error) {
	var c Compression
	err := r.view(func(txn *badger.Txn) (err error) { c, err = compressionIn(txn); return err })
	return c, err
}

// compressionIn reads the repository's compression in txn.
func compressionIn(txn *badger.Txn) (Compression, error) {
	c := CompressionOff // made before compression (DefaultCompression)
	if err := getJSON(txn, compressionKey, &c); err != nil && !errors.Is(err, ErrNotFound) {
		return "", fmt.Errorf("compression setting: %w", err)
	}
	if _, err := ParseCompression(string(c)); err != nil {
		return "", fmt.Errorf("compression setting %q: %w", c, ErrCorrupt)
	}
	return c, nil
}

// SetCompression sets the repository's compression. It applies to blocks
// stored from then on; those stored before stay as they are.
func (r *Repo) SetCompression(ctx context.Context, c Compression) error {
	if _, err := ParseCompression(string(c)); err != nil {
		return err
	}
	return r.commit(ctx, func(m metaTxn) error { return m.setJSON(compressionKey, c) })
}

// encoders are the zstd encoders, one per level, made on first use. An
// encoder's EncodeAll is safe for concurrent use.
var encoders = map[Compression]func() *zstd.Encoder{
	CompressionFast: sync.OnceValue(func() *zstd.Encoder { return newEncoder(zstd.SpeedFastest) }),
	CompressionMax:  sync.OnceValue(func() *zstd.Encoder { return newEncoder(zstd.SpeedBetterCompression) }),
}

// encoderWindow is the encoders' window. Each block is a frame of its
// own, so a window past the block gains nothing, and every encoder keeps
// about twice its window for as long as the process runs, one per core: a
// window of the largest block size (16 MiB) kept 32 MiB an encoder. A
// block larger than the window still compresses, with matches no farther
// than it.
const encoderWindow = 1 << 20

func newEncoder(level zstd.EncoderLevel) *zstd.Encoder {
	// No checksum: the block's hash checks it after decoding.
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(encoderWindow))
	if err != nil {
		panic(err) // only for options out of range
	}
	return e
}

// zstdDecoder decodes blocks; DecodeAll is safe for concurrent use, as many
// at once as there are cores.
var zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
	// DecodeAll writes no further than its destination's capacity: a
	// damaged or hostile frame neither allocates nor writes past the
	// caller's block.
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(MaxBlockSize), zstd.IgnoreChecksum(true), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		panic(err)
	}
	return d
})

// compressBlock returns what to store of data with c, appended to dst,
// and its codec: compressed only where that saves at least an eighth,
// since every read of a compressed block pays for its decoding.
func compressBlock(c Compression, data, dst []byte) ([]byte, Codec) {
	enc, ok := encoders[c]
	if !ok || len(data) < 64 || !worthTrying(enc(), data, dst) {
		return data, CodecRaw
	}
	out := enc().EncodeAll(data, dst[:0])
	if len(out) > len(data)-len(data)/8 {
		return data, CodecRaw
	}
	return out, CodecZstd
}

// sampleSize is the size of the pieces of a large block compressed first,
// to tell whether the whole is worth it.
const sampleSize = 8 << 10

// sampledFrom is the size from which a block is sampled first: for a
// compressible block the sample is work done again, at most a sixteenth
// of it from here on.
const sampledFrom = 16 * sampleSize

// worthTrying tells, for a block of sampledFrom bytes or more, whether
// compressing it may save an eighth, from its first piece and its middle
// one: random or compressed data (a video, an archive, a disk's encrypted
// partition) costs zstd nearly as much CPU as text, for nothing. A block
// whose two pieces do not compress is kept as it is, even when the rest
// of it would have.
func worthTrying(enc *zstd.Encoder, data, dst []byte) bool {
	if len(data) < sampledFrom {
		return true
	}
	mid := len(data) / 2
	for _, piece := range [][]byte{data[:sampleSize], data[mid : mid+sampleSize]} {
		if out := enc.EncodeAll(piece, dst[:0]); len(out) <= len(piece)-len(piece)/8 {
			return true
		}
	}
	return false
}

// decodeBlock decodes a stored block into p, which holds the block, and
// returns its length. A frame that decodes to more than p holds is
// damage.
func decodeBlock(codec Codec, stored, p []byte) (int, error) {
	switch codec {
	case CodecRaw:
		if len(stored) > len(p) {
			return 0, fmt.Errorf("%d bytes, buffer %d: %w", len(stored), len(p), errUndecodable)
		}
		return copy(p, stored), nil
	case CodecZstd:
		out, err := zstdDecoder().DecodeAll(stored, p[:0:len(p)])
		if err != nil {
			return 0, fmt.Errorf("zstd: %v: %w", err, errUndecodable)
		}
		if len(out) > len(p) || (len(out) > 0 && &out[0] != &p[0]) {
			return 0, fmt.Errorf("zstd: decodes to %d bytes, buffer %d: %w", len(out), len(p), errUndecodable)
		}
		return len(out), nil
	}
	return 0, fmt.Errorf("codec %d: %w", codec, errUndecodable)
}

// errUndecodable: stored bytes that do not decode. Its readers take it
// for damage as they take a hash mismatch (ErrCorrupt), and read again
// from the store what came from a cache of it.
var errUndecodable = errors.New("does not decode")

// storedBuffers hold blocks as they are kept, compressed: as they are
// compressed, and as they are read before they are decoded into the
// caller's buffer. Each grows to the largest block it held: a fresh
// buffer of the largest block size for every block would cost more than
// the compression.
var storedBuffers sync.Pool

// storedBuffer returns a buffer of at least n bytes, for putStored.
func storedBuffer(n int) *[]byte {
	bp, _ := storedBuffers.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	*bp = (*bp)[:n]
	return bp
}

// putStored gives a buffer of storedBuffer back.
func putStored(bp *[]byte) { storedBuffers.Put(bp) }
