package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Leases. Work on a volume that must not be left half done (a snapshot's
// chain update, a deletion, a removal, an image being made) is marked in
// the volume's record together with the replica doing it (Volume.Writer).
// In one process the volume's claim keeps two such works apart, and Open
// finishes or undoes what a crash left. In a repository in an object
// store, the host that marked the work may stop for good (a crash, a
// host deleted, a network lost), so the mark carries a lease: the time
// until which it holds (Volume.Lease), renewed while the work goes on
// (hold). Once the lease has run out, another host takes the work over
// (takeOver): it marks the volume its own in one commit, conditional on
// the record being as it read it, and finishes or undoes the work as the
// first host's Open would have. A host that stalled past its lease and
// woke is fenced: every commit of its work checks, in the commit's
// transaction, that the volume still marks the work as this replica's
// (work.fence); the journal orders that check after the takeover's
// commit, so the stalled host writes nothing more, not even an undo.

// DefaultLeaseTerm is Options.LeaseTerm's default: long enough that a
// host's clock may be a minute or two off and a busy host still renews in
// time, short enough that a volume left by a dead host is free again
// within minutes.
const DefaultLeaseTerm = 5 * time.Minute

// work is one marked work of this replica on a volume.
type work struct {
	volume, replica string
	// marked reports whether the volume's record still marks this work.
	marked func(v *Volume) bool
}

// work names this replica's work on volume that marked says is marked.
func (r *Repo) work(volume string, marked func(v *Volume) bool) *work {
	return &work{volume: volume, replica: r.info.Replica, marked: marked}
}

// fence refuses, inside a commit's transaction, when the volume no longer
// marks w as this replica's: another host took it over. A nil w is no
// work and refuses nothing.
func (m metaTxn) fence(w *work) error {
	if w == nil {
		return nil
	}
	var v Volume
	if err := getJSON(m.txn, volumeKey(w.volume), &v); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	} else if err != nil || v.Writer != w.replica || !w.marked(&v) {
		return fmt.Errorf("volume %s: another host took this work over after its lease ran out, and this host stops it here: %w", w.volume, ErrChanged)
	}
	return nil
}

// commitWork is commit for a commit of w: fn runs only while w is still
// this replica's.
func (r *Repo) commitWork(ctx context.Context, w *work, fn func(m metaTxn) error) error {
	return r.commit(ctx, func(m metaTxn) error {
		if err := m.fence(w); err != nil {
			return err
		}
		return fn(m)
	})
}

// leaseEnd is when a lease taken or renewed now runs out; zero outside an
// object store, where no other host can take work over.
func (r *Repo) leaseEnd() time.Time {
	if r.journal == nil {
		return time.Time{}
	}
	return time.Now().Add(r.journal.leaseTerm).UTC().Round(time.Second)
}

// hold renews w's lease until the returned func is called, which waits
// for a renewal under way. A renewal refused because another host took
// the work over ends the holding; the work's own next commit fails then.
func (r *Repo) hold(w *work) (stop func()) {
	if r.journal == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(r.journal.leaseTerm / 5)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			err := r.commitWork(ctx, w, func(m metaTxn) error {
				return m.updateVolume(w.volume, func(v *Volume) error { v.Lease = r.leaseEnd(); return nil })
			})
			switch {
			case err == nil, ctx.Err() != nil:
			case errors.Is(err, ErrChanged):
				// The work ended, or another host took it over: the work's
				// own next commit says so.
				r.log.Info("lease no longer held", "volume", w.volume, "err", err)
				return
			default:
				// The store may answer again before the lease runs out.
				r.log.Warn("renew lease", "volume", w.volume, "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// underWay reports whether v marks work that must not be left half done.
func (v *Volume) underWay() bool {
	return v.Applying != 0 || v.Deleting != 0 || v.Removing || (v.Kind == KindImage && v.Head == 0)
}

// takeOver takes over, finishes or undoes the work another host marked
// on volume and whose lease has run out (Leases, above). Work still
// leased, this replica's own, or none: it does nothing, and the caller's
// own check refuses what it must (Volume.idle).
func (r *Repo) takeOver(ctx context.Context, volume string) error {
	if r.journal == nil {
		return nil
	}
	var v Volume
	if err := r.view(func(txn *badger.Txn) error { return getJSON(txn, volumeKey(volume), &v) }); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if v.Writer == r.info.Replica || !v.underWay() || time.Now().Before(v.Lease) {
		return nil
	}
	r.log.Warn("taking over another host's unfinished work on a volume: its lease ran out",
		"volume", volume, "replica", v.Writer, "lease", v.Lease)
	return r.adopt(ctx, v)
}

// adopt marks v's work this replica's, with a new lease, if the volume's
// record still has the writer and lease of v, and then finishes or undoes
// it, holding the lease meanwhile: the work of another host whose lease
// ran out (takeOver), or this replica's own that a crash left (recover).
func (r *Repo) adopt(ctx context.Context, v Volume) error {
	if r.journal != nil {
		err := r.updateVolume(ctx, v.Name, func(cur *Volume) error {
			if cur.Writer != v.Writer || !cur.Lease.Equal(v.Lease) {
				return fmt.Errorf("volume %s: its work was taken over or renewed meanwhile: %w", v.Name, ErrBusy)
			}
			cur.Writer, cur.Lease = r.info.Replica, r.leaseEnd()
			return nil
		})
		if err != nil {
			return err
		}
		defer r.hold(r.work(v.Name, func(cur *Volume) bool { return cur.underWay() }))()
	}
	if v.Applying != 0 {
		r.log.Info("undoing interrupted snapshot", "volume", v.Name, "seq", v.Applying)
		if err := r.rollback(ctx, v.Name); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	if v.Deleting != 0 {
		r.log.Info("finishing interrupted deletion", "volume", v.Name, "seq", v.Deleting)
		if err := r.finishDelete(ctx, v.Name); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	if v.Kind == KindImage && v.Head == 0 && !v.Removing {
		// An image whose making was cut short: it was never visible.
		r.log.Info("removing unfinished image", "image", ImageNameOf(&v))
		err := r.commitWork(ctx, r.work(v.Name, func(cur *Volume) bool { return cur.Head == 0 }), func(m metaTxn) error {
			return m.updateVolume(v.Name, func(cur *Volume) error { cur.Removing = true; return nil })
		})
		if err != nil {
			return err
		}
		v.Removing = true
	}
	if v.Removing {
		if err := r.finishRemoval(ctx, v.Name); err != nil {
			return err
		}
	}
	return nil
}
