package imagefile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/chainfs/chainfs/store"
)

// maxRawSize bounds a raw disk image: its block list must fit one content
// blob (docs/image-format.md).
const maxRawSize = 16 << 40

// readRaw reads a raw disk image into dst as the image of a disk: a
// directory holding one file, file, whose metadata the caller gives. The
// data is cut into disk-sized blocks; all-zero blocks are holes.
func readRaw(ctx context.Context, r *bufio.Reader, dst sink, file store.Entry, prog *Progress) (*readResult, error) {
	bs := uint64(store.DefaultDiskBlockSize)
	buf := make([]byte, bs)
	var blocks []store.Hash
	res := &readResult{}
	var size uint64
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			b := buf[:n]
			h := store.HoleHash
			if !store.IsZero(b) {
				h = dst.Sum(b)
				if err := dst.PutBlock(ctx, h, b); err != nil {
					return nil, err
				}
				res.blocks++
				res.blockBytes += uint64(n)
			}
			blocks = append(blocks, h)
			size += uint64(n)
			prog.add(n)
			if size > maxRawSize {
				return nil, fmt.Errorf("raw image larger than %d bytes: %w", uint64(maxRawSize), ErrMalformed)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if size == 0 {
		return nil, fmt.Errorf("empty input: %w", ErrMalformed)
	}
	file.Type, file.Size, file.BlockSize, file.Nlink = store.TypeRegular, size, uint32(bs), 1
	file.Sparse, file.Extents = store.ExtentsOf(blocks, bs, size)
	if err := file.SetBlocks(blocks, func(b []byte) (store.Hash, error) { return dst.PutTree(ctx, b) }); err != nil {
		return nil, err
	}
	root := store.Entry{Type: store.TypeDir, Mode: 0o755, UID: file.UID, GID: file.GID, Atime: file.Mtime, Mtime: file.Mtime, Ctime: file.Mtime, Nlink: 2}
	var err error
	if root.Subtree, err = dst.PutTree(ctx, store.EncodeTree([]store.Entry{file})); err != nil {
		return nil, err
	}
	res.root = root
	res.stats = store.SnapshotStats{Files: 1, Dirs: 1, LogicalBytes: size}
	return res, nil
}
