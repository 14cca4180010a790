package imagefile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
)

// Catalog serves the native image files of a directory as public images:
// read-only, seen by everyone, and never imported. Each file is checked
// once (everything but block data, which is verified at every read) and
// indexed; a file that changes is indexed again.
type Catalog struct {
	dir string
	log *slog.Logger

	mu     sync.Mutex
	images map[string]*catalogImage

	// verifyFailures counts blocks that failed their hash check.
	verifyFailures atomic.Uint64
}

// VerifyFailures is how many blocks read from the catalog's files failed
// their hash check.
func (c *Catalog) VerifyFailures() uint64 { return c.verifyFailures.Load() }

// catalogImage is one indexed file.
type catalogImage struct {
	path string
	// info is the file as indexed: one renamed over it is another file
	// (os.SameFile), even with the same size and time.
	info  os.FileInfo
	image images.Image
	f     *os.File
	// failures is the catalog's count of blocks that failed their check.
	failures *atomic.Uint64
	blobs    map[store.Hash][]byte
	blocks   map[store.Hash]blockLoc
	openErr  error
}

// blockLoc is where a block's data lies in its file.
type blockLoc struct {
	off    int64
	length uint32
}

// OpenCatalog serves the image files in dir. The directory is listed
// again at every call that lists or finds images, so files come and go.
func OpenCatalog(dir string, log *slog.Logger) *Catalog {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Catalog{dir: dir, log: log, images: map[string]*catalogImage{}}
}

// Dir is the catalog's directory.
func (c *Catalog) Dir() string { return c.dir }

// catalogName is the image name a file gives: its name less ".img".
func catalogName(file string) string { return strings.TrimSuffix(file, ".img") }

// refresh lists the directory and indexes new or changed files.
func (c *Catalog) refresh(ctx context.Context) error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("catalog %s: %w", c.dir, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, de := range ents {
		name := catalogName(de.Name())
		if !de.Type().IsRegular() || !store.ValidImageName(name) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		seen[name] = true
		if old := c.images[name]; old != nil && os.SameFile(old.info, info) && old.info.Size() == info.Size() && old.info.ModTime().Equal(info.ModTime()) {
			continue
		}
		ci, err := indexFile(ctx, filepath.Join(c.dir, de.Name()), name, info)
		if err != nil {
			c.log.Warn("catalog file left out", "file", filepath.Join(c.dir, de.Name()), "err", err)
			ci = &catalogImage{path: filepath.Join(c.dir, de.Name()), info: info, openErr: err}
		}
		ci.failures = &c.verifyFailures
		c.images[name] = ci
	}
	for name := range c.images {
		if !seen[name] {
			// A reader may still hold the image: its file is closed by the
			// finalizer once none does.
			delete(c.images, name)
		}
	}
	return nil
}

// Images lists the catalog's valid images in name order.
func (c *Catalog) Images(ctx context.Context) ([]images.Image, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []images.Image
	for _, ci := range c.images {
		if ci.openErr == nil {
			out = append(out, ci.image)
		}
	}
	slices.SortFunc(out, func(a, b images.Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Image finds a catalog image and the reader of its content.
func (c *Catalog) Image(ctx context.Context, name string) (*images.Image, store.Reader, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := c.images[name]
	if ci == nil {
		return nil, nil, fmt.Errorf("image %s: %w", name, store.ErrNotFound)
	}
	if ci.openErr != nil {
		return nil, nil, fmt.Errorf("image %s: catalog file %s: %w", name, ci.path, ci.openErr)
	}
	img := ci.image
	return &img, ci, nil
}

// indexFile checks a catalog file and indexes its blobs and blocks.
func indexFile(ctx context.Context, path, name string, info os.FileInfo) (*catalogImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	ci := &catalogImage{path: path, info: info, f: f,
		blobs: map[store.Hash][]byte{}, blocks: map[store.Hash]blockLoc{}}
	// A small buffer: after each block's data is skipped, a refill reads
	// little more than the next frame's head. Blobs, read whole, bypass it.
	nr := newNativeReader(bufio.NewReaderSize(f, 16<<10), blobKeeper(ci.blobs))
	nr.index = func(h store.Hash, off int64, length int) { ci.blocks[h] = blockLoc{off, uint32(length)} }
	nr.skip = func(fr *frameReader, n int) error {
		if n <= fr.r.Buffered() {
			fr.r.Discard(n)
		} else {
			// Seek over the data; the reader refills from there.
			if _, err := f.Seek(fr.off+int64(n), io.SeekStart); err != nil {
				return err
			}
			fr.r.Reset(f)
		}
		fr.off += int64(n)
		return nil
	}
	if err := nr.run(ctx); err != nil {
		f.Close()
		return nil, err
	}
	if nr.res.header.Thin {
		f.Close()
		return nil, fmt.Errorf("a thin stream is not a whole image")
	}
	if fr := nr.fr; fr.off != info.Size() {
		f.Close()
		return nil, fmt.Errorf("%d bytes after the image: %w", info.Size()-fr.off, ErrMalformed)
	}
	h := nr.res.header
	snap := store.Snapshot{Name: name, Time: info.ModTime().UTC(), Description: h.Description,
		Root: nr.res.root.Subtree, RootDir: nr.res.root, Stats: nr.res.stats}
	snap.Stats.StoredBytes = nr.res.blockBytes
	ci.image = images.Image{Name: name, Type: images.Public, Region: h.Region, Created: h.Created, Catalog: path,
		Meta: images.Meta{Description: h.Description, Origin: h.Origin, Kind: h.Kind}, Snapshot: snap}
	return ci, nil
}

// blobKeeper keeps a catalog image's tree and content blobs in memory.
type blobKeeper map[store.Hash][]byte

func (b blobKeeper) PutBlock(context.Context, store.Hash, []byte) error { return nil }

// Sum names bytes as image files do: plain BLAKE3.
func (blobKeeper) Sum(p []byte) store.Hash { return store.Sum(p) }

func (b blobKeeper) PutTree(ctx context.Context, blob []byte) (store.Hash, error) {
	h := store.Sum(blob)
	b[h] = blob
	return h, nil
}

// Blob returns a tree or content blob of the image (store.Reader).
func (ci *catalogImage) Blob(ctx context.Context, h store.Hash) ([]byte, error) {
	if b, ok := ci.blobs[h]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("tree %s not in catalog image %s: %w", h.Short(), ci.path, store.ErrCorrupt)
}

// Tree loads and decodes a tree blob (store.Reader).
func (ci *catalogImage) Tree(ctx context.Context, h store.Hash) ([]store.Entry, error) {
	b, err := ci.Blob(ctx, h)
	if err != nil {
		return nil, err
	}
	return store.DecodeTree(b)
}

// Sum names bytes as image files do: plain BLAKE3.
func (ci *catalogImage) Sum(p []byte) store.Hash { return store.Sum(p) }

// ReadBlock reads a block from the file and checks it against its hash
// (store.Reader).
func (ci *catalogImage) ReadBlock(ctx context.Context, h store.Hash, p []byte) (int, error) {
	if h.IsHole() {
		clear(p)
		return len(p), nil
	}
	loc, ok := ci.blocks[h]
	if !ok {
		return 0, fmt.Errorf("block %s not in catalog image %s: %w", h.Short(), ci.path, store.ErrCorrupt)
	}
	if int(loc.length) > len(p) {
		return 0, fmt.Errorf("block %s: %d bytes, buffer %d: %w", h.Short(), loc.length, len(p), store.ErrCorrupt)
	}
	p = p[:loc.length]
	if _, err := ci.f.ReadAt(p, loc.off); err != nil {
		if errors.Is(err, io.EOF) {
			err = store.ErrCorrupt
		}
		return 0, fmt.Errorf("block %s of catalog image %s: %w", h.Short(), ci.path, err)
	}
	if store.Sum(p) != h {
		if ci.failures != nil {
			ci.failures.Add(1)
		}
		return 0, fmt.Errorf("block %s of catalog image %s: hash mismatch: %w", h.Short(), ci.path, store.ErrCorrupt)
	}
	return len(p), nil
}
