package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestCheckFindsDamage: a healthy repository checks clean; a wrong
// reference count, a flipped data byte (with ReadData) and a missing pack
// are each found and named.
func TestCheckFindsDamage(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s1 := snapFile(t, r, "v", block('A'), block('B'))
	imageOf(t, r, "img", s1)
	rep, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(rep.Problems) != 0 || rep.Snapshots != 1 || rep.Images != 1 || rep.BytesRead != 2*testBS {
		t.Fatalf("healthy repository: %+v %v", rep, err)
	}

	// A wrong reference count.
	h := Sum(block('A'))
	r.db.Update(func(txn *badger.Txn) error {
		rec, _ := getBlockRecord(txn, h)
		rec.Refs = 7
		return txn.Set(blockKey(h), rec.encode())
	})
	rep, _ = r.Check(ctx, CheckOptions{})
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].What, "reference count 7, but 2 chain runs") {
		t.Errorf("wrong refs: %v", rep.Problems)
	}
	r.db.Update(func(txn *badger.Txn) error {
		rec, _ := getBlockRecord(txn, h)
		rec.Refs = 2
		return txn.Set(blockKey(h), rec.encode())
	})

	// A flipped byte: found only when the data is read, named by path.
	packs, _ := filepath.Glob(filepath.Join(r.Dir(), "packs", "*.pack"))
	f, _ := os.OpenFile(packs[0], os.O_RDWR, 0)
	f.WriteAt([]byte{'!'}, testBS+10) // in block B
	f.Close()
	if rep, _ := r.Check(ctx, CheckOptions{}); len(rep.Problems) != 0 {
		t.Errorf("metadata check found data damage: %v", rep.Problems)
	}
	rep, _ = r.Check(ctx, CheckOptions{ReadData: true})
	var paths []string
	for _, p := range rep.Problems {
		paths = append(paths, p.String())
	}
	if len(rep.Problems) != 2 || !strings.Contains(strings.Join(paths, "\n"), "v/"+s1.Name+"/disk: block 1") ||
		!strings.Contains(strings.Join(paths, "\n"), "image img/image/disk: block 1") {
		t.Errorf("flipped byte: %q", paths)
	}

	// A missing pack.
	os.Remove(packs[0])
	rep, _ = r.Check(ctx, CheckOptions{})
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0].What, "missing or short") {
		t.Errorf("missing pack: %v", rep.Problems)
	}
}
