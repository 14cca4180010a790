package store

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestTrashKeepsTheChain: a snapshot in the trash leaves the listings and
// its name, keeps every block (its own and the next snapshot's earliest
// holders), comes back under its name or another, and gives its blocks
// back only when the trash is emptied.
func TestTrashKeepsTheChain(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	if days, err := r.TrashDays(ctx); err != nil || days != DefaultTrashDays {
		t.Fatalf("trash days of a new repository: %d, %v", days, err)
	}
	s1 := snapFile(t, r, "v", block('A'), block('B'))
	s2 := snapFile(t, r, "v", block('A'), block('C'))
	s3 := snapFile(t, r, "v", block('D'), block('C'))

	got, err := r.DiscardSnapshot(ctx, "v", s2.Name, Trashed{UID: 1000, By: "manual"})
	if err != nil || got.Trashed == nil || got.Trashed.UID != 1000 || got.Trashed.Time.IsZero() {
		t.Fatalf("discard: %+v, %v", got, err)
	}
	if snaps, err := r.Snapshots(ctx, "v"); err != nil || len(snaps) != 2 || snaps[0].Name != s1.Name || snaps[1].Name != s3.Name {
		t.Fatalf("listing after the discard: %v, %v", snaps, err)
	}
	if n, err := r.SnapshotCount(ctx, "v"); err != nil || n != 2 {
		t.Fatalf("count after the discard: %d, %v", n, err)
	}
	if _, err := r.Snapshot(ctx, "v", s2.Name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a trashed snapshot found by name: %v", err)
	}
	if _, err := r.DiscardSnapshot(ctx, "v", s2.Name, Trashed{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("discard again: %v", err)
	}
	// Its blocks stay where they were: C is still first held by s2.
	wantHolders(t, r, s3, s3.Seq, s2.Seq)
	readEvery(t, r, []*Snapshot{s1, s2, s3})

	// Its name may be taken; restoring it then wants another.
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{Name: s2.Name})
	if err != nil {
		t.Fatal(err)
	}
	s4 := commitTop(t, w, []Entry{putFile(t, w, "disk", [][]byte{block('E')})})
	if _, err := r.RestoreTrash(ctx, "v", s2.Name, ""); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--as") {
		t.Fatalf("restore over a taken name: %v", err)
	}
	back, err := r.RestoreTrash(ctx, "v", s2.Name, "back")
	if err != nil || back.Name != "back" || back.Trashed != nil {
		t.Fatalf("restore as another name: %+v, %v", back, err)
	}
	if s, err := r.Snapshot(ctx, "v", "back"); err != nil || s.Seq != s2.Seq {
		t.Fatalf("the restored snapshot by its new name: %+v, %v", s, err)
	}

	// The newest in the trash: latest is the one before it.
	if _, err := r.DiscardSnapshot(ctx, "v", s4.Name, Trashed{By: "manual"}); err != nil {
		t.Fatal(err)
	}
	if s, err := r.Snapshot(ctx, "v", "latest"); err != nil || s.Seq != s3.Seq {
		t.Fatalf("latest with the head in the trash: %+v, %v", s, err)
	}
	if _, err := r.DiscardSnapshot(ctx, "v", "back", Trashed{By: "manual"}); err != nil {
		t.Fatal(err)
	}
	// Two of one name in the trash: each goes by its TrashRef.
	trash, err := r.Trash(ctx, "v")
	if err != nil || len(trash) != 2 {
		t.Fatalf("trash: %v, %v", trash, err)
	}
	if names := TrashNames(trash); names[0] != "back" || names[1] != s4.Name {
		t.Fatalf("trash names: %v", names)
	}

	// Nothing has expired: an expired-only emptying frees nothing; a week
	// later it does.
	if gone, err := r.EmptyTrash(ctx, "", "", true, time.Now()); err != nil || len(gone) != 0 {
		t.Fatalf("empty what expired, nothing has: %v, %v", gone, err)
	}
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if refs := refsOf(t, r, block('E')); refs == 0 {
		t.Fatal("a block of a trashed snapshot lost its reference")
	}
	gone, err := r.EmptyTrash(ctx, "v", "", true, time.Now().Add(DefaultTrashDays*24*time.Hour+time.Minute))
	if err != nil || len(gone) != 2 {
		t.Fatalf("empty what expired a week later: %v, %v", gone, err)
	}
	if trash, err := r.Trash(ctx, "v"); err != nil || len(trash) != 0 {
		t.Fatalf("trash after emptying: %v, %v", trash, err)
	}
	// E is garbage; B stays with s1, C passed to s3.
	if refs := refsOf(t, r, block('E')); refs != 0 {
		t.Fatalf("a block only the emptied snapshots held has %d references", refs)
	}
	wantHolders(t, r, s3, s3.Seq, s3.Seq)
	readEvery(t, r, []*Snapshot{s1, s3})
	if p := problemsOf(t, r); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
}

// TestTrashRefusals: a held snapshot does not go to the trash; with no
// trash, a deletion is for good at once; the setting is bounded; a
// volume whose snapshots are all in the trash still has them.
func TestTrashRefusals(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s1 := snapFile(t, r, "v", block('A'))
	s2 := snapFile(t, r, "v", block('B'))
	if _, err := r.HoldSnapshot(ctx, "v", s1.Name, "audit", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.DiscardSnapshot(ctx, "v", s1.Name, Trashed{}); !errors.Is(err, ErrHeld) {
		t.Fatalf("discard a held snapshot: %v", err)
	}
	if _, err := r.DiscardSnapshot(ctx, "v", "latest", Trashed{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("discard latest: %v", err)
	}
	for _, bad := range []int{-1, MaxTrashDays + 1} {
		if err := r.SetTrashDays(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("trash days %d: %v", bad, err)
		}
	}
	if _, err := r.DiscardSnapshot(ctx, "v", s2.Name, Trashed{}); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveVolume(ctx, "v", false); !errors.Is(err, ErrHasSnapshots) {
		t.Fatalf("remove a volume whose snapshots are held and in the trash: %v", err)
	}
	if err := r.SetTrashDays(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReleaseSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatal(err)
	}
	got, err := r.DiscardSnapshot(ctx, "v", s1.Name, Trashed{})
	if err != nil || got.Trashed != nil {
		t.Fatalf("discard with no trash: %+v, %v", got, err)
	}
	if chain, err := r.Chain(ctx, "v"); err != nil || len(chain) != 1 || chain[0].Seq != s2.Seq {
		t.Fatalf("chain after a deletion for good: %v, %v", chain, err)
	}
	// The trash setting at 0 lets the next emptying take what is there.
	if gone, err := r.EmptyTrash(ctx, "", "", true, time.Now()); err != nil || len(gone) != 1 {
		t.Fatalf("empty what expired with no trash kept: %v, %v", gone, err)
	}
	if err := r.RemoveVolume(ctx, "v", false); err != nil {
		t.Fatalf("remove the emptied volume: %v", err)
	}
}

// refsOf is the reference count of block b.
func refsOf(t *testing.T, r *Repo, b []byte) uint64 {
	t.Helper()
	var rec blockRecord
	err := r.view(func(txn *badger.Txn) error {
		var err error
		rec, err = getBlockRecord(txn, Sum(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec.Refs
}

// TestTrashRaisesSchema: a repository of schema 2 opens as before, and is
// raised to 3 by its first deletion into the trash, so that a chainfs
// that would lose the mark refuses it.
func TestTrashRaisesSchema(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	if err := r.commit(ctx, func(m metaTxn) error { return m.setSchema(schemaChunked) }); err != nil {
		t.Fatal(err)
	}
	if err := r.checkSchema(ctx); err != nil {
		t.Fatalf("schema 2: %v", err)
	}
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s := snapFile(t, r, "v", block('A'))
	snapFile(t, r, "v", block('B'))
	if got := schemaOf(t, r); got != schemaChunked {
		t.Fatalf("schema %d before any hold or trash", got)
	}
	if _, err := r.DiscardSnapshot(ctx, "v", s.Name, Trashed{}); err != nil {
		t.Fatal(err)
	}
	if got := schemaOf(t, r); got != SchemaVersion {
		t.Fatalf("schema %d after a deletion into the trash", got)
	}
}

func schemaOf(t *testing.T, r *Repo) uint64 {
	t.Helper()
	var s uint64
	err := r.view(func(txn *badger.Txn) error {
		item, err := txn.Get(metaSchemaKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { s = binary.BigEndian.Uint64(v); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPurgeBeforeATrashedSnapshot: deleting for good the snapshot before
// one in the trash rewrites that one's record, and gives it back no name:
// a live snapshot that took its name keeps it, and both empty cleanly.
func TestPurgeBeforeATrashedSnapshot(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s1 := snapFile(t, r, "v", block('A'))
	s2 := snapFile(t, r, "v", block('B'))
	for _, s := range []*Snapshot{s1, s2} {
		if _, err := r.DiscardSnapshot(ctx, "v", s.Name, Trashed{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{Name: s2.Name})
	if err != nil {
		t.Fatal(err)
	}
	s3 := commitTop(t, w, []Entry{putFile(t, w, "disk", [][]byte{block('C')})})
	if gone, err := r.EmptyTrash(ctx, "v", s1.TrashRef(), false, time.Now()); err != nil || len(gone) != 1 {
		t.Fatalf("empty s1: %v, %v", gone, err)
	}
	if s, err := r.Snapshot(ctx, "v", s2.Name); err != nil || s.Seq != s3.Seq {
		t.Fatalf("the live snapshot by the name the trashed one had: %+v, %v", s, err)
	}
	if trash, err := r.Trash(ctx, "v"); err != nil || len(trash) != 1 || trash[0].Seq != s2.Seq {
		t.Fatalf("the trash after emptying the one before: %v, %v", trash, err)
	}
	if gone, err := r.EmptyTrash(ctx, "v", "", false, time.Now()); err != nil || len(gone) != 1 {
		t.Fatalf("empty s2: %v, %v", gone, err)
	}
	if s, err := r.Snapshot(ctx, "v", s2.Name); err != nil || s.Seq != s3.Seq {
		t.Fatalf("the live snapshot after emptying the trash: %+v, %v", s, err)
	}
	if p := problemsOf(t, r); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
}
