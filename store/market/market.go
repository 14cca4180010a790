// Package market keeps a repository's subscriptions to vendors' image
// catalogs: the marketplace. A vendor serves, over https, a catalog (a
// JSON list of native images with their sizes and SHA-256 hashes) and,
// beside it at the catalog's URL with ".sig" added, the catalog's ed25519
// signature. A subscription names the catalog's URL and the vendor's
// public key; a catalog is taken only when its signature verifies with
// that key, and kept with the signature, which is checked again whenever
// the catalog is used. An image of a catalog is imported only when the
// bytes downloaded have the size and the hash the catalog gives.
//
// The package knows nothing of the network: its callers fetch the bytes.
package market

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
)

// CatalogFormat is the format a catalog names: its first and only
// version.
const CatalogFormat = "chainfs-catalog-1"

// MaxCatalogSize bounds a catalog's bytes: a list, not an archive.
const MaxCatalogSize = 8 << 20

// MaxSignatureSize bounds a signature file: 64 bytes in base64, and
// whitespace.
const MaxSignatureSize = 1 << 10

// ErrBadSignature: a catalog's signature does not verify with the
// subscription's key.
var ErrBadSignature = errors.New("the catalog's signature does not verify with the vendor's key")

// ErrBadCatalog: a catalog that is not one, or holds an entry that cannot
// be taken. It is the vendor's mistake, not the caller's.
var ErrBadCatalog = errors.New("not a valid catalog")

// Catalog is a vendor's list of images.
type Catalog struct {
	Format string `json:"format"`
	Vendor string `json:"vendor"`
	// Serial grows with each catalog the vendor signs: a subscription
	// refuses one older than the catalog it keeps, so that an old signed
	// catalog (with an image since replaced) cannot be served again.
	Serial uint64  `json:"serial,omitempty"`
	Images []Entry `json:"images"`
}

// Entry is one image of a catalog.
type Entry struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// URL is where the native image file is, https; relative to the
	// catalog's URL, or absolute.
	URL string `json:"url"`
	// Size and SHA256 are the file's length and its SHA-256, hex.
	Size   uint64 `json:"size"`
	SHA256 string `json:"sha256"`
}

// Subscription is a repository's subscription to one catalog.
type Subscription struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Key is the vendor's public key, "ed25519:" and base64.
	Key string `json:"key"`
	// Body and Signature are the catalog as fetched and verified.
	Body      []byte    `json:"body"`
	Signature []byte    `json:"signature"`
	Fetched   time.Time `json:"fetched"`
}

// ParseKey reads a vendor's public key: base64 of its 32 bytes, with or
// without an "ed25519:" in front.
func ParseKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "ed25519:"))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q: want ed25519:BASE64 of a %d-byte ed25519 public key: %w", s, ed25519.PublicKeySize, store.ErrInvalid)
	}
	return ed25519.PublicKey(b), nil
}

// FormatKey writes a public key as ParseKey reads it.
func FormatKey(k ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(k)
}

// ParseSignature reads a signature file: base64 of the 64-byte signature.
func ParseSignature(b []byte) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature: want base64 of a %d-byte ed25519 signature: %w", ed25519.SignatureSize, ErrBadSignature)
	}
	return sig, nil
}

// Sign signs a catalog's bytes and returns the signature file's content.
// It checks the catalog first, so that a vendor signs only what
// subscribers will take.
func Sign(body []byte, key ed25519.PrivateKey, catalogURL string) ([]byte, error) {
	if _, err := parseCatalog(body, catalogURL); err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, body)) + "\n"), nil
}

// Open checks that sig signs body with the subscription's key, then reads
// body as a catalog served at the subscription's URL.
func (s *Subscription) Open() (*Catalog, error) {
	key, err := ParseKey(s.Key)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(key, s.Body, s.Signature) {
		return nil, fmt.Errorf("catalog %s (%s): %w", s.Name, s.URL, ErrBadSignature)
	}
	c, err := parseCatalog(s.Body, s.URL)
	if err != nil {
		return nil, fmt.Errorf("catalog %s (%s): %w", s.Name, s.URL, err)
	}
	return c, nil
}

// parseCatalog reads a catalog and checks every entry: a name an image
// may have, once; an https URL; a size and a hash.
func parseCatalog(body []byte, catalogURL string) (*Catalog, error) {
	base, err := url.Parse(catalogURL)
	if err != nil {
		return nil, fmt.Errorf("catalog URL: %v: %w", err, ErrBadCatalog)
	}
	var c Catalog
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not a catalog: %v: %w", err, ErrBadCatalog)
	}
	if c.Format != CatalogFormat {
		return nil, fmt.Errorf("catalog format %q: this chainfs reads %s: %w", c.Format, CatalogFormat, ErrBadCatalog)
	}
	seen := map[string]bool{}
	for i := range c.Images {
		e := &c.Images[i]
		if !store.ValidImageName(e.Name) {
			return nil, fmt.Errorf("catalog image %d: name %q: not a name an image may have: %w", i+1, e.Name, ErrBadCatalog)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("catalog image %s is listed twice: %w", e.Name, ErrBadCatalog)
		}
		seen[e.Name] = true
		u, err := base.Parse(e.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("catalog image %s: URL %q: want https: %w", e.Name, e.URL, ErrBadCatalog)
		}
		e.URL = u.String()
		if h, err := hex.DecodeString(e.SHA256); err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("catalog image %s: sha256 %q: want 64 hex digits: %w", e.Name, e.SHA256, ErrBadCatalog)
		}
		e.SHA256 = strings.ToLower(e.SHA256)
		if e.Size == 0 {
			return nil, fmt.Errorf("catalog image %s: no size: %w", e.Name, ErrBadCatalog)
		}
	}
	return &c, nil
}

// Image finds an entry of the catalog by name.
func (c *Catalog) Image(name string) (*Entry, bool) {
	i := slices.IndexFunc(c.Images, func(e Entry) bool { return e.Name == name })
	if i < 0 {
		return nil, false
	}
	return &c.Images[i], true
}

func records(r *store.Repo) store.Records { return r.Records(store.MarketRecords) }

// Add records a new subscription, whose catalog must verify.
func Add(ctx context.Context, r *store.Repo, s *Subscription) (*Catalog, error) {
	if !store.ValidLabel(s.Name) {
		return nil, fmt.Errorf("marketplace name %q: use letters, digits, '.', '_', '-', not starting with '.' or '-': %w", s.Name, store.ErrInvalid)
	}
	c, err := s.Open()
	if err != nil {
		return nil, err
	}
	if err := records(r).Create(ctx, s.Name, s); errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("marketplace %s exists (chainfs market refresh %s fetches its catalog again): %w", s.Name, s.Name, err)
	} else if err != nil {
		return nil, err
	}
	return c, nil
}

// ErrRollback: a catalog older than the one kept.
var ErrRollback = errors.New("the catalog is older than the one kept")

// Replace keeps a catalog fetched again, which must verify with the
// subscription's key and be no older (Serial) than the one kept.
func Replace(ctx context.Context, r *store.Repo, s *Subscription) (*Catalog, error) {
	c, err := s.Open()
	if err != nil {
		return nil, err
	}
	old, err := Get(ctx, r, s.Name)
	if err != nil {
		return nil, err
	}
	if kept, err := old.Open(); err == nil && c.Serial < kept.Serial {
		return nil, fmt.Errorf("catalog %s (%s): serial %d, and the one kept has %d: %w", s.Name, s.URL, c.Serial, kept.Serial, ErrRollback)
	}
	return c, records(r).Replace(ctx, s.Name, s)
}

// SignatureURL is where the signature of the catalog at catalogURL is:
// its path with ".sig" added.
func SignatureURL(catalogURL string) (string, error) {
	u, err := url.Parse(catalogURL)
	if err != nil {
		return "", fmt.Errorf("catalog URL %q: %v: %w", catalogURL, err, store.ErrInvalid)
	}
	u.Path += ".sig"
	if u.RawPath != "" {
		u.RawPath += ".sig"
	}
	return u.String(), nil
}

// Get returns a subscription.
func Get(ctx context.Context, r *store.Repo, name string) (*Subscription, error) {
	var s Subscription
	if err := records(r).Get(ctx, name, &s); err != nil {
		return nil, fmt.Errorf("marketplace %s: %w", name, err)
	}
	return &s, nil
}

// List returns every subscription, in name order.
func List(ctx context.Context, r *store.Repo) ([]Subscription, error) {
	return store.ListRecords[Subscription](ctx, records(r))
}

// Remove ends a subscription; the images imported from it stay.
func Remove(ctx context.Context, r *store.Repo, name string) error {
	if _, err := Get(ctx, r, name); err != nil {
		return err
	}
	return records(r).Delete(ctx, name)
}

// Checked reads a download of e: it fails a read past e's size, an end
// before it, and, at the end, bytes whose SHA-256 is not e's.
type Checked struct {
	r     io.Reader
	entry *Entry
	h     hash.Hash
	n     uint64
	done  bool
}

// NewChecked checks what r gives against e.
func NewChecked(r io.Reader, e *Entry) *Checked {
	return &Checked{r: r, entry: e, h: sha256.New()}
}

// ErrMismatch: a download is not what the catalog says.
var ErrMismatch = errors.New("the download is not what the signed catalog says")

func (c *Checked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += uint64(n)
	if c.n > c.entry.Size {
		return n, fmt.Errorf("image %s: longer than the catalog's %d bytes: %w", c.entry.Name, c.entry.Size, ErrMismatch)
	}
	if err == io.EOF {
		if verr := c.verify(); verr != nil {
			return n, verr
		}
	}
	return n, err
}

func (c *Checked) verify() error {
	if c.n != c.entry.Size {
		return fmt.Errorf("image %s: %d bytes, the catalog says %d: %w", c.entry.Name, c.n, c.entry.Size, ErrMismatch)
	}
	if got := hex.EncodeToString(c.h.Sum(nil)); got != c.entry.SHA256 {
		return fmt.Errorf("image %s: SHA-256 %s, the catalog says %s: %w", c.entry.Name, got, c.entry.SHA256, ErrMismatch)
	}
	c.done = true
	return nil
}

// Finish reads what is left of the download and checks the whole of it:
// an import may stop reading before the end of the stream.
func (c *Checked) Finish() error {
	if c.done {
		return nil
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return err
	}
	if !c.done {
		return c.verify()
	}
	return nil
}
