package imagefile

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	"github.com/klauspost/compress/zstd"
)

// Format is an image stream's format.
type Format string

// The formats an image is exported in.
const (
	FormatNative Format = "native"
	FormatTar    Format = "tar"
	FormatRaw    Format = "raw"
)

// ParseFormat reads a format's name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatNative, FormatTar, FormatRaw:
		return f, nil
	}
	return "", fmt.Errorf("format %q: want native, tar or raw: %w", s, store.ErrInvalid)
}

// ImportOptions configure an import.
type ImportOptions struct {
	// Meta is the new image's owner and description; its origin is filled
	// in. An empty description takes the native header's.
	Meta images.Meta
	// Origin says where the image comes from (default: an import); its
	// region is the stream's when the stream names one.
	Origin images.Origin
	// Thin accepts a native stream that leaves out blocks the repository
	// holds (image copy between repositories).
	Thin bool
	// Raw, when set, reads the stream (maybe compressed) as a raw disk
	// image: the image of a disk whose one file is Raw (its name, mode,
	// owner and times). A raw disk cannot be told from its bytes.
	Raw *store.Entry
	// Progress, if set, counts the block data read.
	Progress *Progress
	// NativeOnly refuses a stream that is not a native image, and one
	// that is compressed: what is read is then at most what the stream
	// holds, which its caller can bound.
	NativeOnly bool
	// Verify, if set, is called once the stream is read and before the
	// image is committed: an error leaves no image (a download whose hash
	// is not the one promised).
	Verify func() error
	// Password gives the password of a stream sealed with one (image
	// export --encrypt), asked only for such a stream.
	Password func(ctx context.Context) ([]byte, error)
}

// ImportStats say what an import read and stored.
type ImportStats struct {
	Format Format `json:"format"`
	// Compression is "gzip" or "zstd" when the stream was compressed.
	Compression string `json:"compression,omitempty"`
	// Sealed: the stream was sealed with a password (image export
	// --encrypt).
	Sealed bool `json:"sealed,omitempty"`
	// StreamBytes is what was read from the source.
	StreamBytes uint64 `json:"stream_bytes"`
	Blocks      uint64 `json:"blocks"`
	BlockBytes  uint64 `json:"block_bytes"`
	// StoredBytes is block data the repository did not hold before.
	StoredBytes uint64 `json:"stored_bytes"`
	// LinkedBlocks are blocks a thin stream left out, found in the
	// repository.
	LinkedBlocks uint64 `json:"linked_blocks,omitempty"`
}

// Import reads an image stream, native or tar (either may be gzip- or
// zstd-compressed; the format is detected), into a new image called name.
// Every block is verified before it is stored and blocks the repository
// holds are not stored again. It is atomic: on any error there is no image
// and nothing it stored is left.
func Import(ctx context.Context, repo *store.Repo, name string, r io.Reader, opts ImportOptions) (*images.Image, *ImportStats, error) {
	cr := &countingReader{r: r}
	st := &ImportStats{}
	br := bufio.NewReaderSize(cr, 1<<20)
	if head, _ := br.Peek(16); !opts.NativeOnly && store.IsSealedFile(head) {
		if opts.Password == nil {
			return nil, nil, fmt.Errorf("import %s: the stream is sealed with a password (image export --encrypt): give it with --image-password-file: %w", name, store.ErrWrongPassword)
		}
		pw, err := opts.Password(ctx)
		if err != nil {
			return nil, nil, err
		}
		opened, err := store.OpenSealedFile(br, pw)
		if err != nil {
			return nil, nil, fmt.Errorf("import %s: %w", name, sealedDamage(err))
		}
		st.Sealed = true
		br = bufio.NewReaderSize(&truncationIsMalformed{r: sealedDamageIsMalformed{opened}, codec: "sealed"}, 1<<20)
	}
	br, format, err := detect(br, st, opts.Raw != nil)
	if err != nil {
		return nil, nil, err
	}
	st.Format = format
	if opts.NativeOnly && (format != FormatNative || st.Compression != "") {
		return nil, nil, fmt.Errorf("import %s: a %s stream, not an uncompressed native image: %w", name, cmp.Or(st.Compression, string(format)), ErrMalformed)
	}
	meta := opts.Meta
	meta.Origin = opts.Origin
	if meta.Origin.Kind == "" {
		meta.Origin.Kind = "import"
	}
	if format == FormatRaw {
		meta.Kind = store.KindDisk
	}
	w, err := images.Begin(ctx, repo, name, meta)
	if err != nil {
		return nil, nil, err
	}
	var res *readResult
	switch format {
	case FormatNative:
		var has func(store.Hash) bool
		if opts.Thin {
			has = repo.Index().HasBlock
		}
		if plainNames(repo) {
			res, err = readNative(ctx, br, w, has, opts.Progress)
			break
		}
		// An encrypted repository: blocks and trees renamed (a thin
		// stream names blocks by plain names the repository has not).
		var rs *renamingSink
		if rs, err = newRenamingSink(w, repo.Info().Dir); err != nil {
			break
		}
		defer rs.close()
		if res, err = readNative(ctx, br, rs, nil, opts.Progress); err == nil {
			res.root.Subtree, err = rs.finish(ctx, res.root.Subtree)
		}
	case FormatTar:
		res, err = readTar(ctx, br, w, opts.Progress, maxTarFileSize)
	default:
		res, err = readRaw(ctx, br, w, *opts.Raw, opts.Progress)
	}
	if err == nil && opts.Verify != nil {
		err = opts.Verify()
	}
	if err != nil {
		w.Abort()
		return nil, nil, fmt.Errorf("import %s: %w", name, err)
	}
	if h := res.header; h != nil {
		// The header is the exporter's word; it is taken only now that the
		// whole stream checked out.
		err = w.UpdateMeta(ctx, func(m *images.Meta) {
			if m.Description == "" {
				m.Description = h.Description
			}
			m.Kind = h.Kind
			m.Origin.Region = cmp.Or(h.Origin.Region, h.Region)
		})
		if err != nil {
			w.Abort()
			return nil, nil, fmt.Errorf("import %s: %w", name, err)
		}
	}
	img, err := w.Commit(ctx, res.root, res.stats)
	if err != nil {
		return nil, nil, err
	}
	st.StreamBytes = cr.n
	st.Blocks, st.BlockBytes, st.LinkedBlocks = res.blocks, res.blockBytes, res.linked
	st.StoredBytes = img.Snapshot.Stats.StoredBytes
	return img, st, nil
}

// Magic numbers of what detect recognises.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// tarMagicOffset is where a ustar header keeps "ustar".
const tarMagicOffset = 257

// detect tells the stream's format from its first bytes, unwrapping gzip
// and zstd; a raw stream is only unwrapped.
func detect(br *bufio.Reader, st *ImportStats, raw bool) (*bufio.Reader, Format, error) {
	for range 2 {
		head, perr := br.Peek(512)
		if len(head) == 0 && perr != nil && perr != io.EOF {
			// A read that failed (a sealed stream that does not open, a
			// lost connection) is that failure, not empty input.
			return nil, "", perr
		}
		switch {
		case raw && (st.Compression != "" || !bytes.HasPrefix(head, gzipMagic) && !bytes.HasPrefix(head, zstdMagic)):
			return br, FormatRaw, nil
		case bytes.HasPrefix(head, []byte(Magic)):
			return br, FormatNative, nil
		case len(head) >= tarMagicOffset+5 && string(head[tarMagicOffset:tarMagicOffset+5]) == "ustar":
			return br, FormatTar, nil
		case st.Compression == "" && bytes.HasPrefix(head, gzipMagic):
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, "", fmt.Errorf("gzip: %v: %w", err, ErrMalformed)
			}
			st.Compression = "gzip"
			br = bufio.NewReaderSize(&truncationIsMalformed{r: zr, codec: "gzip"}, 1<<20)
		case st.Compression == "" && bytes.HasPrefix(head, zstdMagic):
			zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return nil, "", fmt.Errorf("zstd: %v: %w", err, ErrMalformed)
			}
			st.Compression = "zstd"
			br = bufio.NewReaderSize(&truncationIsMalformed{r: zr.IOReadCloser(), codec: "zstd"}, 1<<20)
		case len(head) == 0:
			return nil, "", fmt.Errorf("empty input: %w", ErrMalformed)
		case len(head) == tarBlock && store.IsZero(head):
			// An archive of nothing is zeros; readTar says so.
			return br, FormatTar, nil
		default:
			return nil, "", fmt.Errorf("neither a chainfs image nor a tar archive: %w", ErrMalformed)
		}
	}
	return nil, "", fmt.Errorf("neither a chainfs image nor a tar archive: %w", ErrMalformed)
}

// sealedDamageIsMalformed reports a sealed file's damage, which the store
// calls corrupt, as a malformed image: the file is damaged, not the
// repository.
type sealedDamageIsMalformed struct{ r io.Reader }

func (s sealedDamageIsMalformed) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	return n, sealedDamage(err)
}

// sealedDamage is err as a sealed file's reader gave it, with the damage
// the store calls corrupt or of an unknown format said to be the file's:
// a malformed image, not a damaged repository.
func sealedDamage(err error) error {
	if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrFormat) {
		return fmt.Errorf("the sealed file is damaged, cut or of another version: %s: %w", strings.TrimSuffix(err.Error(), ": "+store.ErrCorrupt.Error()), ErrMalformed)
	}
	return err
}

// truncationIsMalformed reports a decompressor's unexpected end as a
// malformed stream, on that read and every later one. Left as
// io.ErrUnexpectedEOF it would read, to a reader of fixed-size blocks (a
// raw image), like the short last block of a whole stream; and a read
// that fills its buffer drops the error that came with it (io.ReadFull),
// after which zstd's decoder answers plain io.EOF.
type truncationIsMalformed struct {
	r     io.Reader
	codec string
	err   error
}

func (t *truncationIsMalformed) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.r.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		t.err = fmt.Errorf("%s stream truncated: %w", t.codec, ErrMalformed)
		err = t.err
	}
	return n, err
}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}
