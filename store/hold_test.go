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
	if _, err := r.ReleaseSnapshot(ctx, "v", s1.Name); !errors.Is(err, ErrInvalid) {
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
