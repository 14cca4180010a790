package store

import (
	"context"
	"sync/atomic"
	"testing"
)

// cutCtx is a context cancelled once its Err has been asked n times:
// an interruption (Ctrl-C through the daemon) at a chosen step.
type cutCtx struct {
	context.Context
	n atomic.Int32
}

func (c *cutCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

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
	c := &cutCtx{Context: ctx}
	c.n.Store(1)
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
