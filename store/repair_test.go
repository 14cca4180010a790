package store

import (
	"context"
	"strings"
	"testing"
)

// TestRepairRefsAndLostTrees: a wrong reference count is recounted, a
// snapshot whose top tree is lost is dropped (the blocks others link stay),
// and what check then finds is nothing.
func TestRepairRefsAndLostTrees(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"}); err != nil {
		t.Fatal(err)
	}
	s1 := snapFile(t, r, "v", block('a'), block('b'))
	s2 := snapFile(t, r, "v", block('a'), block('c'))
	// A wrong count on a's record, and s1's top tree gone.
	h := Sum(block('a'))
	rec, err := r.blockRecord(h)
	if err != nil {
		t.Fatal(err)
	}
	rec.Refs = 7
	if err := r.applyWrites([]kv{{key: blockKey(h), val: rec.encode()}, {key: treeKey(s1.Root)}}); err != nil {
		t.Fatal(err)
	}
	if rep, _ := r.Check(ctx, CheckOptions{}); len(rep.Problems) < 2 {
		t.Fatalf("check before repair: %+v", rep.Problems)
	}
	rep, err := r.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RefsFixed != 1 || len(rep.Dropped) != 1 || rep.Dropped[0] != "v/"+s1.Name || len(rep.Lost) != 0 {
		t.Errorf("repair: %+v", rep)
	}
	if _, err := r.Snapshot(ctx, "v", s1.Name); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("dropped snapshot: %v", err)
	}
	e, err := Lookup(ctx, r, &s2.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, testBS)
	for _, b := range e.Blocks {
		if _, err := r.ReadBlock(ctx, b, buf); err != nil {
			t.Errorf("s2 after repair: %v", err)
		}
	}
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.Check(ctx, CheckOptions{ReadData: true}); len(c.Problems) != 0 {
		t.Errorf("check after repair and gc: %+v", c.Problems)
	}
}
