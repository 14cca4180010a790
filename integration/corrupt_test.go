package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptBlock: a flipped byte in a pack is found when the block is
// read; the restore names the file, leaves no wrong bytes behind, and
// restores the untouched files; the mount answers EIO for that file only.
func TestCorruptBlock(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "victim"), randomData(1, 300<<10), 0o644)
	os.WriteFile(filepath.Join(src, "bystander"), []byte("unharmed"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	if out := e.ok("check", "--read-data"); !strings.Contains(out, "checked metadata and") {
		t.Errorf("check of a healthy repository: %s", out)
	}

	packs, _ := filepath.Glob(filepath.Join(e.repo, "packs", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs: %v", packs)
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 1000) // inside the victim's first block
	b[0] ^= 0xff
	f.WriteAt(b, 1000)
	f.Close()

	e.ok("check") // the metadata is intact
	if r := e.run("check", "--read-data"); r.code != 1 || !strings.Contains(r.stderr, "problem: v/s/victim: block 0") ||
		!strings.Contains(r.stderr, "1 problem found") {
		t.Errorf("check --read-data over a flipped byte: exit %d\n%s", r.code, r.stderr)
	}

	dst := filepath.Join(e.dir, "restored")
	r := e.run("restore", "v/s", dst)
	if r.code != 3 || !strings.Contains(r.stderr, "victim") || !strings.Contains(r.stderr, "hash mismatch") {
		t.Fatalf("restore over a corrupt block: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dst, "victim")); !os.IsNotExist(err) {
		t.Errorf("a file with a corrupt block was left behind: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "bystander")); string(got) != "unharmed" {
		t.Errorf("bystander: %q", got)
	}

	d := e.serve(filepath.Join(e.dir, "mnt"))
	if _, err := os.ReadFile(filepath.Join(d.snapDir("v", "s"), "victim")); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("reading the corrupt file through the mount: %v, want EIO", err)
	}
	if got, _ := os.ReadFile(filepath.Join(d.snapDir("v", "s"), "bystander")); string(got) != "unharmed" {
		t.Errorf("bystander through the mount: %q", got)
	}
	d.stop()
	if !strings.Contains(d.log.String(), "hash mismatch") || !strings.Contains(d.log.String(), "path=/victim") {
		t.Errorf("the daemon did not log the corrupt read with its path:\n%s", d.log.String())
	}
}

// TestCorruptMetadata: bytes flipped in the metadata tables are reported
// by check as such, and nothing serves wrong data.
func TestCorruptMetadata(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	sh(t, "mkdir -p "+src+" && cp -a $(go env GOROOT)/src/net/http "+src)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	tables, _ := filepath.Glob(filepath.Join(e.repo, "meta", "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no metadata table to damage")
	}
	f, _ := os.OpenFile(tables[0], os.O_RDWR, 0)
	st, _ := f.Stat()
	for _, off := range []int64{st.Size() / 3, st.Size() / 2} {
		f.WriteAt([]byte{0x5a, 0xa5}, off)
	}
	f.Close()
	// Either check reports the tables, or, when the damage hides a record
	// every open reads, the open names the table and what repair can do.
	r := e.run("check")
	t.Logf("check: exit %d\n%s", r.code, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "metadata tables fail their checksums") &&
		!(strings.Contains(r.stderr, "is damaged") && strings.Contains(r.stderr, "check --repair")) {
		t.Errorf("check over damaged metadata: exit %d\n%s", r.code, r.stderr)
	}
	// Whatever still reads, reads right: a restore either fails or is exact.
	dst := filepath.Join(e.dir, "restored")
	if r := e.run("restore", "v/s", dst); r.code == 0 {
		rsyncSame(t, src, dst)
	}
}

// TestTruncatedMetadataTable: a metadata table cut to half its size makes
// every command fail with status 1 and the table's name, not a panic;
// check says what check --repair can and cannot do; the daemon refuses to
// start the same way.
func TestTruncatedMetadataTable(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a"), randomData(1, 300<<10), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	os.WriteFile(filepath.Join(src, "b"), randomData(2, 100<<10), 0o644)
	e.snapshot("v", "--name", "s2")
	tables, _ := filepath.Glob(filepath.Join(e.repo, "meta", "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no metadata table to truncate")
	}
	st, _ := os.Stat(tables[0])
	if err := os.Truncate(tables[0], st.Size()/2); err != nil {
		t.Fatal(err)
	}
	clean := func(what string, r result) {
		t.Helper()
		if r.code != 1 || !strings.Contains(r.stderr, tables[0]) || !strings.Contains(r.stderr, "is damaged") ||
			strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "panic") {
			t.Errorf("%s over a truncated table: exit %d\n%s", what, r.code, r.stderr)
		}
	}
	r := e.run("check")
	clean("check", r)
	if !strings.Contains(r.stderr, "check --repair cannot mend a metadata table") {
		t.Errorf("check does not say what --repair can do:\n%s", r.stderr)
	}
	clean("check --repair", e.run("check", "--repair"))
	clean("snapshot list", e.run("snapshot", "list"))
	clean("usage", e.run("usage"))
	clean("restore", e.run("restore", "v/s1", filepath.Join(e.dir, "restored")))
	clean("serve", e.run("serve", "--mount", filepath.Join(e.dir, "mnt")))
}

// TestRepairHealsFromSource: with every block of a pack damaged, check
// --repair stores again the blocks whose bytes the source still holds (an
// unchanged file, the unchanged parts of a changed one), and lists, file by
// file, what is lost (the parts that changed since); check and restore then
// agree with it.
func TestRepairHealsFromSource(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	keep := randomData(1, 600<<10)
	os.WriteFile(filepath.Join(src, "kept"), keep, 0o644)
	os.WriteFile(filepath.Join(src, "changed"), randomData(2, 300<<10), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	// The source moves on: "changed" is rewritten after the snapshot.
	os.WriteFile(filepath.Join(src, "changed"), randomData(3, 300<<10), 0o644)

	packs, _ := filepath.Glob(filepath.Join(e.repo, "packs", "*.pack"))
	for _, p := range packs {
		f, _ := os.OpenFile(p, os.O_RDWR, 0)
		st, _ := f.Stat()
		for off := int64(100); off < st.Size(); off += 4096 {
			f.WriteAt([]byte{0x42}, off)
		}
		f.Close()
	}
	if r := e.run("check", "--read-data"); r.code != 1 || !strings.Contains(r.stderr, "5 problems found") {
		t.Fatalf("check over damaged packs: exit %d\n%s", r.code, r.stderr)
	}
	r := e.run("check", "--repair")
	if r.code != 1 || !strings.Contains(r.stdout, "healed: block") || !strings.Contains(r.stdout, "kept (block 2)") ||
		!strings.Contains(r.stderr, "lost: v/s1/changed: block 0") || strings.Contains(r.stderr, "kept") {
		t.Fatalf("check --repair: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// What was healed reads back exactly; what is lost is still named.
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "v/s1/kept", dst+"-kept")
	if got, _ := os.ReadFile(dst + "-kept"); string(got) != string(keep) {
		t.Errorf("healed file differs")
	}
	if r := e.run("check", "--read-data"); r.code != 1 || !strings.Contains(r.stderr, "v/s1/changed") || strings.Contains(r.stderr, "kept") {
		t.Errorf("check after repair: exit %d\n%s", r.code, r.stderr)
	}
	// A second repair finds nothing more to heal and says the same is lost.
	if r := e.run("check", "--repair"); r.code != 1 || strings.Contains(r.stdout, "healed:") {
		t.Errorf("second repair: exit %d\n%s", r.code, r.stdout)
	}
	e.ok("gc")
}
