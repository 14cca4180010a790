package store

import (
	"context"
	"testing"
)

// TestDeleteInterruptedThenAgain: a deletion interrupted part-way is
// finished by running it again, and the volume takes snapshots after:
// this process's own unfinished work is no other host's to wait for.
func TestDeleteInterruptedThenAgain(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"}); err != nil {
		t.Fatal(err)
	}
	s1 := snapFile(t, r, "v", block('A'), block('B'))
	snapFile(t, r, "v", block('A'), block('C'))
	c := &cancelAfter{Context: ctx}
	c.left.Store(1)
	if err := r.DeleteSnapshot(c, "v", s1.Name); err == nil {
		t.Fatal("the deletion was not interrupted")
	}
	if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Errorf("deleting again: %v", err)
	}
	snapFile(t, r, "v", block('D'))
	if snaps, _ := r.Snapshots(ctx, "v"); len(snaps) != 2 {
		t.Errorf("%d snapshots, want 2", len(snaps))
	}
}
