package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestHoldRefusesDeletion: a held snapshot is not deleted, nor its volume
// removed, and the refusal gives the reason; released, it goes.
func TestHoldRefusesDeletion(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s1 := snapFile(t, r, "v", block('A'))
	snapFile(t, r, "v", block('B'))
	held, err := r.HoldSnapshot(ctx, "v", s1.Name, "legal: case 41", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if held.Hold == nil || held.Hold.Reason != "legal: case 41" || held.Hold.UID != 1000 || held.Hold.Time.IsZero() {
		t.Fatalf("hold: %+v", held.Hold)
	}
	if s, err := r.Snapshot(ctx, "v", s1.Name); err != nil || s.Hold == nil || s.Hold.Reason != "legal: case 41" {
		t.Fatalf("the record after the hold: %+v, %v", s, err)
	}
	err = r.DeleteSnapshot(ctx, "v", s1.Name)
	var he *HeldError
	if !errors.As(err, &he) || !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "legal: case 41") {
		t.Fatalf("delete a held snapshot: %v", err)
	}
	if err := r.RemoveVolume(ctx, "v", true); !errors.Is(err, ErrHeld) {
		t.Fatalf("remove the volume of a held snapshot: %v", err)
	}
	if snaps, err := r.Snapshots(ctx, "v"); err != nil || len(snaps) != 2 {
		t.Fatalf("after the refusals: %d snapshots, %v; want 2", len(snaps), err)
	}
	if v, err := r.Volume(ctx, "v"); err != nil || v.Deleting != 0 || v.Removing {
		t.Fatalf("the volume after the refusals: %+v, %v", v, err)
	}
	released, err := r.ReleaseSnapshot(ctx, "v", s1.Name)
	if err != nil || released.Hold != nil {
		t.Fatalf("release: %+v, %v", released, err)
	}
	if _, err := r.ReleaseSnapshot(ctx, "v", s1.Name); err == nil || !strings.Contains(err.Error(), "is not held") {
		t.Errorf("release a snapshot not held: %v", err)
	}
	if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatalf("delete after the release: %v", err)
	}
}

// TestHoldReasons: a hold needs one line of text; a second hold replaces
// the reason; what is not there cannot be held.
func TestHoldReasons(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s := snapFile(t, r, "v", block('A'))
	for _, bad := range []string{"", "two\nlines", "bell\a", strings.Repeat("x", maxHoldReason+1), "\xff"} {
		if _, err := r.HoldSnapshot(ctx, "v", s.Name, bad, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("reason %q: %v; want ErrInvalid", bad, err)
		}
	}
	if _, err := r.HoldSnapshot(ctx, "v", s.Name, "first", 0); err != nil {
		t.Fatal(err)
	}
	if got, err := r.HoldSnapshot(ctx, "v", "latest", "audit 2026", 0); err != nil || got.Name != s.Name || got.Hold.Reason != "audit 2026" {
		t.Fatalf("hold latest again: %+v, %v", got, err)
	}
	if _, err := r.HoldSnapshot(ctx, "v", "nosuch", "x", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("hold of a snapshot that is not there: %v", err)
	}
	if _, err := r.HoldSnapshot(ctx, "nosuch", "s", "x", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("hold in a volume that is not there: %v", err)
	}
}

// TestDropIgnoresHold: repair drops a snapshot whose top tree is lost even
// when it is held.
func TestDropIgnoresHold(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s := snapFile(t, r, "v", block('A'))
	if _, err := r.HoldSnapshot(ctx, "v", s.Name, "kept", 0); err != nil {
		t.Fatal(err)
	}
	if err := r.DropSnapshot(ctx, "v", s.Name, DeleteOptions{IgnoreHold: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Snapshot(ctx, "v", s.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("dropped snapshot still found: %v", err)
	}
}

// TestInterruptedDeletionFinishedFirst: a deletion this process marked and
// did not finish (its caller went away) is finished before another
// snapshot's is marked, not dropped half done; a hold is refused while it
// is marked, and a held snapshot's hold survives the deletion of the one
// before it.
func TestInterruptedDeletionFinishedFirst(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	A, B, C := block('A'), block('B'), block('C')
	s1 := snapFile(t, r, "v", A, B)
	s2 := snapFile(t, r, "v", A, C)
	s3 := snapFile(t, r, "v", A, C)
	s4 := snapFile(t, r, "v", A, C)
	if _, err := r.HoldSnapshot(ctx, "v", s3.Name, "kept", 0); err != nil {
		t.Fatal(err)
	}
	// The mark a deletion of s1 cut short leaves.
	if err := r.updateVolume(ctx, "v", func(v *Volume) error {
		v.Deleting, v.Writer = s1.Seq, r.info.Replica
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.HoldSnapshot(ctx, "v", s1.Name, "too late", 0); !errors.Is(err, ErrBusy) {
		t.Errorf("hold of a snapshot marked for deletion: %v; want ErrBusy", err)
	}
	if err := r.DeleteSnapshot(ctx, "v", s2.Name); err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(ctx, "v")
	var names []string
	for _, s := range snaps {
		names = append(names, s.Name)
	}
	if err != nil || len(snaps) != 2 || snaps[0].Name != s3.Name || snaps[1].Name != s4.Name {
		t.Fatalf("after deleting s2 with s1's deletion pending: %v, %v; want s3 and s4 only", names, err)
	}
	if snaps[0].Hold == nil || snaps[0].Hold.Reason != "kept" {
		t.Errorf("s3's hold after the deletions before it: %+v", snaps[0].Hold)
	}
	// A and C pass to s3, the earliest survivor; B has no reference left.
	wantHolders(t, r, s4, s3.Seq, s3.Seq)
	if rec, err := r.blockRecord(Sum(B)); err != nil || rec.Refs != 0 {
		t.Errorf("block B: refs %d, %v; want 0", rec.Refs, err)
	}
	if v, err := r.Volume(ctx, "v"); err != nil || v.Deleting != 0 {
		t.Errorf("the volume after: %+v, %v", v, err)
	}
}
