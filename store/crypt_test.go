package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// marker is what the tests of encryption put in names, contents, xattrs
// and descriptions, and look for in every file of the repository.
const marker = "chainfs-secret-marker-7f3a"

func password(p string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(p), nil }
}

// encryptedRepo makes an encrypted repository with password pw and
// compression off (so the marker in blocks is there to find, were they
// not sealed), and returns its directory.
func encryptedRepo(t *testing.T, pw string) string {
	t.Helper()
	dir := t.TempDir() + "/repo"
	if _, err := Init(context.Background(), Options{Dir: dir, Compression: CompressionOff, Encrypt: true, Password: password(pw)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// markedBlock is a block of text holding the marker.
func markedBlock(i int) []byte {
	var b bytes.Buffer
	for b.Len() < testBS {
		fmt.Fprintf(&b, "%s line %d of block %d\n", marker, b.Len(), i)
	}
	return b.Bytes()[:testBS]
}

// filesHolding lists the files under dir that hold any of needles.
func filesHolding(t *testing.T, dir string, needles ...[]byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				found = append(found, fmt.Sprintf("%s holds %q", path, n))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// dirState is a digest of every file's name and bytes under dir but the
// lock's, whose text names the last process that held the repository.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != lockFile {
			f, err := os.Open(path)
			if err == nil {
				fmt.Fprintf(h, "%s\n", path)
				io.Copy(h, f)
				f.Close()
			}
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestEncryptedRepository: after snapshots of a tree with a marker in a
// volume's and a snapshot's name, a description, a file's name, an xattr
// and block contents, no file of the repository holds the marker, nor
// the plain hash of a block (which would tell that known data is
// stored); everything reads back with the password; a wrong one fails
// with ErrWrongPassword and changes nothing; a removed key no longer
// opens; gc's rewrite keeps blocks sealed and readable.
func TestEncryptedRepository(t *testing.T) {
	ctx := context.Background()
	dir := encryptedRepo(t, "first")
	r, err := Open(ctx, Options{Dir: dir, Password: password("first")})
	if err != nil {
		t.Fatal(err)
	}
	if r.keys == nil || r.Info().Encryption != EncryptionScheme {
		t.Fatalf("not encrypted: %+v", r.Info())
	}
	vol := "vol-" + marker
	if _, err := r.AddVolume(ctx, Volume{Name: vol, Source: "/nowhere/" + marker}); err != nil {
		t.Fatal(err)
	}
	var snaps []*Snapshot
	for i := range 3 {
		w, err := r.BeginSnapshot(ctx, vol, SnapshotOptions{Name: fmt.Sprintf("snap-%d-%s", i, marker), Description: "about " + marker})
		if err != nil {
			t.Fatal(err)
		}
		file := putFile(t, w, "disk", [][]byte{markedBlock(i), markedBlock(100 + i)})
		named := putFile(t, w, marker+".txt", [][]byte{markedBlock(7)})
		named.Xattrs = []Xattr{{Name: "user.note", Value: []byte(marker)}}
		snaps = append(snaps, commitTop(t, w, []Entry{file, named}))
	}
	readEvery(t, r, snaps)
	if r.Sum(markedBlock(0)) == Sum(markedBlock(0)) {
		t.Fatal("an encrypted repository names a block by its plain hash")
	}
	if err := r.DeleteSnapshot(ctx, vol, snaps[0].Name); err != nil {
		t.Fatal(err)
	}
	if st, err := r.GC(ctx); err != nil || st.PacksRepacked == 0 {
		t.Fatalf("gc: %+v %v", st, err)
	}
	readEvery(t, r, snaps[1:])
	if p := problemsOf(t, r); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	plainID := Sum(markedBlock(1))
	if found := filesHolding(t, dir, []byte(marker), plainID[:]); len(found) > 0 {
		t.Errorf("readable without the key:\n%s", strings.Join(found, "\n"))
	}

	before := dirState(t, dir)
	if _, err := Open(ctx, Options{Dir: dir, Password: password("wrong")}); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("a wrong password: %v", err)
	}
	if _, err := Open(ctx, Options{Dir: dir}); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("no password: %v", err)
	}
	if after := dirState(t, dir); after != before {
		t.Error("a failed open changed the repository")
	}

	r, err = Open(ctx, Options{Dir: dir, Password: password("first")})
	if err != nil {
		t.Fatal(err)
	}
	readEvery(t, r, snaps[1:])
	s, err := r.Snapshot(ctx, vol, snaps[2].Name)
	if err != nil || s.Description != "about "+marker {
		t.Fatalf("snapshot: %+v %v", s, err)
	}
	e, err := Lookup(ctx, r, &s.RootDir, marker+".txt")
	if err != nil || len(e.Xattrs) != 1 || string(e.Xattrs[0].Value) != marker {
		t.Fatalf("the file with an xattr: %+v %v", e, err)
	}

	// Keys change while the repository is open (a daemon holds it).
	keysWith := func(pw string) *KeyFiles {
		t.Helper()
		k, err := OpenKeyFiles(ctx, Options{Dir: dir, Password: password(pw)})
		if err != nil {
			t.Fatalf("keys with %q: %v", pw, err)
		}
		return k
	}
	k1 := keysWith("first")
	if _, err := k1.Add(ctx, []byte("second")); err != nil {
		t.Fatal(err)
	}
	if keys, err := k1.List(ctx); err != nil || len(keys) != 2 {
		t.Fatalf("keys: %+v %v", keys, err)
	}
	if err := k1.Remove(ctx, k1.current); !errors.Is(err, ErrInvalid) {
		t.Errorf("removing the key in use: %v", err)
	}
	r.Close()
	r2, err := Open(ctx, Options{Dir: dir, Password: password("second")})
	if err != nil {
		t.Fatalf("the second key: %v", err)
	}
	readEvery(t, r2, snaps[1:])
	r2.Close()
	k2 := keysWith("second")
	if err := k2.Remove(ctx, k1.current); err != nil {
		t.Fatal(err)
	}
	third, err := k2.ChangePassword(ctx, []byte("third"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"first", "second"} {
		if _, err := Open(ctx, Options{Dir: dir, Password: password(pw)}); !errors.Is(err, ErrWrongPassword) {
			t.Errorf("the removed key %q: %v", pw, err)
		}
	}
	r3, err := Open(ctx, Options{Dir: dir, Password: password("third")})
	if err != nil {
		t.Fatalf("the changed password: %v", err)
	}
	defer r3.Close()
	if keys, err := keysWith("third").List(ctx); err != nil || len(keys) != 1 || keys[0].ID != third.ID || !keys[0].Current {
		t.Errorf("keys: %+v %v", keys, err)
	}
	readEvery(t, r3, snaps[1:])
}

// TestSealedBlockDamage: a flipped byte anywhere in a sealed block, its
// nonce, its ciphertext or its tag, is ErrCorrupt on read, never other
// bytes; so is a sealed block moved under another block's record.
func TestSealedBlockDamage(t *testing.T) {
	ctx := context.Background()
	dir := encryptedRepo(t, "pw")
	r, err := Open(ctx, Options{Dir: dir, Password: password("pw")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	snapFile(t, r, "v", markedBlock(1), markedBlock(2))
	h1, h2 := r.Sum(markedBlock(1)), r.Sum(markedBlock(2))
	rec, err := r.blockRecord(h1)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Length != testBS+sealOverhead {
		t.Fatalf("a sealed block of %d bytes takes %d", testBS, rec.Length)
	}
	path := filepath.Join(dir, packsDir, fmt.Sprintf("%016x.pack", rec.Pack))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, testBS)
	for _, at := range []uint32{0, sealNonce, rec.Length / 2, rec.Length - 1} {
		one := make([]byte, 1)
		f.ReadAt(one, int64(rec.Offset)+int64(at))
		f.WriteAt([]byte{one[0] ^ 1}, int64(rec.Offset)+int64(at))
		r.places.drop(h1)
		if _, err := r.ReadBlock(ctx, h1, buf); !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d flipped: %v", at, err)
		}
		f.WriteAt(one, int64(rec.Offset)+int64(at))
	}
	if _, err := r.ReadBlock(ctx, h1, buf); err != nil || !bytes.Equal(buf, markedBlock(1)) {
		t.Fatalf("mended: %v", err)
	}
	// Block 2's sealed bytes where block 1's were.
	rec2, _ := r.blockRecord(h2)
	other := make([]byte, rec2.Length)
	f.ReadAt(other, int64(rec2.Offset))
	f.WriteAt(other, int64(rec.Offset))
	r.places.drop(h1)
	if _, err := r.ReadBlock(ctx, h1, buf); !errors.Is(err, ErrCorrupt) {
		t.Errorf("another block's sealing in its place: %v", err)
	}
}

// TestSealedStream: a stream seals and opens to the same bytes at every
// size about a segment's; a cut, a flipped byte or a dropped segment does
// not open.
func TestSealedStream(t *testing.T) {
	k, err := newKeyring(bytes.Repeat([]byte{7}, masterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, streamSegment - 1, streamSegment, streamSegment + 1, 2*streamSegment + 5} {
		plain := bytes.Repeat([]byte("x"), n)
		var sealed bytes.Buffer
		w := k.sealStream(&sealed, sealCheckpoint)
		w.Write(plain[:n/3])
		w.Write(plain[n/3:])
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if int64(sealed.Len()) != sealedSize(int64(n)) || plainSize(int64(sealed.Len())) != int64(n) {
			t.Fatalf("%d bytes seal to %d (sealedSize %d, plainSize %d)", n, sealed.Len(), sealedSize(int64(n)), plainSize(int64(sealed.Len())))
		}
		open := func(b []byte) ([]byte, error) {
			r, err := k.openStream(bytes.NewReader(b), sealCheckpoint)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}
		if got, err := open(sealed.Bytes()); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: %d back, %v", n, len(got), err)
		}
		b := sealed.Bytes()
		flipped := bytes.Clone(b)
		flipped[len(flipped)-1] ^= 1
		if _, err := open(flipped); !errors.Is(err, errUndecodable) {
			t.Errorf("%d bytes, the last flipped: %v", n, err)
		}
		if n > streamSegment {
			// The last segment dropped: what is left ends in a segment
			// not sealed as the last.
			cut := b[:len(b)-(n%streamSegment+16)]
			if _, err := open(cut); !errors.Is(err, errUndecodable) {
				t.Errorf("%d bytes, the last segment dropped: %v", n, err)
			}
		}
		if r, err := k.openStream(bytes.NewReader(b), sealJournal); err == nil {
			if _, err := io.ReadAll(r); !errors.Is(err, errUndecodable) {
				t.Errorf("opened as another kind: %v", err)
			}
		} else if !errors.Is(err, errUndecodable) {
			t.Errorf("opened as another kind: %v", err)
		}
	}
}

// sealedSize is the size of a stream of plain bytes once sealed, as
// the format says: what plainSize must invert.
func sealedSize(plain int64) int64 {
	segs := plain/streamSegment + 1
	return int64(len(sealedStreamMagic)) + streamPrefix + plain + segs*(sealOverhead-sealNonce)
}

// BenchmarkSealBlock: sealing and opening a 256 KiB block, and naming it
// keyed and plain, on one core: what encryption adds to a snapshot's and
// a read's CPU per block.
func BenchmarkSealBlock(b *testing.B) {
	k, err := newKeyring(bytes.Repeat([]byte{7}, masterKeySize))
	if err != nil {
		b.Fatal(err)
	}
	block := noise(1)
	for len(block) < 256<<10 {
		block = append(block, noise(uint64(len(block)))...)
	}
	h := k.ids.Sum(block)
	sealed := k.seal(nil, sealBlock, blockAD(h, CodecRaw), block)
	out := make([]byte, 0, len(sealed))
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(block)))
		for b.Loop() {
			out = k.seal(out[:0], sealBlock, blockAD(h, CodecRaw), block)
		}
	})
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(block)))
		for b.Loop() {
			if _, err := k.open(out[:0], sealBlock, blockAD(h, CodecRaw), sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
	// AES-256-GCM, which the format does not use, for comparison
	// (docs/format.md, "Encryption", says why).
	gcm, _ := cipher.NewGCM(must(aes.NewCipher(make([]byte, 32))))
	b.Run("aes-gcm", func(b *testing.B) {
		b.SetBytes(int64(len(block)))
		nonce := make([]byte, gcm.NonceSize())
		for b.Loop() {
			out = gcm.Seal(out[:0], nonce, block, nil)
		}
	})
	b.Run("name-keyed", func(b *testing.B) {
		b.SetBytes(int64(len(block)))
		for b.Loop() {
			k.ids.Sum(block)
		}
	})
	b.Run("name-plain", func(b *testing.B) {
		b.SetBytes(int64(len(block)))
		for b.Loop() {
			Sum(block)
		}
	})
}

// TestSealedFile: a file sealed with a password opens with it to the same
// bytes; another password is ErrWrongPassword; a flipped byte or a cut
// after the header is ErrCorrupt.
func TestSealedFile(t *testing.T) {
	plain := bytes.Repeat([]byte(marker), (streamSegment+100)/len(marker))
	var sealed bytes.Buffer
	w, err := SealFile(&sealed, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed.Bytes(), []byte(marker)) {
		t.Fatal("the marker shows in the sealed file")
	}
	read := func(b []byte, pw string) ([]byte, error) {
		r, err := OpenSealedFile(bytes.NewReader(b), []byte(pw))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	if got, err := read(sealed.Bytes(), "pw"); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("opened: %d bytes, %v", len(got), err)
	}
	if _, err := read(sealed.Bytes(), "other"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("another password: %v", err)
	}
	b := bytes.Clone(sealed.Bytes())
	b[len(b)-streamSegment/2] ^= 1
	if _, err := read(b, "pw"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a flipped byte: %v", err)
	}
	if _, err := read(sealed.Bytes()[:len(b)-200], "pw"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("cut short: %v", err)
	}
	// Cut after the first segment, where a segment ends.
	first := len(b) - (len(plain) - streamSegment + 16)
	if _, err := read(sealed.Bytes()[:first], "pw"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("cut between segments: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
