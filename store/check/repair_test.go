package check

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/storetest"
)

// sourceFunc is a Source made of a func.
type sourceFunc func(at Site) ([]byte, error)

func (f sourceFunc) ReadBlock(_ context.Context, at Site) ([]byte, string, error) {
	b, err := f(at)
	return b, fmt.Sprintf("%s%s (block %d)", at.Volume.Name, at.Path, at.Index), err
}

var noSource = sourceFunc(func(Site) ([]byte, error) { return nil, errors.New("no source") })

// TestRepairRefsAndLostTrees: a wrong reference count is recounted, a
// snapshot whose top tree is lost is dropped (the blocks others link stay),
// and what check then finds is nothing.
func TestRepairRefsAndLostTrees(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	s1 := r.snapFile(block('a'), block('b'))
	s2 := r.snapFile(block('a'), block('c'))
	// A wrong count on a's record, and s1's top tree gone.
	r.setRefs(store.Sum(block('a')), 7)
	r.dropTree(s1.Root)
	if rep, _ := Check(ctx, r.Repo, Options{}); len(rep.Problems) < 2 {
		t.Fatalf("check before repair: %+v", rep.Problems)
	}
	rep, err := Repair(ctx, r.Repo, noSource)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RefsFixed != 1 || len(rep.Dropped) != 1 || rep.Dropped[0] != "v/"+s1.Name || len(rep.Lost) != 0 || len(rep.Healed) != 0 {
		t.Errorf("repair: %+v", rep)
	}
	if _, err := r.Snapshot(ctx, "v", s1.Name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("dropped snapshot: %v", err)
	}
	e, err := store.Lookup(ctx, r, &s2.RootDir, "disk")
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
	if c, _ := Check(ctx, r.Repo, Options{ReadData: true}); len(c.Problems) != 0 {
		t.Errorf("check after repair and gc: %+v", c.Problems)
	}
}

// TestRepairHeals: a damaged block is stored again from the source that
// still has its bytes; bytes that do not match are refused, and what
// cannot be healed is reported lost.
func TestRepairHeals(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	s := r.snapFile(block('a'), block('b'))
	r.flipByte(testBS + 1) // in b

	// A source that has changed since: nothing is healed, b is lost.
	changed := sourceFunc(func(Site) ([]byte, error) { return block('z'), nil })
	rep, err := Repair(ctx, r.Repo, changed)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Healed) != 0 || len(rep.Lost) != 1 || !strings.Contains(rep.Lost[0].String(), "v/"+s.Name+"/disk: block 1") {
		t.Errorf("repair from a changed source: %+v", rep)
	}

	// The source as it was: b is stored again, nothing is lost.
	var asked []Site
	same := sourceFunc(func(at Site) ([]byte, error) {
		asked = append(asked, at)
		return block(byte('a' + at.Index)), nil
	})
	if rep, err = Repair(ctx, r.Repo, same); err != nil {
		t.Fatal(err)
	}
	if len(rep.Healed) != 1 || rep.Healed[0].Block != store.Sum(block('b')).String() || rep.Healed[0].From != "v/disk (block 1)" || len(rep.Lost) != 0 {
		t.Errorf("repair from the source: %+v", rep)
	}
	if len(asked) != 1 || asked[0].Path != "/disk" || asked[0].Index != 1 || asked[0].Snapshot != s.Name {
		t.Errorf("asked the source for %+v", asked)
	}
	if c, _ := Check(ctx, r.Repo, Options{ReadData: true}); len(c.Problems) != 0 {
		t.Errorf("check after healing: %+v", c.Problems)
	}
}

// TestRepairDropsTheTrashedOne: a snapshot in the trash whose top tree is
// lost is dropped by its place in the trash, not by its name, which a
// healthy snapshot has taken since.
func TestRepairDropsTheTrashedOne(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	s1 := r.snapFile(block('a'))
	if _, err := r.DiscardSnapshot(ctx, "v", s1.Name, store.Trashed{}); err != nil {
		t.Fatal(err)
	}
	taken := storetest.Commit(t, r.Repo, "v", store.SnapshotOptions{Name: s1.Name}, func(w storetest.Writer) []store.Entry {
		return []store.Entry{storetest.PutFile(t, w, "disk", block('b'))}
	})
	r.dropTree(s1.Root)
	rep, err := Repair(ctx, r.Repo, noSource)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Dropped) != 1 || rep.Dropped[0] != "v/"+s1.TrashRef() {
		t.Errorf("repair dropped %v", rep.Dropped)
	}
	if s, err := r.Snapshot(ctx, "v", s1.Name); err != nil || s.Seq != taken.Seq {
		t.Errorf("the healthy snapshot of that name after the repair: %+v, %v", s, err)
	}
	if trash, err := r.Trash(ctx, "v"); err != nil || len(trash) != 0 {
		t.Errorf("the trash after the repair: %v, %v", trash, err)
	}
}
