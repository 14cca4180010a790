package imagefile

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"sync"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/crypto/chacha20poly1305"
)

// An image stream names blocks and blobs by the plain BLAKE3 hash of
// their bytes, and an encrypted repository by a keyed one. Exporting from
// one, or importing into one, renames: a block's new name comes from its
// bytes, and a blob's from its bytes once the names it holds are renamed,
// so trees are renamed from the leaves up.

// renamer renames the blobs of trees, given each block's new name.
type renamer struct {
	// blob reads a blob by its old name.
	blob func(ctx context.Context, h store.Hash) ([]byte, error)
	// block is a block's new name.
	block func(h store.Hash) (store.Hash, error)
	// put names a renamed blob (and stores it, importing).
	put func(ctx context.Context, blob []byte) (store.Hash, error)
	// named hears of every blob renamed: its old and new name and role.
	named func(old, new store.Hash, typ byte)
	// names are the new names of the blobs renamed so far.
	names map[store.Hash]store.Hash
}

// tree renames the tree blob old and every blob below it, and returns
// its new name.
func (rn *renamer) tree(ctx context.Context, old store.Hash) (store.Hash, error) {
	return rn.rename(ctx, frameTree, old)
}

func (rn *renamer) rename(ctx context.Context, typ byte, old store.Hash) (store.Hash, error) {
	if n, ok := rn.names[old]; ok {
		return n, nil
	}
	if err := ctx.Err(); err != nil {
		return store.Hash{}, err
	}
	blob, err := rn.blob(ctx, old)
	if err != nil {
		return store.Hash{}, err
	}
	if blob, err = rn.rewrite(ctx, typ, blob); err != nil {
		return store.Hash{}, err
	}
	n, err := rn.put(ctx, blob)
	if err != nil {
		return store.Hash{}, err
	}
	rn.names[old] = n
	if rn.named != nil {
		rn.named(old, n, typ)
	}
	return n, nil
}

// rewrite is blob with every name it holds renamed; the blobs it names
// are renamed first.
func (rn *renamer) rewrite(ctx context.Context, typ byte, blob []byte) ([]byte, error) {
	renameBlocks := func(list []store.Hash) error {
		for i, h := range list {
			if h.IsHole() {
				continue
			}
			var err error
			if list[i], err = rn.block(h); err != nil {
				return err
			}
		}
		return nil
	}
	switch {
	case typ == frameContent && store.IsChunked(blob):
		c, err := store.DecodeChunks(blob)
		if err != nil {
			return nil, err
		}
		for i, h := range c.Hashes {
			if !h.IsHole() {
				if c.Hashes[i], err = rn.rename(ctx, frameContent, h); err != nil {
					return nil, err
				}
			}
		}
		return store.EncodeChunks(c), nil
	case typ == frameContent:
		list, err := store.DecodeContent(blob)
		if err != nil {
			return nil, err
		}
		if err := renameBlocks(list); err != nil {
			return nil, err
		}
		return store.EncodeContent(list), nil
	}
	entries, err := store.DecodeTree(blob)
	if err != nil {
		return nil, err
	}
	for i := range entries {
		e := &entries[i]
		switch {
		case e.Type == store.TypeDir:
			e.Subtree, err = rn.rename(ctx, frameTree, e.Subtree)
		case e.Type == store.TypeRegular && e.HasContent:
			e.Content, err = rn.rename(ctx, frameContent, e.Content)
		case e.Type == store.TypeRegular:
			err = renameBlocks(e.Blocks)
		}
		if err != nil {
			return nil, err
		}
	}
	return store.EncodeTree(entries), nil
}

// plainView shows a tree of an encrypted repository under plain names,
// as an image stream carries them: what WriteNative writes from one.
// Making it reads every block of the tree once, to name it; each blob is
// renamed again when it is read, from the names found then, so the view
// holds two names per block and blob, not the blobs.
type plainView struct {
	rd     store.Reader
	rn     *renamer
	blocks map[store.Hash]store.Hash // plain → keyed
	blobs  map[store.Hash]keyedBlob  // plain → keyed
}

type keyedBlob struct {
	hash store.Hash
	typ  byte
}

// newPlainView renames the tree below top, read from rd, and returns the
// view and top's plain name.
func newPlainView(ctx context.Context, rd store.Reader, top store.Hash) (*plainView, store.Hash, error) {
	v := &plainView{rd: rd, blocks: map[store.Hash]store.Hash{}, blobs: map[store.Hash]keyedBlob{}}
	var refs []blockRef
	if err := walkBlobs(ctx, rd, top, func(byte, []byte) error { return nil }, func(h store.Hash, n uint32) {
		refs = append(refs, blockRef{h, n})
	}); err != nil {
		return nil, store.Hash{}, err
	}
	plainOf := make(map[store.Hash]store.Hash, len(refs))
	err := readBlocks(ctx, rd, refs, func(b blockRef, data []byte) error {
		p := store.Sum(data)
		plainOf[b.hash], v.blocks[p] = p, b.hash
		return nil
	})
	if err != nil {
		return nil, store.Hash{}, err
	}
	v.rn = &renamer{
		blob: rd.Blob,
		block: func(h store.Hash) (store.Hash, error) {
			p, ok := plainOf[h]
			if !ok {
				return h, fmt.Errorf("block %s: not in the tree's walk: %w", h.Short(), store.ErrCorrupt)
			}
			return p, nil
		},
		put:   func(_ context.Context, blob []byte) (store.Hash, error) { return store.Sum(blob), nil },
		named: func(old, new store.Hash, typ byte) { v.blobs[new] = keyedBlob{old, typ} },
		names: map[store.Hash]store.Hash{},
	}
	plainTop, err := v.rn.tree(ctx, top)
	return v, plainTop, err
}

// Blob is the blob named h, renamed.
func (v *plainView) Blob(ctx context.Context, h store.Hash) ([]byte, error) {
	k, ok := v.blobs[h]
	if !ok {
		return nil, fmt.Errorf("tree %s: not in the image: %w", h.Short(), store.ErrCorrupt)
	}
	blob, err := v.rd.Blob(ctx, k.hash)
	if err != nil {
		return nil, err
	}
	return v.rn.rewrite(ctx, k.typ, blob)
}

// Tree is the tree blob named h, renamed and decoded.
func (v *plainView) Tree(ctx context.Context, h store.Hash) ([]store.Entry, error) {
	blob, err := v.Blob(ctx, h)
	if err != nil {
		return nil, err
	}
	return store.DecodeTree(blob)
}

// ReadBlock reads the block named h.
func (v *plainView) ReadBlock(ctx context.Context, h store.Hash, p []byte) (int, error) {
	k, ok := v.blocks[h]
	if !ok {
		return 0, fmt.Errorf("block %s: not in the image: %w", h.Short(), store.ErrCorrupt)
	}
	return v.rd.ReadBlock(ctx, k, p)
}

// Sum names bytes as image streams do.
func (v *plainView) Sum(b []byte) store.Hash { return store.Sum(b) }

// renamingSink stores what a native stream carries in an encrypted
// repository: each block under its keyed name as it comes, and each blob,
// which names blocks not yet received, set aside (sealed with a key of
// its own, in an unlinked file of the repository's directory) until the
// stream ends; finish then renames and stores the trees from the leaves
// up.
type renamingSink struct {
	dst   sink
	spill *os.File
	aead  interface {
		Seal(dst, nonce, plaintext, ad []byte) []byte
		Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	}
	mu     sync.Mutex
	blocks map[store.Hash]store.Hash // plain → keyed
	blobs  map[store.Hash]spilled    // plain → where it was set aside
	end    int64
}

type spilled struct {
	off int64
	n   int
}

func newRenamingSink(dst sink, dir string) (*renamingSink, error) {
	f, err := os.CreateTemp(dir, ".import-trees-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // gone with the last descriptor, whatever ends the import
	key := make([]byte, chacha20poly1305.KeySize)
	rand.Read(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &renamingSink{dst: dst, spill: f, aead: aead, blocks: map[store.Hash]store.Hash{}, blobs: map[store.Hash]spilled{}}, nil
}

// Sum names bytes as the stream does.
func (s *renamingSink) Sum(b []byte) store.Hash { return store.Sum(b) }

func (s *renamingSink) PutBlock(ctx context.Context, h store.Hash, data []byte) error {
	keyed := s.dst.Sum(data)
	if err := s.dst.PutBlock(ctx, keyed, data); err != nil {
		return err
	}
	s.mu.Lock()
	s.blocks[h] = keyed
	s.mu.Unlock()
	return nil
}

func (s *renamingSink) PutTree(_ context.Context, blob []byte) (store.Hash, error) {
	h := store.Sum(blob)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.blobs[h]; ok {
		return h, nil
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	sealed := s.aead.Seal(nonce, nonce, blob, h[:])
	if _, err := s.spill.WriteAt(sealed, s.end); err != nil {
		return h, fmt.Errorf("set a tree aside: %w", err)
	}
	s.blobs[h] = spilled{s.end, len(sealed)}
	s.end += int64(len(sealed))
	return h, nil
}

// finish stores the trees below top, renamed, and returns top's new name.
func (s *renamingSink) finish(ctx context.Context, top store.Hash) (store.Hash, error) {
	rn := &renamer{
		blob: func(_ context.Context, h store.Hash) ([]byte, error) {
			at, ok := s.blobs[h]
			if !ok {
				return nil, fmt.Errorf("tree %s: not in the stream: %w", h.Short(), ErrMalformed)
			}
			b := make([]byte, at.n)
			if _, err := s.spill.ReadAt(b, at.off); err != nil {
				return nil, fmt.Errorf("read a tree set aside: %w", err)
			}
			blob, err := s.aead.Open(nil, b[:chacha20poly1305.NonceSizeX], b[chacha20poly1305.NonceSizeX:], h[:])
			if err != nil {
				return nil, fmt.Errorf("a tree set aside was changed on disk: %w", store.ErrCorrupt)
			}
			return blob, nil
		},
		block: func(h store.Hash) (store.Hash, error) {
			k, ok := s.blocks[h]
			if !ok {
				return h, fmt.Errorf("block %s: named, not in the stream: %w", h.Short(), ErrMalformed)
			}
			return k, nil
		},
		put:   s.dst.PutTree,
		names: map[store.Hash]store.Hash{},
	}
	return rn.tree(ctx, top)
}

func (s *renamingSink) close() { s.spill.Close() }
