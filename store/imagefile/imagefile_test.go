package imagefile

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/check"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/report"
	"github.com/chainfs/chainfs/store/storetest"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

const testBS = store.MinBlockSize

func testRepo(t testing.TB, region string) *store.Repo {
	t.Helper()
	return storetest.RepoWith(t, store.Options{Region: region})
}

// treeBuilder writes entries into a snapshot being made.
type treeBuilder struct {
	t   testing.TB
	w   *store.SnapshotWriter
	rng *rand.Rand
}

// file makes a regular file entry of the given data; holes, when set,
// are the data ranges of a sparse file (the rest is zeros).
func (b *treeBuilder) file(name string, data []byte, extents []store.Extent) store.Entry {
	ctx := context.Background()
	e := store.Entry{Name: name, Type: store.TypeRegular, Mode: 0o640, UID: 1000, GID: 100, Size: uint64(len(data)),
		BlockSize: testBS, Nlink: 1, Mtime: store.Timespec{Sec: 1700000000, Nsec: 123456789}, Atime: store.Timespec{Sec: 1700000001, Nsec: 5},
		Ctime: store.Timespec{Sec: 1700000002, Nsec: 6}, Ino: b.rng.Uint64N(1 << 40), Dev: 42}
	var blocks []store.Hash
	for off := 0; off < len(data); off += testBS {
		blk := data[off:min(off+testBS, len(data))]
		inData := extents == nil
		for _, x := range extents {
			if x.Off < uint64(off+len(blk)) && x.Off+x.Len > uint64(off) {
				inData = true
			}
		}
		if !inData {
			blocks = append(blocks, store.HoleHash)
			continue
		}
		h := b.w.Sum(blk)
		if err := b.w.PutBlock(ctx, h, blk); err != nil {
			b.t.Fatal(err)
		}
		blocks = append(blocks, h)
	}
	if extents != nil {
		e.Sparse, e.Extents = true, extents
	}
	if err := e.SetBlocks(blocks, func(blob []byte) (store.Hash, error) { return b.w.PutTree(ctx, blob) }); err != nil {
		b.t.Fatal(err)
	}
	return e
}

func (b *treeBuilder) dir(name string, entries ...store.Entry) store.Entry {
	h, err := b.w.PutTree(context.Background(), store.EncodeTree(entries))
	if err != nil {
		b.t.Fatal(err)
	}
	return store.Entry{Name: name, Type: store.TypeDir, Mode: 0o750, UID: 7, GID: 8, Nlink: 1, Subtree: h,
		Mtime: store.Timespec{Sec: 1600000000, Nsec: 999999999}, Atime: store.Timespec{Sec: 1600000000, Nsec: 1}}
}

// testACL is a POSIX ACL granting uid 1000 read: user::rw- user:1000:r--
// group::r-- mask::r-- other::---.
var testACL = []byte{2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 2, 0, 4, 0, 0xe8, 3, 0, 0,
	4, 0, 4, 0, 255, 255, 255, 255, 0x10, 0, 4, 0, 255, 255, 255, 255, 0x20, 0, 0, 0, 255, 255, 255, 255}

// makeSnapshot commits a snapshot of a tree with every kind of entry and
// metadata an image must carry.
func makeSnapshot(t testing.TB, r *store.Repo) *store.Snapshot {
	t.Helper()
	ctx := context.Background()
	if _, err := r.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	w, err := r.BeginSnapshot(ctx, "v", store.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := &treeBuilder{t: t, w: w, rng: rand.New(rand.NewPCG(1, 2))}
	random := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(b.rng.Uint32())
		}
		return p
	}
	big := random(20*testBS + 100)
	copy(big[5*testBS:], big[:testBS]) // a block repeated within the file
	sparse := make([]byte, 1<<20)
	copy(sparse[8192:], random(100))
	copy(sparse[500000:], random(5000))
	// A list long enough to be chunked, with a chunk of holes and blocks
	// that repeat.
	chunked := make([]byte, (2*store.ChunkBlocks+3)*testBS)
	for i := 0; i < 2*store.ChunkBlocks+3; i++ {
		if i/store.ChunkBlocks != 1 {
			copy(chunked[i*testBS:], fmt.Sprint("block ", i%50))
		}
	}
	small := b.file("small.txt", []byte("hello"), nil)
	small.Xattrs = []store.Xattr{{Name: "system.posix_acl_access", Value: testACL}, {Name: "user.note", Value: []byte("a\x00b")}}
	hard := b.file("hard1", random(3000), nil)
	hard.Nlink, hard.Ino = 2, 99
	hard2 := hard
	hard2.Name = "hard2"
	long := strings.Repeat("long-name-", 20)[:200]
	odd := "odd \xff\xfe name"
	neg := b.file("before-1970", []byte("old"), nil)
	neg.Mtime = store.Timespec{Sec: -5, Nsec: 7}
	bigUID := b.file("big-uid", []byte("x"), nil)
	bigUID.UID, bigUID.GID = 3000000, 4000000
	exec := b.file("setuid", []byte("#!/bin/sh\n"), nil)
	exec.Mode = 0o4755
	deep := b.dir(long, b.file(long[:150], random(10), nil), b.dir("d", hard2))
	root := b.dir("", small, b.file("big.bin", big, nil),
		b.file("sparse.img", sparse, []store.Extent{{Off: 8192, Len: 100}, {Off: 500000, Len: 5000}}),
		b.file("hole-only", make([]byte, 3*testBS), []store.Extent{}),
		b.file("chunked", chunked, nil),
		b.file("empty", nil, nil), hard, neg, bigUID, exec, deep,
		b.file(odd, []byte("odd"), nil),
		store.Entry{Name: "link", Type: store.TypeSymlink, Mode: 0o777, Target: "../outside/target", Nlink: 1, Mtime: store.Timespec{Sec: 5}},
		store.Entry{Name: "fifo", Type: store.TypeFIFO, Mode: 0o600, Nlink: 1},
		store.Entry{Name: "sock", Type: store.TypeSocket, Mode: 0o755, Nlink: 1},
		store.Entry{Name: "null", Type: store.TypeCharDev, Mode: 0o666, Rdev: unix.Mkdev(1, 3), Nlink: 1},
		store.Entry{Name: "disk", Type: store.TypeBlockDev, Mode: 0o660, Rdev: unix.Mkdev(259, 1048575), Nlink: 1},
	)
	root.Name = ""
	root.Xattrs = []store.Xattr{{Name: "user.top", Value: []byte("1")}}
	s, err := w.Commit(ctx, root, store.SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flatEntry is what a user sees of one path: everything but how the data
// is cut into blocks.
type flatEntry struct {
	Type                store.FileType
	Mode, UID, GID      uint32
	Size                uint64
	Mtime, Atime, Ctime store.Timespec
	Target              string
	Rdev                uint64
	Xattrs              []store.Xattr
	Data                string // sha256 of the data
	Extents             []store.Extent
	Link                string // first path of its hard-link group
	Nlink               uint32
}

// flatten reads a whole tree into path → flatEntry.
func flatten(t testing.TB, rd store.Reader, root store.Entry) map[string]flatEntry {
	t.Helper()
	ctx := context.Background()
	out := map[string]flatEntry{}
	links := map[[2]uint64]string{}
	var walk func(e *store.Entry, path string)
	walk = func(e *store.Entry, path string) {
		f := flatEntry{Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID, Mtime: e.Mtime, Atime: e.Atime, Ctime: e.Ctime,
			Target: e.Target, Rdev: e.Rdev, Xattrs: e.Xattrs, Extents: e.Extents}
		if e.IsHardLink() {
			key := [2]uint64{e.Dev, e.Ino}
			if _, ok := links[key]; !ok {
				links[key] = path
			}
			f.Link, f.Nlink = links[key], e.Nlink
		}
		switch e.Type {
		case store.TypeRegular:
			f.Size = e.Size
			list, err := store.FileBlocks(ctx, rd, e)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.New()
			for i, h := range list {
				buf := make([]byte, e.BlockLen(i))
				if !h.IsHole() {
					if _, err := rd.ReadBlock(ctx, h, buf); err != nil {
						t.Fatalf("%s block %d: %v", path, i, err)
					}
				}
				sum.Write(buf)
			}
			f.Data = hex.EncodeToString(sum.Sum(nil))
		case store.TypeDir:
			entries, err := rd.Tree(ctx, e.Subtree)
			if err != nil {
				t.Fatal(err)
			}
			for i := range entries {
				walk(&entries[i], path+"/"+entries[i].Name)
			}
		}
		out[path] = f
	}
	walk(&root, "")
	return out
}

func compareFlat(t *testing.T, want, got map[string]flatEntry) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%q missing", p)
			continue
		}
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%q:\nwant %+v\n got %+v", p, w, g)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%q is extra", p)
		}
	}
}

func exportNative(t testing.TB, r *store.Repo, root store.Entry, opts ExportOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := WriteNative(context.Background(), r, root, &buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestNativeRoundTrip: snapshot → native stream → import in another
// repository gives the very same tree (same root hash), every block.
func TestNativeRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := testRepo(t, "eu")
	s := makeSnapshot(t, src)
	stream := exportNative(t, src, s.RootDir, ExportOptions{Header: Header{Name: "golden", Description: "prepared", Region: "eu"}})
	dst := testRepo(t, "us")
	img, st, err := Import(ctx, dst, "copy", bytes.NewReader(stream), ImportOptions{Meta: images.Meta{Owner: 1000}, Origin: images.Origin{Source: "golden.img"}})
	if err != nil {
		t.Fatal(err)
	}
	if img.Snapshot.Root != s.Root {
		t.Errorf("imported root %s, want %s", img.Snapshot.Root.Short(), s.Root.Short())
	}
	compareFlat(t, flatten(t, src, s.RootDir), flatten(t, dst, img.Snapshot.RootDir))
	if img.Description != "prepared" || img.Origin.Kind != "import" || img.Origin.Region != "eu" || img.Region != "us" || img.Owner != 1000 {
		t.Errorf("image metadata: %+v", img)
	}
	if st.Format != FormatNative || st.StreamBytes != uint64(len(stream)) || st.StoredBytes == 0 {
		t.Errorf("stats: %+v", st)
	}
	if img.Snapshot.Stats.Files != 13 || img.Snapshot.Stats.Dirs != 3 || img.Snapshot.Stats.Symlinks != 1 || img.Snapshot.Stats.Others != 4 {
		t.Errorf("image stats: %+v", img.Snapshot.Stats)
	}
	// Again, into the same repository: nothing new is stored.
	img2, st2, err := Import(ctx, dst, "again", bytes.NewReader(stream), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st2.StoredBytes != 0 || img2.Snapshot.Root != s.Root {
		t.Errorf("second import stored %d bytes", st2.StoredBytes)
	}
	if rep, err := check.Check(ctx, dst, check.Options{ReadData: true}); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("check: %v %+v", err, rep)
	}
	// The stream is deterministic.
	if again := exportNative(t, dst, img.Snapshot.RootDir, ExportOptions{Header: Header{Name: "golden", Description: "prepared", Region: "eu"}}); !bytes.Equal(again, stream) {
		t.Errorf("export of the imported image differs from the original stream")
	}
}

// TestTarRoundTrip: snapshot → tar → import shows the same tree, but for
// sockets (tar has none) and sparse extents, which come back at the
// import's block granularity with the same data.
func TestTarRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := testRepo(t, "")
	s := makeSnapshot(t, src)
	var buf bytes.Buffer
	st, err := WriteTar(ctx, src, s.RootDir, &buf, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.StreamBytes != uint64(buf.Len()) || buf.Len()%tarBlock != 0 || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "sock") {
		t.Errorf("tar of %d bytes, stats %+v", buf.Len(), st)
	}
	dst := testRepo(t, "")
	img, ist, err := Import(ctx, dst, "fromtar", bytes.NewReader(buf.Bytes()), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ist.Format != FormatTar {
		t.Errorf("detected %s", ist.Format)
	}
	want := flatten(t, src, s.RootDir)
	delete(want, "/sock") // tar cannot hold a socket
	got := flatten(t, dst, img.Snapshot.RootDir)
	for p, w := range want {
		w.Extents = nil
		want[p] = w
	}
	for p, g := range got {
		if p == "/sparse.img" && !reflect.DeepEqual(g.Extents, []store.Extent{{Off: 0, Len: 2 * store.DefaultBlockSize}}) {
			t.Errorf("sparse extents after tar: %v", g.Extents)
		}
		g.Extents = nil
		got[p] = g
	}
	compareFlat(t, want, got)
	// Compressed, the same.
	for _, c := range []string{"gzip", "zstd"} {
		t.Run(c, func(t *testing.T) {
			img, ist, err := Import(ctx, dst, "c-"+c, bytes.NewReader(compress(t, c, buf.Bytes())), ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if ist.Compression != c || img.Snapshot.Root != mustImage(t, dst, "fromtar").Snapshot.Root {
				t.Errorf("%s: %+v", c, ist)
			}
		})
	}
}

func mustImage(t *testing.T, r *store.Repo, name string) *images.Image {
	t.Helper()
	img, err := images.Get(context.Background(), r, name)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// repoContents is what a failed import must leave unchanged: images, and
// the block data and trees the store holds.
func repoContents(t *testing.T, r *store.Repo) string {
	t.Helper()
	ctx := context.Background()
	imgs, err := images.List(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	u, err := report.Usage(ctx, r, report.UsageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d images, %d blocks, %d bytes, %d garbage, %d trees", len(imgs), u.Blocks, u.StoredBytes, u.GarbageBytes, u.Trees)
}

// TestMalformedNativeRefused: every damaged stream is refused with
// ErrMalformed and leaves the repository as it was.
func TestMalformedNativeRefused(t *testing.T) {
	ctx := context.Background()
	src := testRepo(t, "")
	s := makeSnapshot(t, src)
	stream := exportNative(t, src, s.RootDir, ExportOptions{})
	dst := testRepo(t, "")
	before := repoContents(t, dst)
	try := func(what string, b []byte, want string) {
		t.Helper()
		_, _, err := Import(ctx, dst, "bad", bytes.NewReader(b), ImportOptions{})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want ErrMalformed and %q", what, err, want)
		}
		if after := repoContents(t, dst); after != before {
			t.Fatalf("%s: repository went from %s to %s", what, before, after)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200; i++ {
		b := bytes.Clone(stream)
		pos := rng.IntN(len(b))
		b[pos] ^= byte(1 + rng.IntN(255))
		try(fmt.Sprintf("byte %d flipped", pos), b, "")
	}
	for _, n := range []int{0, 5, len(Magic) + 2, 40, len(stream) / 3, len(stream) / 2, len(stream) - 33, len(stream) - 1} {
		try(fmt.Sprintf("cut at %d", n), stream[:n], "")
	}
	try("trailing data", append(bytes.Clone(stream), 0), "after the end frame")
	v2 := bytes.Clone(stream)
	v2[len(Magic)+1] = 2
	try("version 2", v2, "version 2")
	thin := exportNative(t, src, s.RootDir, ExportOptions{Skip: func(store.Hash) bool { return true }})
	try("thin", thin, "thin")
	// A stream whose block is damaged but whose digest was recomputed is
	// caught by the block's own hash.
	var forged bytes.Buffer
	WriteNative(ctx, src, s.RootDir, &forged, ExportOptions{})
	b := forged.Bytes()
	i := bytes.LastIndex(b, []byte("hello"))
	if i < 0 {
		t.Fatal("small file's data not found")
	}
	b[i] = 'j'
	try("block altered", b, "hash mismatch")
}

// TestThinCopy: a thin stream carries only blocks the receiver lacks, and
// an import that allows thin streams takes it.
func TestThinCopy(t *testing.T) {
	ctx := context.Background()
	src := testRepo(t, "")
	s := makeSnapshot(t, src)
	dst := testRepo(t, "")
	full := exportNative(t, src, s.RootDir, ExportOptions{})
	if _, _, err := Import(ctx, dst, "first", bytes.NewReader(full), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tst, err := WriteNative(ctx, src, s.RootDir, &tb, ExportOptions{Skip: dst.Index().HasBlock})
	if err != nil {
		t.Fatal(err)
	}
	thin := tb.Bytes()
	if tst.Blocks != 0 || tst.Skipped == 0 || len(thin) > len(full)*3/4 {
		t.Errorf("thin stream of %d bytes (full %d): %+v", len(thin), len(full), tst)
	}
	img, st, err := Import(ctx, dst, "second", bytes.NewReader(thin), ImportOptions{Thin: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 0 || st.LinkedBlocks == 0 || img.Snapshot.Root != s.Root {
		t.Errorf("thin import: %+v", st)
	}
	// A thin stream into a repository lacking the blocks is refused.
	empty := testRepo(t, "")
	if _, _, err := Import(ctx, empty, "x", bytes.NewReader(thin), ImportOptions{Thin: true}); !errors.Is(err, ErrMalformed) {
		t.Errorf("thin stream into an empty repository: %v", err)
	}
}

// TestCopy: an image copied into another repository sends only the
// blocks it lacks, keeps its owner, description and content, and names
// where it came from; a name taken there is refused and leaves nothing.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	src := testRepo(t, "")
	s := makeSnapshot(t, src)
	img, err := images.Create(ctx, src, "golden", "v", s.Name, images.Meta{Owner: 1000, Description: "base"})
	if err != nil {
		t.Fatal(err)
	}
	dst := testRepo(t, "")
	copied, st, err := Copy(ctx, src, img, dst, "gold", "src (region local)")
	if err != nil {
		t.Fatal(err)
	}
	if copied.Snapshot.Root != img.Snapshot.Root || copied.Owner != 1000 || copied.Description != "base" ||
		copied.Origin.Kind != "copy" || copied.Origin.Source != "src (region local)" || st.Blocks == 0 || st.LinkedBlocks != 0 {
		t.Errorf("copy: %+v, %+v", copied, st)
	}
	// Again under another name: every block is there, none is sent.
	if _, st, err = Copy(ctx, src, img, dst, "gold2", "src"); err != nil || st.Blocks != 0 || st.LinkedBlocks == 0 {
		t.Errorf("second copy: %+v %v", st, err)
	}
	if _, _, err := Copy(ctx, src, img, dst, "gold", "src"); !errors.Is(err, store.ErrExists) {
		t.Errorf("copy onto a taken name: %v", err)
	}
	if rep, err := check.Check(ctx, dst, check.Options{ReadData: true}); err != nil || len(rep.Problems) > 0 || rep.Images != 2 {
		t.Errorf("check of the copies: %+v %v", rep, err)
	}
}

func compress(t *testing.T, how string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch how {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// tarOf writes an archive of the given headers (with data for regular
// files) through archive/tar, which writes hostile names as given.
func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		data := []byte(nil)
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			data = []byte("data")
			h.Size = 4
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	return buf.Bytes()
}

// TestHostileTarRefused: archives that would write outside the tree,
// through a symlink, twice, or claim absurd sizes are refused and leave
// the repository as it was.
func TestHostileTarRefused(t *testing.T) {
	ctx := context.Background()
	r := testRepo(t, "")
	before := repoContents(t, r)
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }
	// A sparse entry claiming a petabyte, written by our own writer.
	var huge bytes.Buffer
	htw := &tarWriter{w: &huge}
	htw.writeHeader(&tarHeader{name: "GNUSparseFile.0/huge", typeflag: '0', mode: 0o644, size: tarBlock,
		pax: map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "huge", "GNU.sparse.realsize": fmt.Sprint(uint64(1) << 50)}})
	htw.write(append([]byte("1\n0\n0\n"), make([]byte, tarBlock-6)...))
	htw.write(make([]byte, 2*tarBlock))
	good := tarOf(t, reg("a"), reg("b"))
	trailing := append(bytes.Clone(good), []byte("more")...)
	cases := []struct {
		what, want string
		data       []byte
	}{
		{"dot-dot", `".."`, tarOf(t, reg("ok"), reg("x/../../evil"))},
		{"absolute", "absolute", tarOf(t, reg("/etc/passwd"))},
		{"through symlink", "through the symlink a", tarOf(t, &tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, reg("a/passwd"))},
		{"through file", "f is not a directory", tarOf(t, reg("f"), reg("f/x"))},
		{"duplicate", "given twice", tarOf(t, reg("x"), reg("y"), reg("x"))},
		{"duplicate dir", "given twice", tarOf(t, &tar.Header{Name: "d/", Typeflag: tar.TypeDir}, &tar.Header{Name: "d", Typeflag: tar.TypeDir})},
		{"link to missing", "not earlier in the archive", tarOf(t, &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "missing"})},
		{"link outside", `".."`, tarOf(t, &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"})},
		{"link to dir", "hard link to the directory", tarOf(t, &tar.Header{Name: "d/", Typeflag: tar.TypeDir}, &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "d"})},
		{"huge size", "more than", tarOf(t, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 1 << 41})},
		{"huge sparse", "more than", huge.Bytes()},
		{"truncated", "truncated", good[:700]},
		{"unsupported type", "not supported", tarOf(t, &tar.Header{Name: "v", Typeflag: 'V'})},
		{"not tar", "neither", bytes.Repeat([]byte("garbage!"), 100)},
		{"empty", "empty", nil},
		{"zeros", "no entries", make([]byte, 10240)},
		{"data after the end", "data after the end-of-archive", trailing},
		{"empty symlink target", "symlink target not a path", tarOf(t, &tar.Header{Name: "s", Typeflag: tar.TypeSymlink})},
	}
	for _, c := range cases {
		_, _, err := Import(ctx, r, "bad", bytes.NewReader(c.data), ImportOptions{})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrMalformed and %q", c.what, err, c.want)
		}
		if after := repoContents(t, r); after != before {
			t.Fatalf("%s: repository went from %s to %s", c.what, before, after)
		}
	}
	// Implied directories and a link to a link are fine.
	img, _, err := Import(ctx, r, "fine", bytes.NewReader(tarOf(t, reg("p/q/r"), reg("s"),
		&tar.Header{Name: "t", Typeflag: tar.TypeLink, Linkname: "s"}, &tar.Header{Name: "p/u", Typeflag: tar.TypeLink, Linkname: "./t"})), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	flat := flatten(t, r, img.Snapshot.RootDir)
	if f := flat["/p/u"]; f.Link != "/p/u" && f.Link != "/s" || f.Nlink != 3 || flat["/p/q"].Type != store.TypeDir {
		t.Errorf("links and implied directories: %+v", flat)
	}
}

// memSink keeps what an import stores in memory and reads it back, for
// fuzzing without a repository.
type memSink struct {
	blocks, blobs map[store.Hash][]byte
}

func (*memSink) Sum(b []byte) store.Hash { return store.Sum(b) }

func newMemSink() *memSink {
	return &memSink{blocks: map[store.Hash][]byte{}, blobs: map[store.Hash][]byte{}}
}

func (m *memSink) PutBlock(ctx context.Context, h store.Hash, data []byte) error {
	m.blocks[h] = bytes.Clone(data)
	return nil
}

func (m *memSink) PutTree(ctx context.Context, blob []byte) (store.Hash, error) {
	h := store.Sum(blob)
	m.blobs[h] = bytes.Clone(blob)
	return h, nil
}

func (m *memSink) Blob(ctx context.Context, h store.Hash) ([]byte, error) {
	if b, ok := m.blobs[h]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("blob %s: %w", h.Short(), store.ErrNotFound)
}

func (m *memSink) Tree(ctx context.Context, h store.Hash) ([]store.Entry, error) {
	b, err := m.Blob(ctx, h)
	if err != nil {
		return nil, err
	}
	return store.DecodeTree(b)
}

func (m *memSink) ReadBlock(ctx context.Context, h store.Hash, p []byte) (int, error) {
	b, ok := m.blocks[h]
	if !ok {
		return 0, fmt.Errorf("block %s: %w", h.Short(), store.ErrNotFound)
	}
	return copy(p, b), nil
}

// seedTree stores a small tree of every kind of entry in a memSink.
func seedTree() (*memSink, store.Entry) {
	m := newMemSink()
	ctx := context.Background()
	data := []byte("some file data")
	h := store.Sum(data)
	m.PutBlock(ctx, h, data)
	sub, _ := m.PutTree(ctx, store.EncodeTree([]store.Entry{
		{Name: "f", Type: store.TypeRegular, Mode: 0o644, Size: uint64(len(data)), BlockSize: testBS, Blocks: []store.Hash{h}, Nlink: 2, Ino: 5},
		{Name: "s", Type: store.TypeRegular, Mode: 0o600, Size: 3 * testBS, BlockSize: testBS, Blocks: []store.Hash{store.HoleHash, store.HoleHash, store.HoleHash}, Sparse: true},
	}))
	top, _ := m.PutTree(ctx, store.EncodeTree([]store.Entry{
		{Name: "d", Type: store.TypeDir, Mode: 0o755, Subtree: sub, Xattrs: []store.Xattr{{Name: "user.x", Value: []byte("1")}}},
		{Name: "g", Type: store.TypeRegular, Mode: 0o644, Size: uint64(len(data)), BlockSize: testBS, Blocks: []store.Hash{h}, Nlink: 2, Ino: 5},
		{Name: "l", Type: store.TypeSymlink, Target: "d/f"},
		{Name: "p", Type: store.TypeFIFO, Mode: 0o600},
	}))
	return m, store.Entry{Type: store.TypeDir, Mode: 0o755, Subtree: top}
}

func seedStreams(t testing.TB) (native, tarball []byte) {
	m, root := seedTree()
	var n, tb bytes.Buffer
	if _, err := WriteNative(context.Background(), m, root, &n, ExportOptions{Header: Header{Name: "seed"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTar(context.Background(), m, root, &tb, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	return n.Bytes(), tb.Bytes()
}

// FuzzReadNative: no input makes the native reader panic, hang or accept
// something inconsistent: what it accepts exports again and reads back
// to the same tree.
func FuzzReadNative(f *testing.F) {
	native, _ := seedStreams(f)
	f.Add(native)
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		m := newMemSink()
		res, err := readNative(ctx, bufio.NewReader(bytes.NewReader(data)), m, nil, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		var again bytes.Buffer
		if _, err := WriteNative(ctx, m, res.root, &again, ExportOptions{}); err != nil {
			t.Fatalf("accepted stream does not export: %v", err)
		}
		res2, err := readNative(ctx, bufio.NewReader(&again), newMemSink(), nil, nil)
		if err != nil || res2.root.Subtree != res.root.Subtree || res2.stats != res.stats {
			t.Fatalf("re-export reads back differently: %v", err)
		}
	})
}

// FuzzReadTar: likewise for tar archives.
func FuzzReadTar(f *testing.F) {
	_, tarball := seedStreams(f)
	f.Add(tarball)
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		m := newMemSink()
		// Entries are kept small: holes cost a scan of zeros each.
		res, err := readTar(ctx, bufio.NewReader(bytes.NewReader(data)), m, nil, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		var again bytes.Buffer
		if _, err := WriteTar(ctx, m, res.root, &again, ExportOptions{}); err != nil {
			t.Fatalf("accepted archive does not export: %v", err)
		}
		m2 := newMemSink()
		res2, err := readTar(ctx, bufio.NewReader(&again), m2, nil, 1<<20)
		if err != nil {
			t.Fatalf("re-export does not read back: %v", err)
		}
		if a, b := flatten(t, m, res.root), flatten(t, m2, res2.root); len(a) != len(b) {
			t.Fatalf("re-export reads back %d paths, not %d", len(b), len(a))
		}
	})
}

// TestCatalog: a directory of native files serves public images read from
// the files, every block verified; a damaged file is left out, a damaged
// block is an error, a file that changes is indexed again.
func TestCatalog(t *testing.T) {
	ctx := context.Background()
	src := testRepo(t, "eu")
	s := makeSnapshot(t, src)
	dir := t.TempDir()
	stream := exportNative(t, src, s.RootDir, ExportOptions{Header: Header{Name: "x", Description: "from the catalog", Region: "eu"}})
	os.WriteFile(filepath.Join(dir, "pub.img"), stream, 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("not an image name"), 0o644)
	cat := OpenCatalog(dir, nil)
	imgs, err := cat.Images(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].Name != "pub" || imgs[0].Type != images.Public || imgs[0].Description != "from the catalog" {
		t.Fatalf("catalog images: %+v %v", imgs, err)
	}
	img, rd, err := cat.Image(ctx, "pub")
	if err != nil {
		t.Fatal(err)
	}
	if !img.VisibleTo(12345) || img.Snapshot.Root != s.Root {
		t.Errorf("public image: %+v", img)
	}
	compareFlat(t, flatten(t, src, s.RootDir), flatten(t, rd, img.Snapshot.RootDir))

	// A flipped byte of block data: that block fails its hash, nothing else.
	damaged := bytes.Clone(stream)
	i := bytes.LastIndex(damaged, []byte("hello"))
	damaged[i] = 'J'
	os.WriteFile(filepath.Join(dir, "pub.img"), damaged, 0o644)
	os.Chtimes(filepath.Join(dir, "pub.img"), time.Now(), time.Now().Add(time.Second))
	_, rd, err = cat.Image(ctx, "pub")
	if err != nil {
		t.Fatal(err)
	}
	small, _ := store.Lookup(ctx, rd, &img.Snapshot.RootDir, "small.txt")
	if _, err := rd.ReadBlock(ctx, small.Blocks[0], make([]byte, testBS)); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("damaged block read: %v", err)
	}
	// A flipped byte of a tree: the file fails its digest and is left out.
	damaged = bytes.Clone(stream)
	damaged[len(Magic)+40] ^= 1
	os.WriteFile(filepath.Join(dir, "pub.img"), damaged, 0o644)
	os.Chtimes(filepath.Join(dir, "pub.img"), time.Now(), time.Now().Add(2*time.Second))
	if imgs, err := cat.Images(ctx); err != nil || len(imgs) != 0 {
		t.Errorf("damaged catalog file still listed: %+v %v", imgs, err)
	}
	if _, _, err := cat.Image(ctx, "pub"); err == nil {
		t.Error("damaged catalog file still served")
	}
	os.Remove(filepath.Join(dir, "pub.img"))
	if _, _, err := cat.Image(ctx, "pub"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removed catalog file: %v", err)
	}
}

// TestTruncatedCompressedRawRefused: a raw disk image cut short inside its
// gzip or zstd stream is refused, not taken as a smaller disk, and leaves
// nothing behind; the whole stream imports.
func TestTruncatedCompressedRawRefused(t *testing.T) {
	ctx := context.Background()
	disk := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{5}).Read(disk[1<<20 : 2<<20])
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(disk)
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(disk)
	zw.Close()
	dst := testRepo(t, "")
	raw := &store.Entry{Name: "disk.img", Mode: 0o644}
	for _, c := range []struct {
		codec  string
		stream []byte
	}{{"gzip", gz.Bytes()}, {"zstd", zs.Bytes()}} {
		before := repoContents(t, dst)
		for _, n := range []int{len(c.stream) / 4, len(c.stream) / 2, len(c.stream) - 9} {
			_, _, err := Import(ctx, dst, "bad", bytes.NewReader(c.stream[:n]), ImportOptions{Raw: raw})
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s cut at %d of %d: %v; want ErrMalformed", c.codec, n, len(c.stream), err)
			}
			if after := repoContents(t, dst); after != before {
				t.Fatalf("%s cut at %d: repository went from %s to %s", c.codec, n, before, after)
			}
		}
		img, _, err := Import(ctx, dst, "whole-"+c.codec, bytes.NewReader(c.stream), ImportOptions{Raw: raw})
		if err != nil || img.Snapshot.Stats.LogicalBytes != uint64(len(disk)) {
			t.Errorf("%s whole: %v", c.codec, err)
		}
	}
}

// TestTarSparseClaimsBounded: what sparse entries claim is bounded in all,
// not only each: many entries just under the bound are refused, since
// their holes are scanned.
func TestTarSparseClaimsBounded(t *testing.T) {
	var buf bytes.Buffer
	tw := &tarWriter{w: &buf}
	for i := range 3 {
		name := fmt.Sprintf("s%d", i)
		tw.writeHeader(&tarHeader{name: "GNUSparseFile.0/" + name, typeflag: '0', mode: 0o644, size: tarBlock,
			pax: map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name, "GNU.sparse.realsize": fmt.Sprint(400 << 10)}})
		tw.write(append([]byte("1\n0\n0\n"), make([]byte, tarBlock-6)...))
	}
	tw.write(make([]byte, 2*tarBlock))
	ctx := context.Background()
	if _, err := readTar(ctx, bufio.NewReader(bytes.NewReader(buf.Bytes())), newMemSink(), nil, 1<<20); !errors.Is(err, ErrMalformed) ||
		!strings.Contains(err.Error(), "sparse entries claim more than 1048576 bytes in all") {
		t.Errorf("three sparse entries of 400 KiB under a 1 MiB bound: %v", err)
	}
	if _, err := readTar(ctx, bufio.NewReader(bytes.NewReader(buf.Bytes())), newMemSink(), nil, 2<<20); err != nil {
		t.Errorf("the same under a 2 MiB bound: %v", err)
	}
}

// TestExportFileMode: an exported file is 0600, as the repository's data
// is, whatever the umask.
func TestExportFileMode(t *testing.T) {
	ctx := context.Background()
	r := testRepo(t, "eu")
	s := makeSnapshot(t, r)
	img, err := images.Create(ctx, r, "img", "v", s.Name, images.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	old := unix.Umask(0)
	defer unix.Umask(old)
	dir := t.TempDir()
	for _, name := range []string{"out.img", "out.tar"} {
		path := filepath.Join(dir, name)
		format := FormatNative
		if strings.HasSuffix(name, ".tar") {
			format = FormatTar
		}
		d, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ExportFile(ctx, r, img, d, name, format, false, nil, nil)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", name, st.Mode(), err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*partial*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestExportFileStaysInItsDirectory: an export works in the directory it
// was handed, not by path: a directory swapped for a symlink meanwhile
// (by whoever can write its parent) does not lead the file elsewhere.
func TestExportFileStaysInItsDirectory(t *testing.T) {
	ctx := context.Background()
	r := testRepo(t, "eu")
	s := makeSnapshot(t, r)
	img, err := images.Create(ctx, r, "img", "v", s.Name, images.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir, victim, moved := filepath.Join(base, "dir"), filepath.Join(base, "victim"), filepath.Join(base, "moved")
	os.Mkdir(dir, 0o755)
	os.Mkdir(victim, 0o755)
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportFile(ctx, r, img, d, "out.img", FormatNative, false, nil, nil); err != nil {
		t.Fatal(err)
	}
	if names, _ := os.ReadDir(victim); len(names) != 0 {
		t.Errorf("the export went through the symlink: %v", names)
	}
	if names, _ := os.ReadDir(moved); len(names) != 1 || names[0].Name() != "out.img" {
		t.Errorf("the directory handed over holds %v, want out.img alone", names)
	}
}
