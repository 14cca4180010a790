package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// du is the space a directory takes on disk.
func du(t *testing.T, dir string) int64 {
	t.Helper()
	out := sh(t, "du -sB1 "+dir)
	n, err := strconv.ParseInt(strings.Fields(out)[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIncrementalOnePercent changes about 1 % of a tree in the ways users
// do, and checks that the second snapshot costs little more than the
// change and that both snapshots restore exactly.
func TestIncrementalOnePercent(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	goroot := strings.TrimSpace(sh(t, "go env GOROOT"))
	sh(t, fmt.Sprintf("mkdir -p %[1]s && cp -a %[2]s/src/net %[2]s/src/crypto %[1]s/", src, goroot))
	for i := 0; i < 4; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("big%d.bin", i)), randomData(uint64(10+i), 16<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "before")
	before := treeState(t, src)
	size0 := du(t, e.repo)

	// About 1 %: blocks rewritten in the middle of big files, an append,
	// small files added and removed, a directory renamed.
	changed := int64(0)
	for i, off := range []int64{5 << 20, 9<<20 + 12345} {
		f, _ := os.OpenFile(filepath.Join(src, fmt.Sprintf("big%d.bin", i)), os.O_WRONLY, 0)
		f.WriteAt(randomData(uint64(100+i), 64<<10), off)
		f.Close()
		changed += 64 << 10
	}
	f, _ := os.OpenFile(filepath.Join(src, "big2.bin"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write(randomData(200, 300<<10))
	f.Close()
	changed += 300 << 10
	for i := 0; i < 20; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("new-%d.txt", i)), randomData(uint64(300+i), 4096), 0o644)
		changed += 4096
	}
	sh(t, "rm "+filepath.Join(src, "net/http/*.go")+" && mv "+filepath.Join(src, "crypto/tls")+" "+filepath.Join(src, "crypto/tls-renamed"))

	s := e.snapshot("v", "--name", "after")
	after := treeState(t, src)
	growth := du(t, e.repo) - size0
	// Changed blocks are whole 256 KiB blocks: a 64 KiB write touches one
	// or two, the append rewrites the last block and adds two.
	limit := changed + 6*256<<10 + 2<<20
	t.Logf("changed %d bytes; snapshot stored %d, repository grew %d (limit %d)", changed, s.Stats.StoredBytes, growth, limit)
	if growth > limit {
		t.Errorf("repository grew %d bytes for %d changed (limit %d)", growth, changed, limit)
	}
	if s.Stats.ReadBytes > 4*(16<<20)+1<<20 {
		t.Errorf("second snapshot read %d bytes: unchanged files were read again", s.Stats.ReadBytes)
	}

	for name, want := range map[string]map[string]fileState{"before": before, "after": after} {
		dst := filepath.Join(e.dir, "restored-"+name)
		e.ok("restore", "v/"+name, dst)
		compareTrees(t, want, treeState(t, dst), "restore of v/"+name)
	}
	rsyncSame(t, src, filepath.Join(e.dir, "restored-after"))
}
