package market

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/store"
)

func signed(t *testing.T, body string) (*Subscription, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sigFile, err := Sign([]byte(body), priv, "https://vendor.example/c/catalog.json")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ParseSignature(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	return &Subscription{Name: "acme", URL: "https://vendor.example/c/catalog.json", Key: FormatKey(pub), Body: []byte(body), Signature: sig}, priv
}

const good = `{"format": "chainfs-catalog-1", "vendor": "Acme", "images": [
 {"name": "base", "url": "img/base.chainfs", "size": 5, "sha256": "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824"}]}`

// TestCatalogSignature: a catalog opens only with its vendor's key and
// unchanged; relative URLs resolve against the catalog's; every byte of
// the body and the signature counts.
func TestCatalogSignature(t *testing.T) {
	s, _ := signed(t, good)
	c, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := c.Image("base")
	if !ok || e.URL != "https://vendor.example/c/img/base.chainfs" || e.SHA256 != strings.ToLower(e.SHA256) {
		t.Fatalf("entry: %+v", e)
	}
	for i := range s.Body {
		bad := *s
		bad.Body = bytes.Clone(s.Body)
		bad.Body[i] ^= 1
		if _, err := bad.Open(); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("body byte %d flipped: %v", i, err)
		}
	}
	bad := *s
	bad.Signature = bytes.Clone(s.Signature)
	bad.Signature[10] ^= 0x80
	if _, err := bad.Open(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("signature flipped: %v", err)
	}
	other, _ := signed(t, good)
	bad = *s
	bad.Key = other.Key
	if _, err := bad.Open(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another vendor's key: %v", err)
	}
}

// TestCatalogRefused: what a vendor cannot sign.
func TestCatalogRefused(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	sum := strings.Repeat("ab", 32)
	for _, bad := range []string{
		`{"format": "chainfs-catalog-2", "images": []}`,
		`{"format": "chainfs-catalog-1", "images": [], "extra": 1}`,
		`not json`,
		fmt.Sprintf(`{"format": "chainfs-catalog-1", "images": [{"name": "a", "url": "http://x/a", "size": 1, "sha256": %q}]}`, sum),
		fmt.Sprintf(`{"format": "chainfs-catalog-1", "images": [{"name": ".a", "url": "a", "size": 1, "sha256": %q}]}`, sum),
		fmt.Sprintf(`{"format": "chainfs-catalog-1", "images": [{"name": "a", "url": "a", "size": 0, "sha256": %q}]}`, sum),
		`{"format": "chainfs-catalog-1", "images": [{"name": "a", "url": "a", "size": 1, "sha256": "abc"}]}`,
		fmt.Sprintf(`{"format": "chainfs-catalog-1", "images": [{"name": "a", "url": "a", "size": 1, "sha256": %q}, {"name": "a", "url": "b", "size": 1, "sha256": %q}]}`, sum, sum),
	} {
		if _, err := Sign([]byte(bad), priv, "https://v.example/"); !errors.Is(err, ErrBadCatalog) {
			t.Errorf("signed %s: %v", bad, err)
		}
	}
	if _, err := ParseKey("ed25519:AAAA"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a short key: %v", err)
	}
}

// TestChecked: a download passes only at the catalog's size and hash,
// also when its reader stops before the end.
func TestChecked(t *testing.T) {
	data := []byte("hello")
	sum := sha256.Sum256(data)
	e := &Entry{Name: "x", Size: 5, SHA256: hex.EncodeToString(sum[:])}
	if _, err := io.ReadAll(NewChecked(bytes.NewReader(data), e)); err != nil {
		t.Fatalf("the right bytes: %v", err)
	}
	c := NewChecked(bytes.NewReader(data), e)
	c.Read(make([]byte, 2))
	if err := c.Finish(); err != nil {
		t.Fatalf("finish after a partial read: %v", err)
	}
	for _, bad := range []string{"hellp", "hell", "hello!"} {
		c := NewChecked(strings.NewReader(bad), e)
		if _, err := io.ReadAll(c); !errors.Is(err, ErrMismatch) {
			t.Errorf("%q: %v", bad, err)
		}
		c = NewChecked(strings.NewReader(bad), e)
		c.Read(make([]byte, 1))
		if err := c.Finish(); !errors.Is(err, ErrMismatch) {
			t.Errorf("%q finished: %v", bad, err)
		}
	}
}

// TestSignatureURL: the signature is beside the catalog, also when the
// catalog's URL has a query.
func TestSignatureURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://v.example/c/catalog.json":          "https://v.example/c/catalog.json.sig",
		"https://v.example/catalog.json?token=abc":  "https://v.example/catalog.json.sig?token=abc",
		"https://v.example/a%2Fb/catalog.json#frag": "https://v.example/a%2Fb/catalog.json.sig#frag",
	} {
		if got, err := SignatureURL(in); err != nil || got != want {
			t.Errorf("%s: %s, %v; want %s", in, got, err, want)
		}
	}
}
