package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// compressedRepo is a repository that compresses (the tests' default is
// off: testRepo).
func compressedRepo(t *testing.T, c Compression) *Repo {
	t.Helper()
	dir := t.TempDir() + "/repo"
	if _, err := Init(context.Background(), Options{Dir: dir, Compression: c}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// compressedText is a repository that compresses, holding a snapshot of
// text(1), and that block's record, checked compressed.
func compressedText(t *testing.T) (*Repo, blockRecord) {
	t.Helper()
	r := compressedRepo(t, CompressionFast)
	r.AddVolume(context.Background(), Volume{Name: "v", Source: "/nowhere"})
	snapFile(t, r, "v", text(1))
	rec := recordOf(t, r, text(1))
	if rec.Codec != CodecZstd {
		t.Fatalf("not compressed: %+v", rec)
	}
	return r, rec
}

// text is a block of words: compressible as a source file is.
func text(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := []string{"snapshot", "block", "chain", "volume", "func", "return", "err", "nil", "if", "the"}
	var b bytes.Buffer
	for b.Len() < testBS {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(" \n"[rng.IntN(2)])
	}
	return b.Bytes()[:testBS]
}

// noise is a block that does not compress.
func noise(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, testBS)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func recordOf(t *testing.T, r *Repo, b []byte) blockRecord {
	t.Helper()
	var rec blockRecord
	err := r.view(func(txn *badger.Txn) (err error) { rec, err = getBlockRecord(txn, Sum(b)); return err })
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestCompressedBlocks: with compression, a block that shrinks by an
// eighth or more is kept compressed and one that does not is kept as it
// is; both read back exactly, by their hash; a snapshot counts what it
// stored; gc's rewrite of a pack keeps them as they are; off stores all
// as they are.
func TestCompressedBlocks(t *testing.T) {
	for _, c := range []Compression{CompressionFast, CompressionMax} {
		t.Run(string(c), func(t *testing.T) {
			r := compressedRepo(t, c)
			ctx := context.Background()
			r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
			w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s1 := commitTop(t, w, []Entry{putFile(t, w, "disk", [][]byte{text(1), noise(1), text(2)})})
			if rec := recordOf(t, r, text(1)); rec.Codec != CodecZstd || rec.Length > testBS/2 {
				t.Errorf("a block of text: %+v", rec)
			}
			if rec := recordOf(t, r, noise(1)); rec.Codec != CodecRaw || rec.Length != testBS {
				t.Errorf("a block of noise: %+v", rec)
			}
			if s1.Stats.StoredBytes >= 2*testBS {
				t.Errorf("stored %d bytes of two blocks of text and one of noise", s1.Stats.StoredBytes)
			}
			s2 := snapFile(t, r, "v", text(3), text(2))
			readEvery(t, r, []*Snapshot{s1, s2})

			// Deleting s1 leaves its pack mostly dead: gc rewrites it.
			if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
				t.Fatal(err)
			}
			st, err := r.GC(ctx)
			if err != nil || st.PacksRepacked == 0 {
				t.Fatalf("gc: %+v, %v", st, err)
			}
			if rec := recordOf(t, r, text(2)); rec.Codec != CodecZstd {
				t.Errorf("a compressed block after gc's rewrite: %+v", rec)
			}
			readEvery(t, r, []*Snapshot{s2})
			if p := problemsOf(t, r); len(p) != 0 {
				t.Fatalf("problems: %v", p)
			}
		})
	}

	r := compressedRepo(t, CompressionOff)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	snapFile(t, r, "v", text(1))
	if rec := recordOf(t, r, text(1)); rec.Codec != CodecRaw {
		t.Errorf("compression off: %+v", rec)
	}
	// A volume's own setting wins over the repository's.
	r.AddVolume(ctx, Volume{Name: "w", Source: "/nowhere", Compression: CompressionFast})
	snapFile(t, r, "w", text(4))
	if rec := recordOf(t, r, text(4)); rec.Codec != CodecZstd {
		t.Errorf("a volume that compresses in a repository that does not: %+v", rec)
	}
	if _, err := r.AddVolume(ctx, Volume{Name: "x", Source: "/nowhere", Compression: "lz4"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("compression lz4: %v", err)
	}
}

// TestCompressedBlockDamage: a flipped byte in a compressed block is
// ErrCorrupt on read, never other bytes; a frame that decodes to more
// than the block holds is too.
func TestCompressedBlockDamage(t *testing.T) {
	r, rec := compressedText(t)
	ctx := context.Background()
	for _, at := range []uint32{0, rec.Length / 2, rec.Length - 1} {
		path := filepath.Join(r.Info().Dir, packsDir, fmt.Sprintf("%016x.pack", rec.Pack))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		one := make([]byte, 1)
		f.ReadAt(one, int64(rec.Offset)+int64(at))
		f.WriteAt([]byte{one[0] ^ 0x5a}, int64(rec.Offset)+int64(at))
		r.places.drop(Sum(text(1)))
		buf := make([]byte, testBS)
		if _, err := r.ReadBlock(ctx, Sum(text(1)), buf); !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d flipped: %v", at, err)
		}
		f.WriteAt(one, int64(rec.Offset)+int64(at))
		f.Close()
	}

	big := encoders[CompressionFast]().EncodeAll(bytes.Repeat([]byte("ab"), testBS), nil)
	p := make([]byte, testBS, 4*testBS)
	if _, err := decodeBlock(CodecZstd, big, p); !errors.Is(err, errUndecodable) {
		t.Errorf("a frame larger than its block: %v", err)
	}
	if p[:cap(p)][testBS] != 0 {
		t.Error("a frame larger than its block was written past it")
	}
	if _, err := decodeBlock(Codec(7), big, make([]byte, testBS)); !errors.Is(err, errUndecodable) {
		t.Errorf("an unknown codec: %v", err)
	}
}

// BenchmarkCompressBlock: one block of a Go source file, 12 KiB (most
// files of a source tree are one block), at each level; and a 256 KiB
// block of noise, which is kept as it is.
func BenchmarkCompressBlock(b *testing.B) {
	data := goSource(b)
	dst := make([]byte, 256<<10)
	for _, c := range []Compression{CompressionFast, CompressionMax} {
		b.Run(string(c), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				compressBlock(c, data, dst)
			}
		})
	}
	var noiseBlock []byte
	for i := uint64(0); len(noiseBlock) < 256<<10; i++ {
		noiseBlock = append(noiseBlock, noise(i)...)
	}
	b.Run("noise", func(b *testing.B) {
		b.SetBytes(int64(len(noiseBlock)))
		for b.Loop() {
			compressBlock(CompressionFast, noiseBlock, dst)
		}
	})
}

// BenchmarkDecodeBlock: the same block decoded, as a read does.
func BenchmarkDecodeBlock(b *testing.B) {
	data := goSource(b)
	stored, codec := compressBlock(CompressionFast, data, nil)
	if codec != CodecZstd {
		b.Fatal("not compressed")
	}
	p := make([]byte, len(data))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := decodeBlock(codec, stored, p); err != nil {
			b.Fatal(err)
		}
	}
}

// goSource is 12 KiB of Go's own source.
func goSource(b *testing.B) []byte {
	data, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "net", "http", "server.go"))
	if err != nil || len(data) < 12<<10 {
		b.Skip("Go's source is not here")
	}
	return data[:12<<10]
}

// TestWorthTrying: a large block of noise is kept as it is without being
// compressed whole; one of text is compressed, and so is one whose middle
// is text though it starts with noise.
func TestWorthTrying(t *testing.T) {
	var noiseBlock, textBlock []byte
	for i := uint64(0); len(noiseBlock) < 256<<10; i++ {
		noiseBlock = append(noiseBlock, noise(i)...)
		textBlock = append(textBlock, text(i)...)
	}
	mixed := append(append([]byte{}, noiseBlock[:128<<10]...), textBlock[128<<10:]...)
	dst := make([]byte, 256<<10)
	enc := encoders[CompressionFast]()
	if worthTrying(enc, noiseBlock, dst) {
		t.Error("noise is worth compressing")
	}
	for name, b := range map[string][]byte{"text": textBlock, "noise, then text": mixed} {
		if !worthTrying(enc, b, dst) {
			t.Errorf("%s is not worth compressing", name)
		}
		if _, codec := compressBlock(CompressionFast, b, dst); codec != CodecZstd {
			t.Errorf("%s kept as it is", name)
		}
	}
}

// garbledCache is a cache of a store whose first read of each range is
// damaged: what a pack cache holding a bad chunk gives.
type garbledCache struct {
	BlockStore
	dropped int
	fresh   bool
}

func (g *garbledCache) ReadAt(ctx context.Context, id uint64, p []byte, off int64) error {
	if err := g.BlockStore.ReadAt(ctx, id, p, off); err != nil || g.fresh {
		return err
	}
	for i := range p {
		p[i] ^= 0x5a
	}
	return nil
}

func (g *garbledCache) readStore(ctx context.Context, id uint64, p []byte, off int64) error {
	return g.BlockStore.ReadAt(ctx, id, p, off)
}

func (g *garbledCache) dropCached(id uint64, off int64, n int) bool {
	g.dropped++
	g.fresh = true
	return true
}

// TestUndecodableFromTheCache: a compressed block that the cache holds
// damaged, so that it does not even decode, is read from the store again,
// as one whose hash fails is, and counted.
func TestUndecodableFromTheCache(t *testing.T) {
	r, _ := compressedText(t)
	ctx := context.Background()
	g := &garbledCache{BlockStore: r.blocks}
	r.blocks = g
	defer func() { r.blocks = g.BlockStore }()
	r.places.drop(Sum(text(1)))
	buf := make([]byte, testBS)
	n, err := r.ReadBlock(ctx, Sum(text(1)), buf)
	if err != nil || !bytes.Equal(buf[:n], text(1)) {
		t.Fatalf("read through a damaged cache: %d, %v", n, err)
	}
	if g.dropped != 1 || r.verifyFailures.Load() != 0 {
		t.Errorf("dropped %d times, %d failures counted", g.dropped, r.verifyFailures.Load())
	}
}

// TestCompressionOfAnOlderRepository: a repository that records no
// compression, made before there was any, stores blocks as they are.
func TestCompressionOfAnOlderRepository(t *testing.T) {
	r := compressedRepo(t, CompressionFast)
	ctx := context.Background()
	if err := r.commit(ctx, func(m metaTxn) error { return m.del(compressionKey) }); err != nil {
		t.Fatal(err)
	}
	if c, err := r.Compression(ctx); err != nil || c != CompressionOff {
		t.Fatalf("no compression recorded: %q, %v", c, err)
	}
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	snapFile(t, r, "v", text(1))
	if rec := recordOf(t, r, text(1)); rec.Codec != CodecRaw {
		t.Errorf("a block of an older repository: %+v", rec)
	}
}
