package imagefile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	"golang.org/x/sys/unix"
)

// Progress counts an export's or an import's block data as it goes; safe
// to read while it runs.
type Progress struct {
	// Bytes is the block data written or read so far.
	Bytes atomic.Uint64
	// Total is the block data expected, 0 while unknown.
	Total atomic.Uint64
}

func (p *Progress) add(n int) {
	if p != nil {
		p.Bytes.Add(uint64(n))
	}
}

func (p *Progress) total(n uint64) {
	if p != nil {
		p.Total.Store(n)
	}
}

// ExportOptions configure an export.
type ExportOptions struct {
	// Header describes the image (native format only).
	Header Header
	// Skip, when set, leaves out of a native stream every block it
	// returns true for; the header is then marked thin. Only image copy
	// uses it, for blocks the receiving repository has.
	Skip func(store.Hash) bool
	// Progress, if set, is updated as blocks are written.
	Progress *Progress
}

// ExportStats say what an export wrote.
type ExportStats struct {
	Trees      uint64 `json:"trees"`
	Blocks     uint64 `json:"blocks"`
	BlockBytes uint64 `json:"block_bytes"`
	// Skipped counts blocks left out of a thin stream.
	Skipped uint64 `json:"skipped,omitempty"`
	// StreamBytes is the size of the stream as written: sealed, when it
	// was.
	StreamBytes uint64 `json:"stream_bytes"`
	// Warnings are entries a format cannot carry (tar: sockets).
	Warnings []string `json:"warnings,omitempty"`
}

// blockRef is a block to export and its length.
type blockRef struct {
	hash   store.Hash
	length uint32
}

// WriteNative writes the tree whose top directory is root, read from rd,
// as a native image stream: header, root, every tree and content blob
// once (each after the blob that names it), every block once, then the
// end frame with counts and the digest.
func WriteNative(ctx context.Context, rd store.Reader, root store.Entry, w io.Writer, opts ExportOptions) (*ExportStats, error) {
	if !plainNames(rd) {
		// An encrypted repository's tree, under the names the stream
		// carries: every block is read once more to name it.
		v, top, err := newPlainView(ctx, rd, root.Subtree)
		if err != nil {
			return nil, err
		}
		rd, root.Subtree = v, top
	}
	cw := &countingWriter{w: w}
	fw := newFrameWriter(cw)
	hdr := opts.Header
	hdr.Thin = opts.Skip != nil
	hb, err := encodeHeader(&hdr)
	if err != nil {
		return nil, err
	}
	st := &ExportStats{}
	if err := fw.start(); err != nil {
		return nil, err
	}
	if err := fw.frame(frameHeader, hb); err != nil {
		return nil, err
	}
	if err := fw.frame(frameRoot, encodeRoot(root)); err != nil {
		return nil, err
	}
	var blocks []blockRef
	err = walkBlobs(ctx, rd, root.Subtree, func(typ byte, blob []byte) error {
		st.Trees++
		return fw.frame(typ, blob)
	}, func(h store.Hash, length uint32) {
		if opts.Skip != nil && opts.Skip(h) {
			st.Skipped++
			return
		}
		blocks = append(blocks, blockRef{h, length})
		st.BlockBytes += uint64(length)
	})
	if err != nil {
		return nil, err
	}
	opts.Progress.total(st.BlockBytes)
	err = readBlocks(ctx, rd, blocks, func(b blockRef, data []byte) error {
		st.Blocks++
		opts.Progress.add(len(data))
		return fw.block(b.hash, data)
	})
	if err != nil {
		return nil, err
	}
	if err := fw.end(st.Trees, st.Blocks, st.BlockBytes); err != nil {
		return nil, err
	}
	st.StreamBytes = cw.n
	return st, nil
}

// walkBlobs visits the trees below top in preorder, each distinct blob
// once: blob gets each tree and content blob after the one that names it,
// block each distinct block (not holes) in the order first met.
func walkBlobs(ctx context.Context, rd store.Reader, top store.Hash, blob func(typ byte, b []byte) error, block func(store.Hash, uint32)) error {
	type key struct {
		typ  byte
		hash store.Hash
	}
	seen := map[key]bool{}
	seenBlock := map[store.Hash]bool{}
	stack := []store.Hash{top}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[key{frameTree, h}] {
			continue
		}
		seen[key{frameTree, h}] = true
		b, err := rd.Blob(ctx, h)
		if err != nil {
			return err
		}
		entries, err := store.DecodeTree(b)
		if err != nil {
			return fmt.Errorf("tree %s: %w", h.Short(), err)
		}
		if err := blob(frameTree, b); err != nil {
			return err
		}
		for i := len(entries) - 1; i >= 0; i-- {
			if entries[i].Type == store.TypeDir {
				stack = append(stack, entries[i].Subtree)
			}
		}
		for i := range entries {
			e := &entries[i]
			if e.Type != store.TypeRegular {
				continue
			}
			if e.HasContent {
				if seen[key{frameContent, e.Content}] {
					continue // its blocks are counted
				}
				// The content blob, then its chunks: each after the blob
				// that names it.
				blobs, err := store.ContentBlobs(ctx, rd, e)
				if err != nil {
					return err
				}
				for _, ch := range blobs {
					if seen[key{frameContent, ch}] {
						continue
					}
					seen[key{frameContent, ch}] = true
					cb, err := rd.Blob(ctx, ch)
					if err != nil {
						return err
					}
					if err := blob(frameContent, cb); err != nil {
						return err
					}
				}
			}
			list, err := store.OpenBlocks(ctx, rd, e)
			if err != nil {
				return err
			}
			err = list.Each(ctx, func(j int, bh store.Hash) error {
				if !bh.IsHole() && !seenBlock[bh] {
					seenBlock[bh] = true
					block(bh, e.BlockLen(j))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// readAhead is how many blocks an export reads ahead of the writer.
var readAhead = 4 * runtime.NumCPU()

// readBlocks reads blocks from rd, several at once, and hands them to fn
// in order. Each is verified against its hash by rd.
func readBlocks(ctx context.Context, rd store.Reader, blocks []blockRef, fn func(blockRef, []byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type fetch struct {
		done chan struct{}
		data []byte
		err  error
	}
	queue := make(chan *fetch, readAhead)
	go func() {
		defer close(queue)
		for _, b := range blocks {
			f := &fetch{done: make(chan struct{})}
			select {
			case queue <- f:
			case <-ctx.Done():
				return
			}
			go func(b blockRef) {
				defer close(f.done)
				buf := make([]byte, b.length)
				n, err := rd.ReadBlock(ctx, b.hash, buf)
				if err == nil && n != int(b.length) {
					err = fmt.Errorf("block %s: %d bytes, want %d: %w", b.hash.Short(), n, b.length, store.ErrCorrupt)
				}
				f.data, f.err = buf, err
			}(b)
		}
	}()
	i := 0
	for f := range queue {
		<-f.done
		if f.err != nil {
			return f.err
		}
		if err := fn(blocks[i], f.data); err != nil {
			return err
		}
		i++
	}
	if i != len(blocks) {
		return ctx.Err()
	}
	return nil
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// HeaderOf is the native header that describes an image.
func HeaderOf(img *images.Image) Header {
	return Header{Name: img.Name, Description: img.Description, Created: img.Created, Region: img.Region,
		Origin: img.Origin, Kind: img.Kind}
}

// ExportSealed is Export, sealed with password when one is given (the
// stream is then a file sealed as store.SealFile seals it, which Import
// opens with the password).
func ExportSealed(ctx context.Context, rd store.Reader, img *images.Image, w io.Writer, format Format, password []byte, prog *Progress) (*ExportStats, error) {
	if password == nil {
		return Export(ctx, rd, img, w, format, prog)
	}
	sealed := &countingWriter{w: w}
	sw, err := store.SealFile(sealed, password)
	if err != nil {
		return nil, err
	}
	st, err := Export(ctx, rd, img, sw, format, prog)
	if err != nil {
		return nil, err
	}
	if err := sw.Close(); err != nil {
		return nil, err
	}
	st.StreamBytes = sealed.n // what was written, seal and all
	return st, nil
}

// Export writes an image to w in a format: native, tar, or raw (the disk
// of an image of a disk volume).
func Export(ctx context.Context, rd store.Reader, img *images.Image, w io.Writer, format Format, prog *Progress) (*ExportStats, error) {
	opts := ExportOptions{Progress: prog, Header: HeaderOf(img)}
	switch format {
	case FormatNative:
		return WriteNative(ctx, rd, img.Snapshot.RootDir, w, opts)
	case FormatTar:
		return WriteTar(ctx, rd, img.Snapshot.RootDir, w, opts)
	}
	disk, err := DiskFile(ctx, rd, img)
	if err != nil {
		return nil, err
	}
	return WriteRaw(ctx, rd, disk, w, prog)
}

// DiskFile is the disk of an image of a disk volume: its one file.
func DiskFile(ctx context.Context, rd store.Reader, img *images.Image) (*store.Entry, error) {
	entries, err := rd.Tree(ctx, img.Snapshot.RootDir.Subtree)
	if err != nil {
		return nil, err
	}
	if img.Kind != store.KindDisk || len(entries) != 1 || entries[0].Type != store.TypeRegular {
		return nil, fmt.Errorf("image %s holds a directory tree: raw is for images of disk volumes; use native or tar: %w",
			img.Name, store.ErrInvalid)
	}
	return &entries[0], nil
}

// WriteRaw writes a disk's bytes. Into a regular file its holes stay holes
// (they are skipped and the file is sized at the end); into anything else
// they are written as zeros.
func WriteRaw(ctx context.Context, rd store.Reader, e *store.Entry, w io.Writer, prog *Progress) (*ExportStats, error) {
	st := &ExportStats{}
	var file *os.File
	if f, ok := w.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode().IsRegular() {
			file = f
		}
	}
	prog.total(e.Size)
	bs := int64(e.BlockSize)
	err := eachBlockData(ctx, rd, e, func(i int, h store.Hash, data []byte) error {
		prog.add(len(data))
		if h.IsHole() && file != nil {
			return nil // seeked over
		}
		st.Blocks++
		st.BlockBytes += uint64(len(data))
		if file != nil {
			_, err := file.WriteAt(data, int64(i)*bs)
			return err
		}
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return nil, err
	}
	if file != nil {
		if err := file.Truncate(int64(e.Size)); err != nil {
			return nil, err
		}
	}
	st.StreamBytes = e.Size
	return st, nil
}

// runBlocks is how many blocks of one file are read ahead at most.
const runBlocks = 256

// eachBlockData calls fn for every block of a file in order with its data,
// zeros for a hole, reading the blocks ahead of fn in parallel a run at a
// time, so that a file of any size costs a run of memory.
func eachBlockData(ctx context.Context, rd store.Reader, e *store.Entry, fn func(i int, h store.Hash, data []byte) error) error {
	list, err := store.OpenBlocks(ctx, rd, e)
	if err != nil {
		return err
	}
	var run []blockRef
	first := 0 // index of run[0]
	flush := func() error {
		i := first
		err := readBlocks(ctx, rd, run, func(b blockRef, data []byte) error {
			i++
			return fn(i-1, b.hash, data)
		})
		run = run[:0]
		return err
	}
	var zero []byte
	err = list.Each(ctx, func(i int, h store.Hash) error {
		length := e.BlockLen(i)
		if !h.IsHole() && len(run) < runBlocks {
			if len(run) == 0 {
				first = i
			}
			run = append(run, blockRef{h, length})
			return nil
		}
		if err := flush(); err != nil {
			return err
		}
		if !h.IsHole() {
			first = i
			run = append(run, blockRef{h, length})
			return nil
		}
		if len(zero) < int(length) {
			zero = make([]byte, length)
		}
		return fn(i, h, zero[:length])
	})
	if err != nil {
		return err
	}
	return flush()
}

// ExportFile writes an image to the file name in directory dir, as
// WriteFile writes a file. The file is 0600: an image holds the
// repository's data, which is 0600 too.
func ExportFile(ctx context.Context, rd store.Reader, img *images.Image, dir *os.File, name string, format Format, overwrite bool, password []byte, prog *Progress) (*ExportStats, error) {
	var st *ExportStats
	err := WriteFile(dir, name, 0o600, overwrite, func(f *os.File) (err error) {
		st, err = ExportSealed(ctx, rd, img, f, format, password, prog)
		return err
	})
	return st, err
}

// WriteFile writes the file name in directory dir with write, under a
// temporary name there, synced and moved into place once complete: a
// failed or interrupted write leaves no partial file at name. Every step
// is relative to dir, which the caller opened and holds: a path through a
// directory another user can write could be swapped for a symlink while
// the file is written. A name that exists is refused (store.ErrExists)
// unless overwrite, and so is one that came into being meanwhile; a
// directory is refused always; what was there (a symlink too) is
// replaced, never written through.
func WriteFile(dir *os.File, name string, mode uint32, overwrite bool, write func(f *os.File) error) error {
	dirfd := int(dir.Fd())
	path := filepath.Join(dir.Name(), name)
	if err := checkTarget(dirfd, name, path, overwrite); err != nil {
		return err
	}
	var tmp string
	var fd int
	var err error
	for range 8 {
		tmp = "." + name + ".partial-" + strconv.FormatUint(rand.Uint64(), 36)
		fd, err = unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer unix.Unlinkat(dirfd, tmp, 0)
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), tmp))
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	var made unix.Stat_t
	if err == nil {
		err = unix.Fstat(fd, &made)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if overwrite {
			err = unix.Renameat(dirfd, tmp, dirfd, name)
		} else if err = unix.Linkat(dirfd, tmp, dirfd, name, 0); errors.Is(err, unix.EEXIST) {
			// A link, unlike a rename, fails on a name taken meanwhile.
			err = checkTarget(dirfd, name, path, false)
		}
	}
	if err == nil {
		// In a directory that another user can write, the temporary
		// name may have been given to a file of theirs: say so, rather
		// than report their file as the one written.
		var now unix.Stat_t
		if err = unix.Fstatat(dirfd, name, &now, unix.AT_SYMLINK_NOFOLLOW); err == nil && (now.Dev != made.Dev || now.Ino != made.Ino) {
			err = errors.New("replaced while it was written")
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// checkTarget refuses an export's target, name in dirfd (path in
// messages), that is a directory, or that exists when it may not be
// replaced.
func checkTarget(dirfd int, name, path string, overwrite bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return fmt.Errorf("%s is a directory: name the file to write", path)
	case !overwrite:
		return fmt.Errorf("%s: %w (use --overwrite to replace it)", path, store.ErrExists)
	}
	return nil
}
