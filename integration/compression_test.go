package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompression: a new repository compresses, so a tree of text takes
// under half its size in packs, and reads back exact through the mount,
// restore and check; a byte flipped inside a compressed block is EIO for
// that file and named by check, never other bytes; a volume of its own
// with compression off stores its blocks as they are.
func TestCompression(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	var text strings.Builder
	for i := 0; text.Len() < 2<<20; i++ {
		text.WriteString("func (r *Repo) Snapshot(ctx context.Context, volume, name string) (*Snapshot, error) {\n")
		text.WriteString(strings.Repeat("\tif err != nil { return nil, err }\n", 1+i%5))
	}
	os.WriteFile(filepath.Join(src, "victim.go"), []byte(text.String()), 0o644)
	os.WriteFile(filepath.Join(src, "bystander"), []byte("unharmed"), 0o644)
	if out := e.ok("compression"); !strings.Contains(out, "the repository's compression: fast") {
		t.Errorf("a new repository's compression: %s", out)
	}
	e.ok("volume", "add", "v", src)
	s := e.snapshot("v", "--name", "s")
	if s.Stats.StoredBytes*2 > s.Stats.ReadBytes {
		t.Errorf("stored %d bytes of %d read", s.Stats.StoredBytes, s.Stats.ReadBytes)
	}
	if packs := du(t, filepath.Join(e.repo, "packs")); packs > int64(text.Len())/2 {
		t.Errorf("packs take %d bytes for %d of text", packs, text.Len())
	}
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "v/s", dst)
	rsyncSame(t, src, dst)
	e.ok("check", "--read-data")

	// A volume of its own with compression off.
	plain := filepath.Join(e.dir, "plain")
	os.MkdirAll(plain, 0o755)
	os.WriteFile(filepath.Join(plain, "same.txt"), []byte(strings.Repeat("plain text, kept as it is\n", 40000)), 0o644)
	e.ok("volume", "add", "p", plain, "--compression", "off")
	var shown struct {
		Compression string `json:"compression"`
		Own         string `json:"own"`
	}
	if err := json.Unmarshal([]byte(e.ok("compression", "--volume", "p", "--json")), &shown); err != nil || shown.Compression != "off" || shown.Own != "off" {
		t.Errorf("volume p's compression: %+v, %v", shown, err)
	}
	if ps := e.snapshot("p"); ps.Stats.StoredBytes != ps.Stats.ReadBytes {
		t.Errorf("compression off stored %d bytes of %d read", ps.Stats.StoredBytes, ps.Stats.ReadBytes)
	}
	e.fails(2, "want off, fast or max", "compression", "lz4")

	// A byte flipped in the middle of the compressed file's first block.
	flipPackByte(t, e.repo, 200)
	if r := e.run("check", "--read-data"); r.code != 1 || !strings.Contains(r.stderr, "problem: v/s/victim.go: block 0") {
		t.Errorf("check --read-data over a flipped byte in a compressed block: exit %d\n%s", r.code, r.stderr)
	}
	d := e.serve(filepath.Join(e.dir, "mnt"))
	if _, err := os.ReadFile(filepath.Join(d.snapDir("v", "s"), "victim.go")); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("reading the damaged compressed file through the mount: %v, want EIO", err)
	}
	if got, _ := os.ReadFile(filepath.Join(d.snapDir("v", "s"), "bystander")); string(got) != "unharmed" {
		t.Errorf("bystander through the mount: %q", got)
	}
}
