package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMarketplace: a vendor makes a key, exports an image and signs a
// catalog of it with chainfs; served over https, the catalog is taken
// only with the vendor's key; a tampered one is refused and named, at
// add and at refresh (which keeps the catalog it had). Its images show
// as marketplace in image list; an import whose bytes are not the
// catalog's hash leaves nothing; one that is lands, exact, under images/
// for every user.
func TestMarketplace(t *testing.T) {
	vendor, src := goldenImage(t)
	www := filepath.Join(vendor.dir, "www")
	os.MkdirAll(filepath.Join(www, "bad"), 0o755)
	file := filepath.Join(www, "golden.chainfs")
	vendor.ok("image", "export", "golden", file)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)

	plain := httptest.NewServer(http.FileServer(http.Dir(www)))
	defer plain.Close()
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(www)))
	mux.Handle("/downgrade/", http.RedirectHandler(plain.URL+"/catalog.json", http.StatusFound))
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	ca := filepath.Join(vendor.dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	t.Setenv("SSL_CERT_FILE", ca)

	key := filepath.Join(vendor.dir, "vendor.key")
	pub := strings.TrimSpace(vendor.ok("market", "keygen", key))
	if !strings.HasPrefix(pub, "ed25519:") {
		t.Fatalf("keygen printed %q", pub)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the signing key: %v %v", st.Mode(), err)
	}
	catalog := fmt.Sprintf(`{"format": "chainfs-catalog-1", "vendor": "Example Corp", "serial": 1, "images": [
  {"name": "golden", "description": "a prepared tree", "url": "golden.chainfs", "size": %d, "sha256": %q},
  {"name": "liar", "url": "golden.chainfs", "size": %d, "sha256": %q}
]}
`, len(data), hex.EncodeToString(sum[:]), len(data), strings.Repeat("ab", 32))
	catFile := filepath.Join(www, "catalog.json")
	os.WriteFile(catFile, []byte(catalog), 0o644)
	vendor.ok("market", "sign", catFile, "--key-file", key, "--url", srv.URL+"/catalog.json")
	sig, _ := os.ReadFile(catFile + ".sig")
	// The tampered catalog: another vendor's name under the good signature.
	os.WriteFile(filepath.Join(www, "bad", "catalog.json"), []byte(strings.Replace(catalog, "Example Corp", "Evil Corp", 1)), 0o644)
	os.WriteFile(filepath.Join(www, "bad", "catalog.json.sig"), sig, 0o644)

	u := newEnv(t)
	u.fails(1, "the catalog's signature does not verify with the vendor's key", "market", "add", "evil", srv.URL+"/bad/catalog.json", "--key", pub)
	otherKey := strings.TrimSpace(vendor.ok("market", "keygen", filepath.Join(vendor.dir, "other.key")))
	u.fails(1, "the catalog's signature does not verify", "market", "add", "acme", srv.URL+"/catalog.json", "--key", otherKey)
	u.fails(2, "a catalog is fetched over https", "market", "add", "acme", "http://example.invalid/catalog.json", "--key", pub)
	u.fails(2, "want ed25519:BASE64", "market", "add", "acme", srv.URL+"/catalog.json", "--key", "ed25519:short")
	u.fails(1, "refusing a redirect from https to http", "market", "add", "acme", srv.URL+"/downgrade/catalog.json", "--key", pub)
	if out := u.ok("market", "list"); strings.Contains(out, "evil") || strings.Contains(out, "acme") {
		t.Errorf("a refused catalog was kept:\n%s", out)
	}

	if out := u.ok("market", "add", "acme", srv.URL+"/catalog.json", "--key", pub); !strings.Contains(out, "subscribed to acme (Example Corp): 2 images") {
		t.Errorf("market add: %s", out)
	}
	if out := u.ok("image", "list", "--type", "marketplace"); !strings.Contains(out, "acme/golden") || !strings.Contains(out, "marketplace") ||
		!strings.Contains(out, "not imported") {
		t.Errorf("image list before the import:\n%s", out)
	}

	u.fails(1, "the catalog says", "market", "import", "acme/liar")
	if out := u.ok("image", "list", "--json"); strings.Contains(out, `"name": "liar"`) {
		t.Errorf("an import whose hash failed left an image:\n%s", out)
	}
	u.fails(1, "marketplace acme has no image nosuch", "market", "import", "acme/nosuch")

	if out := u.ok("market", "import", "acme/golden"); !strings.Contains(out, "imported marketplace image acme/golden as golden") {
		t.Errorf("market import: %s", out)
	}
	list := u.ok("image", "list")
	if !strings.Contains(list, "\ngolden ") || strings.Contains(list, "\nacme/golden ") || !strings.Contains(list, "\nacme/liar ") {
		t.Errorf("image list after the import:\n%s", list)
	}
	if show := u.ok("image", "show", "golden"); !strings.Contains(show, "type:        marketplace") || !strings.Contains(show, "marketplace: acme") {
		t.Errorf("image show:\n%s", show)
	}

	// Served, the image is the source exactly, and others see it.
	os.Chmod(u.dir, 0o755)
	os.Chmod(filepath.Dir(u.dir), 0o755)
	d := u.serve(filepath.Join(u.dir, "mnt"), "--allow-other")
	rsyncSame(t, src, filepath.Join(d.mount, "images", "golden"))
	if out, err := asUser("ls", filepath.Join(d.mount, "images")); err != nil || !strings.Contains(out, "golden") {
		t.Errorf("uid %d does not see the marketplace image: %v %s", user, err, out)
	}

	// The vendor's catalog is tampered with: refresh refuses it and keeps
	// the one it had.
	os.WriteFile(catFile, []byte(strings.Replace(catalog, "Example Corp", "Evil Corp", 1)), 0o644)
	u.fails(1, "does not verify with the vendor's key; the catalog fetched", "market", "refresh", "acme")
	if out := u.ok("market", "list"); !strings.Contains(out, "Example Corp") {
		t.Errorf("market list after a refused refresh:\n%s", out)
	}
	// A newer catalog is taken; the older one, served again with its own
	// good signature, is refused.
	os.WriteFile(catFile, []byte(strings.Replace(catalog, `"serial": 1`, `"serial": 2`, 1)), 0o644)
	vendor.ok("market", "sign", catFile, "--key-file", key)
	u.ok("market", "refresh", "acme")
	os.WriteFile(catFile, []byte(catalog), 0o644)
	os.WriteFile(catFile+".sig", sig, 0o644)
	u.fails(1, "serial 1, and the one kept has 2", "market", "refresh", "acme")
	u.ok("market", "rm", "acme")
	if out := u.ok("image", "list"); !strings.Contains(out, "\ngolden ") || strings.Contains(out, "liar") {
		t.Errorf("image list after unsubscribing:\n%s", out)
	}
}
