package imagefile

import (
	"bytes"
	"context"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/check"
	"github.com/chainfs/chainfs/store/images"
)

// encryptedRepo is an encrypted repository for t.
func encryptedRepo(t *testing.T, password string) *store.Repo {
	t.Helper()
	dir := t.TempDir() + "/repo"
	pw := func(context.Context) ([]byte, error) { return []byte(password), nil }
	if _, err := store.Init(context.Background(), store.Options{Dir: dir, Encrypt: true, Password: pw}); err != nil {
		t.Fatal(err)
	}
	r, err := store.Open(context.Background(), store.Options{Dir: dir, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestNativeAcrossNames: a native stream exported from an encrypted
// repository is the very stream the same tree gives from a plain one
// (plain names, byte for byte); imported into an encrypted repository
// it gives the same tree; image copy works from and into encrypted
// repositories, each naming blocks its own way, and check finds nothing.
func TestNativeAcrossNames(t *testing.T) {
	ctx := context.Background()
	plain := testRepo(t, "")
	ps := makeSnapshot(t, plain)
	sealed := encryptedRepo(t, "one")
	ss := makeSnapshot(t, sealed)
	if ss.Root == ps.Root {
		t.Fatal("an encrypted repository names a tree as a plain one does")
	}
	want := flatten(t, plain, ps.RootDir)
	compareFlat(t, want, flatten(t, sealed, ss.RootDir))

	hdr := ExportOptions{Header: Header{Name: "x"}}
	fromPlain := exportNative(t, plain, ps.RootDir, hdr)
	if fromSealed := exportNative(t, sealed, ss.RootDir, hdr); !bytes.Equal(fromSealed, fromPlain) {
		t.Fatal("the native stream of an encrypted repository's tree differs from a plain one's")
	}

	other := encryptedRepo(t, "two")
	img, _, err := Import(ctx, other, "imported", bytes.NewReader(fromPlain), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	compareFlat(t, want, flatten(t, other, img.Snapshot.RootDir))
	// Again: every block and tree is there already.
	if _, st, err := Import(ctx, other, "again", bytes.NewReader(fromPlain), ImportOptions{}); err != nil || st.StoredBytes != 0 {
		t.Errorf("a second import: %+v %v", st, err)
	}

	simg, err := images.Create(ctx, sealed, "golden", "v", ss.Name, images.Meta{Owner: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		src      store.Reader
		img      *images.Image
		dst      *store.Repo
		wantRoot store.Hash
	}{
		{"sealed to sealed", sealed, simg, other, img.Snapshot.Root},
		{"sealed to plain", sealed, simg, testRepo(t, ""), ps.Root},
		{"plain to sealed", plain, mustCreate(t, plain, ps), encryptedRepo(t, "three"), store.Hash{}},
	} {
		copied, _, err := Copy(ctx, c.src, c.img, c.dst, "copy", "elsewhere")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.wantRoot != (store.Hash{}) && copied.Snapshot.Root != c.wantRoot {
			t.Errorf("%s: root %s, want %s", c.name, copied.Snapshot.Root.Short(), c.wantRoot.Short())
		}
		compareFlat(t, want, flatten(t, c.dst, copied.Snapshot.RootDir))
		if rep, err := check.Check(ctx, c.dst, check.Options{ReadData: true}); err != nil || len(rep.Problems) > 0 {
			t.Errorf("%s: check: %v %+v", c.name, err, rep.Problems)
		}
	}
}

func mustCreate(t *testing.T, r *store.Repo, s *store.Snapshot) *images.Image {
	t.Helper()
	img, err := images.Create(context.Background(), r, "golden", "v", s.Name, images.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return img
}
