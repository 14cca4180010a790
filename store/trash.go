package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The recycle bin. A snapshot deleted by a user or by retention goes to
// the trash for some days before it is deleted for good. A trashed
// snapshot stays where it was in its volume's chain, so its blocks stay
// where they are and the blocks of the snapshots after it keep their
// earliest holder: putting it in the trash and restoring it are each
// one small transaction, and only emptying the trash (DropSnapshot)
// moves blocks. Its name is given up, so that a new snapshot may take
// it; in the trash it is known by "NAME~SEQ" (TrashRef).

// Trashed records a snapshot's going to the trash.
type Trashed struct {
	Time time.Time `json:"time"`
	// UID is who deleted it; for retention, the daemon's.
	UID uint32 `json:"uid"`
	// By is what deleted it: "manual", or "policy NAME".
	By string `json:"by"`
}

// DefaultTrashDays is how long the trash keeps a snapshot in a repository
// that was never told otherwise: a week covers a mistake noticed after a
// weekend, or a retention policy set wrong and seen at its next report,
// and costs only the blocks no later snapshot shares.
const DefaultTrashDays = 7

// MaxTrashDays bounds the setting: ten years.
const MaxTrashDays = 3650

var trashDaysKey = metaKey("trash-days")

// TrashDays is how many days the trash keeps a deleted snapshot; 0 means
// deletions are for good at once.
func (r *Repo) TrashDays(ctx context.Context) (int, error) {
	days := DefaultTrashDays
	err := r.view(func(txn *badger.Txn) error {
		err := getJSON(txn, trashDaysKey, &days)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	if err == nil && (days < 0 || days > MaxTrashDays) {
		// Nothing is deleted on the strength of a record out of range.
		err = fmt.Errorf("%d days, out of range: %w", days, ErrCorrupt)
	}
	if err != nil {
		return 0, fmt.Errorf("trash setting: %w", err)
	}
	return days, nil
}

// SetTrashDays sets how long the trash keeps a snapshot. It applies to
// what is in the trash already: its expiry is counted from the deletion.
func (r *Repo) SetTrashDays(ctx context.Context, days int) error {
	if days < 0 || days > MaxTrashDays {
		return fmt.Errorf("trash days %d: give 0 (no trash) to %d: %w", days, MaxTrashDays, ErrInvalid)
	}
	return r.commit(ctx, func(m metaTxn) error { return m.setJSON(trashDaysKey, days) })
}

// Expires is when the trash lets s go for good, keeping days.
func (s *Snapshot) Expires(days int) time.Time {
	if s.Trashed == nil {
		return time.Time{}
	}
	return s.Trashed.Time.Add(time.Duration(days) * 24 * time.Hour)
}

// TrashRef names a snapshot without its name index: "NAME~SEQ". '~' is
// not allowed in names, so it never meets one.
func (s *Snapshot) TrashRef() string { return s.Name + "~" + strconv.FormatUint(s.Seq, 10) }

// TrashNames are the names a volume's trashed snapshots go by: the name
// alone where no other trashed snapshot has it, TrashRef where one does
// (a name reused, then deleted again).
func TrashNames(trash []Snapshot) []string {
	count := map[string]int{}
	for _, s := range trash {
		count[s.Name]++
	}
	names := make([]string, len(trash))
	for i := range trash {
		if count[trash[i].Name] > 1 {
			names[i] = trash[i].TrashRef()
		} else {
			names[i] = trash[i].Name
		}
	}
	return names
}

// Trash lists a volume's snapshots in the trash, in chain order, from the
// trash's index: the cost is the trash's, not the volume's.
func (r *Repo) Trash(ctx context.Context, volume string) ([]Snapshot, error) {
	v, err := r.Volume(ctx, volume)
	if err != nil {
		return nil, err
	}
	var trash []Snapshot
	err = r.view(func(txn *badger.Txn) error {
		return eachTrashed(txn, v.ID, func(s *Snapshot) error {
			trash = append(trash, *s)
			return nil
		})
	})
	return trash, err
}

// TrashedSnapshot finds a snapshot in a volume's trash by one of the names
// TrashNames gives it, or by its TrashRef.
func (r *Repo) TrashedSnapshot(ctx context.Context, volume, name string) (*Snapshot, error) {
	v, err := r.Volume(ctx, volume)
	if err != nil {
		return nil, err
	}
	var s *Snapshot
	err = r.view(func(txn *badger.Txn) error {
		s, err = trashedIn(txn, v, name)
		return err
	})
	return s, err
}

// trashedIn is TrashedSnapshot in txn.
func trashedIn(txn *badger.Txn, v *Volume, name string) (*Snapshot, error) {
	notFound := fmt.Errorf("snapshot %s/%s is not in the trash (chainfs trash list %s): %w", v.Name, name, v.Name, ErrNotFound)
	if base, seq, ok := parseTrashRef(name); ok {
		var s Snapshot
		if err := getJSON(txn, snapshotKey(v.ID, seq), &s); errors.Is(err, ErrNotFound) {
			return nil, notFound
		} else if err != nil {
			return nil, err
		}
		if s.Trashed == nil || s.Name != base {
			return nil, notFound
		}
		return &s, nil
	}
	var found []Snapshot
	err := eachTrashed(txn, v.ID, func(s *Snapshot) error {
		if s.Name == name {
			found = append(found, *s)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case len(found) == 0:
		return nil, notFound
	case len(found) > 1:
		refs := make([]string, len(found))
		for i := range found {
			refs[i] = found[i].TrashRef()
		}
		return nil, fmt.Errorf("snapshot %s/%s: the trash holds %d of that name; name one: %s: %w",
			v.Name, name, len(found), strings.Join(refs, ", "), ErrInvalid)
	}
	return &found[0], nil
}

// parseTrashRef splits "NAME~SEQ".
func parseTrashRef(ref string) (name string, seq uint64, ok bool) {
	name, n, found := strings.Cut(ref, "~")
	if !found {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	return name, seq, err == nil && seq != 0
}

// eachTrashed calls fn with each snapshot of a volume in the trash, from
// the trash index.
func eachTrashed(txn *badger.Txn, vol uint64, fn func(s *Snapshot) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: trashPrefix(vol)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 17 {
			return fmt.Errorf("trash key %x: %w", k, ErrCorrupt)
		}
		var s Snapshot
		if err := getJSON(txn, snapshotKey(vol, binary.BigEndian.Uint64(k[9:])), &s); err != nil {
			return fmt.Errorf("trashed snapshot %d: %w", binary.BigEndian.Uint64(k[9:]), errOr(err, ErrCorrupt))
		}
		if err := fn(&s); err != nil {
			return err
		}
	}
	return nil
}

// DiscardSnapshot deletes a snapshot the way a user or retention does:
// into the trash while the repository keeps one (TrashDays), for good
// (DeleteSnapshot) when it keeps none. It returns the snapshot as it is
// now: Trashed is nil when it is gone for good. It refuses what
// DeleteSnapshot refuses: "latest", a held snapshot, a snapshot being
// deleted.
func (r *Repo) DiscardSnapshot(ctx context.Context, volume, name string, by Trashed) (*Snapshot, error) {
	days, err := r.TrashDays(ctx)
	if err != nil {
		return nil, err
	}
	if days == 0 {
		s, err := r.Snapshot(ctx, volume, name)
		if err == nil {
			err = r.DeleteSnapshot(ctx, volume, name)
		}
		if err != nil {
			return nil, err
		}
		s.Trashed = nil
		return s, nil
	}
	if err := r.refuseLatest(ctx, "delete", volume, name); err != nil {
		return nil, err
	}
	if by.Time.IsZero() {
		by.Time = time.Now().UTC()
	}
	var snap *Snapshot
	err = r.commit(ctx, func(m metaTxn) error {
		v, s, err := r.snapshotToChange(m, volume, name, false)
		if err != nil {
			return err
		}
		if err := s.Refusal(); err != nil {
			return err
		}
		if err := m.raiseSchema(); err != nil {
			return err
		}
		if err := m.del(snapNameKey(v.ID, s.Name)); err != nil {
			return err
		}
		s.Trashed = &by
		snap = s
		return m.putSnapshot(s)
	})
	if err != nil {
		return nil, err
	}
	r.changed(volume, snap.Name)
	return snap, nil
}

// RestoreTrash takes a snapshot out of the trash, under its own name or
// as another (as != ""), and returns it. A name taken meanwhile is
// ErrExists.
func (r *Repo) RestoreTrash(ctx context.Context, volume, name, as string) (*Snapshot, error) {
	if as != "" && !ValidSnapshotName(as) {
		return nil, fmt.Errorf("snapshot name %q: %w", as, ErrInvalid)
	}
	var snap *Snapshot
	err := r.commit(ctx, func(m metaTxn) error {
		v, s, err := r.snapshotToChange(m, volume, name, true)
		if err != nil {
			return err
		}
		if as != "" {
			s.Name = as
		}
		if _, err := m.txn.Get(snapNameKey(v.ID, s.Name)); err == nil {
			return fmt.Errorf("snapshot %s/%s exists; restore it under another name with --as: %w", volume, s.Name, ErrExists)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		s.Trashed = nil
		snap = s
		if err := m.del(trashKey(v.ID, s.Seq)); err != nil {
			return err
		}
		return m.putSnapshot(s)
	})
	if err != nil {
		return nil, err
	}
	r.changed(volume, snap.Name)
	return snap, nil
}

// AllTrash lists the snapshots in the trash of every volume.
func (r *Repo) AllTrash(ctx context.Context) ([]Snapshot, error) {
	vols, err := r.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	var all []Snapshot
	for _, v := range vols {
		trash, err := r.Trash(ctx, v.Name)
		if errors.Is(err, ErrNotFound) {
			continue // removed since it was listed
		} else if err != nil {
			return nil, err
		}
		all = append(all, trash...)
	}
	return all, nil
}

// EmptyTrash deletes for good what the trash holds: of every volume
// (volume ""), of one, or one snapshot (name, as TrashedSnapshot finds
// it); with expiredOnly, only what has been there longer than TrashDays
// at now. It returns what it deleted. A snapshot it cannot delete (its
// volume busy, say) is left and named in the error; the rest go.
func (r *Repo) EmptyTrash(ctx context.Context, volume, name string, expiredOnly bool, now time.Time) ([]Snapshot, error) {
	if name != "" && volume == "" {
		return nil, fmt.Errorf("a snapshot in the trash is named with its volume: %w", ErrInvalid)
	}
	days, err := r.TrashDays(ctx)
	if err != nil {
		return nil, err
	}
	var trash []Snapshot
	switch {
	case name != "":
		s, err := r.TrashedSnapshot(ctx, volume, name)
		if err != nil {
			return nil, err
		}
		trash = []Snapshot{*s}
	case volume != "":
		trash, err = r.Trash(ctx, volume)
	default:
		trash, err = r.AllTrash(ctx)
	}
	if err != nil {
		return nil, err
	}
	var gone []Snapshot
	var errs []error
	for _, s := range trash {
		if expiredOnly && now.Before(s.Expires(days)) {
			continue
		}
		err := r.DropSnapshot(ctx, s.Volume, s.TrashRef(), DeleteOptions{InTrashSince: s.Trashed.Time})
		if errors.Is(err, ErrNotFound) && name == "" {
			continue // restored, emptied or its volume removed since it was listed
		} else if err != nil {
			errs = append(errs, fmt.Errorf("empty %s/%s from the trash: %w", s.Volume, s.Name, err))
			continue
		}
		gone = append(gone, s)
	}
	return gone, errors.Join(errs...)
}

// Chain lists all of a volume's snapshots, oldest first, those in the
// trash too (Trashed set): the chain their blocks are linked along.
func (r *Repo) Chain(ctx context.Context, volume string) ([]Snapshot, error) {
	v, err := r.Volume(ctx, volume)
	if err != nil {
		return nil, err
	}
	return r.snapshotsOf(v.ID)
}

// newestLive is the newest snapshot of v not in the trash, at or before
// seq; 0 when there is none.
func newestLive(txn *badger.Txn, vol, seq uint64) (uint64, error) {
	// Most often seq itself: one lookup, no iterator ("latest" is
	// resolved at every readlink of the mount's latest).
	if _, err := txn.Get(trashKey(vol, seq)); errors.Is(err, badger.ErrKeyNotFound) {
		return seq, nil
	} else if err != nil {
		return 0, err
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: snapshotPrefix(vol), Reverse: true})
	defer it.Close()
	for it.Seek(snapshotKey(vol, seq)); it.Valid(); it.Next() {
		_, s, err := parseSnapshotKey(it.Item().Key())
		if err != nil {
			return 0, err
		}
		if _, err := txn.Get(trashKey(vol, s)); errors.Is(err, badger.ErrKeyNotFound) {
			return s, nil
		} else if err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// trashCount counts a volume's snapshots in the trash, from their keys.
func trashCount(txn *badger.Txn, vol uint64) int {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: trashPrefix(vol)})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// NameProblems checks, in one view of the metadata, that every snapshot
// is found as it should be: one not in the trash by its name, which names
// it and no other; one in the trash by its entry there, and not by name.
// Each problem is a sentence.
func (x Index) NameProblems(ctx context.Context) ([]string, error) {
	var out []string
	err := x.r.view(func(txn *badger.Txn) error {
		var vols []Volume
		err := scanJSON(txn, []byte{prefixVolume}, func(_ []byte, v *Volume) error {
			vols = append(vols, *v)
			return nil
		})
		if err != nil {
			return err
		}
		for _, v := range vols {
			if err := ctx.Err(); err != nil {
				return err
			}
			if v.Removing {
				continue // its records go a chunk at a time
			}
			err := scanJSON(txn, snapshotPrefix(v.ID), func(_ []byte, s *Snapshot) error {
				where := fmt.Sprintf("snapshot %s/%s (seq %d)", v.Name, s.Name, s.Seq)
				_, terr := txn.Get(trashKey(v.ID, s.Seq))
				if s.Trashed != nil {
					if terr != nil {
						out = append(out, where+": in the trash, but not in the trash's index")
					}
					return nil
				}
				if terr == nil {
					out = append(out, where+": in the trash's index, but not in the trash")
				}
				item, err := txn.Get(snapNameKey(v.ID, s.Name))
				if err != nil {
					out = append(out, where+": its name finds nothing")
					return nil
				}
				return item.Value(func(b []byte) error {
					if len(b) != 8 || binary.BigEndian.Uint64(b) != s.Seq {
						out = append(out, where+": its name finds another snapshot")
					}
					return nil
				})
			})
			if err != nil {
				return err
			}
			// A name left behind finds a snapshot gone, or one in the trash.
			prefix := snapNameKey(v.ID, "")
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid(); it.Next() {
				name := string(it.Item().Key()[len(prefix):])
				var seq uint64
				it.Item().Value(func(b []byte) error {
					if len(b) == 8 {
						seq = binary.BigEndian.Uint64(b)
					}
					return nil
				})
				var s Snapshot
				if err := getJSON(txn, snapshotKey(v.ID, seq), &s); err != nil || s.Name != name || s.Trashed != nil {
					out = append(out, fmt.Sprintf("snapshot name %s/%s: finds no snapshot of that name outside the trash", v.Name, name))
				}
			}
			it.Close()
		}
		return nil
	})
	return out, err
}
