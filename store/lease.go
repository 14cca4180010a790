package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
//
// Two works span the whole repository rather than one volume, and take
// leases of their own, records under 'l' (leaseRecord): a snapshot being
// made, from its beginning (it links blocks and trees that only its
// commit will reference), and a sweep, gc or a repair, which frees what
// nothing references. In one process gcMu keeps them apart; across hosts
// a sweep starts only while no other host's snapshot holds its lease, and
// a snapshot begins only while no other host's sweep does (it waits). A
// lease found run out is deleted by the work it kept waiting, which
// fences its holder: a stalled gc that wakes frees nothing more, and a
// snapshot whose lease a sweep took fails at its commit rather than
// reference what the sweep freed.

// DefaultLeaseTerm is Options.LeaseTerm's default: long enough that a
// host's clock may be a minute or two off and a busy host still renews in
// time, short enough that a volume left by a dead host is free again
// within minutes.
const DefaultLeaseTerm = 5 * time.Minute

// work is one marked work of this replica: on a volume, or holding a
// repository-wide lease, or both.
type work struct {
	volume, replica string
	// marked reports whether the volume's record still marks this work.
	marked func(v *Volume) bool
	// lease, if set, is the key of the lease record the work holds: in
	// an object store only (remote).
	lease  []byte
	remote bool
}

// leaseRecord is a host's hold on repository-wide work.
type leaseRecord struct {
	Replica string    `json:"replica"`
	Until   time.Time `json:"until"`
	// What the work is, for the hosts it keeps waiting.
	What string `json:"what"`
}

// getLease reads the lease record at key; ok is false when there is none.
func getLease(txn *badger.Txn, key []byte) (l leaseRecord, ok bool, err error) {
	err = getJSON(txn, key, &l)
	if errors.Is(err, ErrNotFound) {
		return l, false, nil
	}
	return l, err == nil, err
}

// String names w for the log: its volume, or its lease.
func (w *work) String() string {
	if w.volume != "" {
		return "volume " + w.volume
	}
	return string(w.lease[1:])
}

// leased makes w hold the lease at key too, in an object store: the
// only place leases are kept.
func (w *work) leased(key []byte) *work {
	if w.remote {
		w.lease = key
	}
	return w
}

// work names this replica's work on volume that marked says is marked.
func (r *Repo) work(volume string, marked func(v *Volume) bool) *work {
	return &work{volume: volume, replica: r.info.Replica, marked: marked, remote: r.journal != nil}
}

// fence refuses, inside a commit's transaction, when the volume no longer
// marks w as this replica's: another host took it over. A nil w is no
// work and refuses nothing.
func (m metaTxn) fence(w *work) error {
	if w == nil {
		return nil
	}
	if w.lease != nil {
		l, ok, err := getLease(m.txn, w.lease)
		if err != nil {
			return err
		}
		if !ok || l.Replica != w.replica {
			return fmt.Errorf("%s: %w", w.lease[1:], errFenced)
		}
	}
	if w.volume == "" {
		return nil
	}
	var v Volume
	if err := getJSON(m.txn, volumeKey(w.volume), &v); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	} else if err != nil || v.Writer != w.replica || !w.marked(&v) {
		return fmt.Errorf("volume %s: %w", w.volume, errFenced)
	}
	return nil
}

// errFenced is fence's refusal: an ErrChanged, which only a takeover
// gives, so that a lease's holder tells it from a lost race.
var errFenced = fmt.Errorf("another host took this work over after its lease ran out, and this host stops it here: %w", ErrChanged)

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
			err := r.commitWork(ctx, w, func(m metaTxn) error { return r.renew(m, w) })
			switch {
			case err == nil, ctx.Err() != nil:
			case errors.Is(err, errFenced):
				// The work ended, or another host took it over: the work's
				// own next commit says so.
				r.log.Debug("lease no longer held", "work", w, "err", err)
				return
			default:
				// The store may answer again before the lease runs out.
				r.log.Warn("renew lease", "work", w, "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// renew gives w's leases a new term.
func (r *Repo) renew(m metaTxn, w *work) error {
	if w.lease != nil {
		l, _, err := getLease(m.txn, w.lease)
		if err != nil {
			return err
		}
		l.Until = r.leaseEnd()
		if err := m.putLease(w.lease, l); err != nil {
			return err
		}
	}
	if w.volume == "" {
		return nil
	}
	return m.updateVolume(w.volume, func(v *Volume) error { v.Lease = r.leaseEnd(); return nil })
}

// LeaseHeldError is work refused, or kept waiting, by another host's
// lease: a sweep (gc, a repair) or a snapshot running there. It is an
// ErrBusy.
type LeaseHeldError struct {
	// Replica is the host holding it, by its replica's id.
	Replica string
	Until   time.Time
	What    string
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("%s runs on another host (replica %s, its lease until %s)", e.What, e.Replica, e.Until.Format(time.RFC3339))
}

// Is makes the error an ErrBusy.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrBusy }

// heldBy refuses, with a LeaseHeldError, when l is another replica's and
// has not run out; a lease run out (or this replica's, left by a process
// that crashed: in one process gcMu orders the works) is deleted, which
// fences its holder.
func (r *Repo) heldBy(m metaTxn, key []byte, l leaseRecord) error {
	if l.Replica != r.info.Replica && time.Now().Before(l.Until) {
		return &LeaseHeldError{Replica: l.Replica, Until: l.Until, What: l.What}
	}
	return m.deleteLease(key)
}

// leaseSnapshot, in the commit that begins a snapshot of volume in a
// repository in an object store, refuses while another host's sweep
// holds its lease, and takes the snapshot's own.
func (r *Repo) leaseSnapshot(m metaTxn, volume, what string) error {
	if r.journal == nil {
		return nil
	}
	if l, ok, err := getLease(m.txn, sweepLeaseKey); err != nil {
		return err
	} else if ok {
		if err := r.heldBy(m, sweepLeaseKey, l); err != nil {
			return err
		}
	}
	return m.putLease(snapshotLeaseKey(r.info.Replica, volume), leaseRecord{Replica: r.info.Replica, Until: r.leaseEnd(), What: what})
}

// waitLease waits for the lease held to run out or be given back, taking
// in the other hosts' commits meanwhile, or for ctx to end.
func (r *Repo) waitLease(ctx context.Context, held *LeaseHeldError) error {
	r.log.Info("waiting for another host", "work", held.What, "replica", held.Replica, "until", held.Until)
	wait := min(max(time.Until(held.Until), 0)+100*time.Millisecond, 5*time.Second)
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", held, ctx.Err())
	case <-time.After(wait):
	}
	_, err := r.Refresh(ctx)
	return err
}

// snapshotElsewhere refuses, with a LeaseHeldError, while another host's
// snapshot of volume holds its lease.
func (r *Repo) snapshotElsewhere(m metaTxn, volume string) error {
	var held error
	err := scanJSON(m.txn, snapshotLeasesFrom, func(key []byte, l *leaseRecord) error {
		_, vol, _ := strings.Cut(string(key[len(snapshotLeasesFrom):]), "/")
		if held == nil && vol == volume && l.Replica != r.info.Replica && time.Now().Before(l.Until) {
			held = &LeaseHeldError{Replica: l.Replica, Until: l.Until, What: l.What}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return held
}

// leaseSweep takes, in a repository in an object store, the lease of a
// sweep (gc, a repair) described by what, once no other host's sweep or
// snapshot holds one; it refuses with a LeaseHeldError while one does.
// The work it returns fences the sweep's commits; release gives the lease
// back. Elsewhere it returns no work and does nothing.
func (r *Repo) leaseSweep(ctx context.Context, what string) (w *work, release func(), err error) {
	if r.journal == nil {
		return nil, func() {}, nil
	}
	err = r.commit(ctx, func(m metaTxn) error {
		if l, ok, err := getLease(m.txn, sweepLeaseKey); err != nil {
			return err
		} else if ok {
			if err := r.heldBy(m, sweepLeaseKey, l); err != nil {
				return err
			}
		}
		keys, leases := [][]byte{}, []leaseRecord{}
		err := scanJSON(m.txn, snapshotLeasesFrom, func(key []byte, l *leaseRecord) error {
			keys, leases = append(keys, key), append(leases, *l)
			return nil
		})
		if err != nil {
			return err
		}
		for i, key := range keys {
			if err := r.heldBy(m, key, leases[i]); err != nil {
				return err
			}
		}
		return m.putLease(sweepLeaseKey, leaseRecord{Replica: r.info.Replica, Until: r.leaseEnd(), What: what})
	})
	if err != nil {
		return nil, nil, err
	}
	w = r.work("", nil).leased(sweepLeaseKey)
	stop := r.hold(w)
	return w, func() { stop(); r.dropLease(w) }, nil
}

// dropOwnLeases deletes, at open, the leases this replica holds: what a
// process of it that crashed left, since one process holds a replica.
func (r *Repo) dropOwnLeases(ctx context.Context) error {
	var own [][]byte
	err := r.view(func(txn *badger.Txn) error {
		return scanJSON(txn, leaseKey(""), func(key []byte, l *leaseRecord) error {
			if l.Replica == r.info.Replica {
				own = append(own, key)
			}
			return nil
		})
	})
	if err != nil || len(own) == 0 {
		return err
	}
	return r.commit(ctx, func(m metaTxn) error {
		for _, key := range own {
			if err := m.deleteLease(key); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropLease gives back w's lease, if w still holds it; one that cannot be
// given back now runs out on its own.
func (r *Repo) dropLease(w *work) {
	if w == nil || w.lease == nil {
		return
	}
	held := r.work("", nil).leased(w.lease)
	err := r.commitWork(context.Background(), held, func(m metaTxn) error { return m.deleteLease(w.lease) })
	if err != nil && !errors.Is(err, ErrChanged) {
		r.log.Warn("give back a lease; it runs out on its own", "lease", string(w.lease[1:]), "err", err)
	}
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
		// The undo plans reference counts that this process's own
		// snapshots change too: under commitMu, as every chain update.
		r.commitMu.Lock()
		err := r.rollback(ctx, v.Name)
		r.commitMu.Unlock()
		if err != nil {
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
