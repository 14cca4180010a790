package store

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Hold keeps a snapshot from being deleted, by hand or by retention, until
// it is released: a legal hold, a snapshot kept for an audit or before a
// risky change.
type Hold struct {
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
	// UID is who placed the hold.
	UID uint32 `json:"uid"`
}

// ErrHeld: the snapshot is held (HeldError says why).
var ErrHeld = errors.New("snapshot is held")

// HeldError refuses to delete a held snapshot, with the hold's reason. It
// is an ErrHeld.
type HeldError struct {
	Volume, Snapshot string
	Hold             Hold
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("snapshot %s/%s is held (%s) since %s; release it first (chainfs snapshot release %s/%s)",
		e.Volume, e.Snapshot, e.Hold.Reason, e.Hold.Time.Format(time.RFC3339), e.Volume, e.Snapshot)
}

// Is makes the error an ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Refusal is the HeldError that deleting s meets, nil when s is not held.
func (s *Snapshot) Refusal() error {
	if s.Hold == nil {
		return nil
	}
	return &HeldError{Volume: s.Volume, Snapshot: s.Name, Hold: *s.Hold}
}

// maxHoldReason bounds a hold's reason: a line in a listing, not a file.
const maxHoldReason = 256

// validHoldReason checks a hold's reason: one line of printable text.
func validHoldReason(reason string) error {
	if reason == "" {
		return fmt.Errorf("a hold needs a reason: %w", ErrInvalid)
	}
	if len(reason) > maxHoldReason || !utf8.ValidString(reason) {
		return fmt.Errorf("a hold's reason is at most %d bytes of UTF-8: %w", maxHoldReason, ErrInvalid)
	}
	for _, c := range reason {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("a hold's reason is one line of printable text: %w", ErrInvalid)
		}
	}
	return nil
}

// HoldSnapshot places a hold on a snapshot (or replaces the one it has:
// reason, time and uid) and returns the snapshot as it is now. A snapshot
// being deleted cannot be held (ErrBusy).
func (r *Repo) HoldSnapshot(ctx context.Context, volume, name, reason string, uid uint32) (*Snapshot, error) {
	if err := validHoldReason(reason); err != nil {
		return nil, err
	}
	return r.setHold(ctx, volume, name, &Hold{Reason: reason, Time: time.Now().UTC(), UID: uid})
}

// ReleaseSnapshot removes a snapshot's hold and returns the snapshot as it
// is now. Releasing a snapshot that is not held is an error.
func (r *Repo) ReleaseSnapshot(ctx context.Context, volume, name string) (*Snapshot, error) {
	return r.setHold(ctx, volume, name, nil)
}

// setHold writes a snapshot's hold in a transaction that also reads the
// volume: a deletion marks the volume first, so a hold and a deletion of
// the same snapshot never both succeed.
func (r *Repo) setHold(ctx context.Context, volume, name string, hold *Hold) (*Snapshot, error) {
	var snap *Snapshot
	err := r.commit(ctx, func(m metaTxn) error {
		v, s, err := r.snapshotToChange(m, volume, name, false)
		if err != nil {
			return err
		}
		if hold == nil && s.Hold == nil {
			return fmt.Errorf("snapshot %s/%s is not held", volume, s.Name)
		}
		s.Hold = hold
		snap = s
		if hold != nil {
			if err := m.raiseSchema(); err != nil {
				return err
			}
		}
		return m.setJSON(snapshotKey(v.ID, s.Seq), s)
	})
	if err != nil {
		return nil, err
	}
	r.changed(volume, snap.Name)
	return snap, nil
}

// snapshotToChange reads, in the transaction that changes it, a snapshot
// of a volume (not an image's) by its name, or, inTrash, by its name in
// the trash (TrashedSnapshot), with its volume: a deletion marks the
// volume first, so a change and a deletion of one snapshot never both
// succeed, and one being deleted is ErrBusy.
func (r *Repo) snapshotToChange(m metaTxn, volume, name string, inTrash bool) (*Volume, *Snapshot, error) {
	var v Volume
	if err := getJSON(m.txn, volumeKey(volume), &v); err != nil {
		return nil, nil, fmt.Errorf("volume %s: %w", volume, err)
	}
	if v.Kind == KindImage || v.Removing {
		return nil, nil, fmt.Errorf("volume %s: %w", volume, ErrNotFound)
	}
	var s *Snapshot
	var err error
	if inTrash {
		s, err = trashedIn(m.txn, &v, name)
	} else {
		s, err = r.snapshotIn(m.txn, &v, name)
	}
	if err != nil {
		return nil, nil, err
	}
	if v.Deleting == s.Seq {
		return nil, nil, fmt.Errorf("snapshot %s/%s is being deleted: %w", volume, s.Name, ErrBusy)
	}
	return &v, s, nil
}

// refuseHeld fails with a HeldError when a snapshot of v is held: removing
// a volume deletes them all.
func refuseHeld(m metaTxn, v *Volume) error {
	return scanJSON(m.txn, snapshotPrefix(v.ID), func(_ []byte, s *Snapshot) error {
		return s.Refusal()
	})
}
