package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// VolumeKind says what a volume's source is.
type VolumeKind string

// The kinds of source a volume can have.
const (
	KindTree VolumeKind = "tree" // a directory tree
	KindDisk VolumeKind = "disk" // a disk-image file or block device
)

// Block sizes a volume may use. DefaultBlockSize is chosen by measurement;
// docs/format.md says why.
const (
	DefaultBlockSize = 256 << 10
	// DefaultDiskBlockSize is a disk volume's: what a file system inside
	// writes is scattered, and a smaller block stores less around each
	// write.
	DefaultDiskBlockSize = 64 << 10
	MinBlockSize         = 4 << 10
	MaxBlockSize         = 16 << 20
)

// Volume is a named source that is snapshotted.
type Volume struct {
	Name          string     `json:"name"`
	ID            uint64     `json:"id"`
	Kind          VolumeKind `json:"kind"`
	Source        string     `json:"source"`
	BlockSize     uint32     `json:"block_size"`
	Excludes      []string   `json:"excludes,omitempty"`
	OneFileSystem bool       `json:"one_file_system,omitempty"`
	Created       time.Time  `json:"created"`
	// Head is the seq of the newest committed snapshot, 0 when none.
	Head uint64 `json:"head"`
	// NextSeq is the seq the next snapshot gets; seqs are never reused.
	NextSeq uint64 `json:"next_seq"`
	// Applying is the seq whose chain update is under way; a crash leaves
	// it set and Open undoes it.
	Applying uint64 `json:"applying,omitempty"`
	// Removing marks a volume whose removal is under way; Open finishes it.
	Removing bool `json:"removing,omitempty"`
	// Deleting is the seq of a snapshot whose deletion is under way; Open
	// finishes it.
	Deleting uint64 `json:"deleting,omitempty"`
	// Writer, in a repository in an object store, is the replica whose
	// work on the volume is under way (Applying, Deleting, Removing, an
	// image being made), and Lease when its hold on that work runs out:
	// only its Open finishes or undoes the work until then, since that
	// host may still be doing it; any host's after (lease.go).
	Writer string    `json:"writer,omitempty"`
	Lease  time.Time `json:"lease,omitzero"`
	// Host, in a repository in an object store, is the host whose source
	// a tree or disk volume snapshots (Options.Host when it was added):
	// only that host snapshots it and runs its policy. "" on volumes of a
	// repository on one machine, and on images.
	Host string `json:"host,omitempty"`
	// Policy names the automatic-snapshot policy applied, if any, and
	// PolicyApplied when: missed runs before it are not caught up.
	Policy        string    `json:"policy,omitempty"`
	PolicyApplied time.Time `json:"policy_applied,omitzero"`
	// Compression is what the volume's snapshots do with the blocks they
	// store; "" follows the repository's (Repo.Compression).
	Compression Compression `json:"compression,omitempty"`
	// Image is the metadata of the image an image volume holds, as
	// store/images wrote it (ImageVolumes); nil for other volumes, and for
	// images made before images had a record of their own.
	Image json.RawMessage `json:"image,omitempty"`
	// SourceFS is the file system a tree volume's source lay on when it was
	// added (or, for a volume added by an older version, at its first
	// snapshot since): a snapshot from another one is refused unless asked
	// for, since it is most likely a mount point whose disk is not mounted.
	SourceFS *SourceFS `json:"source_fs,omitempty"`
	// Running is what runs on the volume now (a snapshot, a deletion, its
	// removal), empty when nothing does: the state of this process, not
	// a record.
	Running string `json:"-"`
}

// SourceFS identifies the file system holding a source: the mount point
// and type of the mount it lies in. Both are stable across reboots, unlike
// device numbers (a renumbered disk, an NFS or btrfs st_dev) or statfs's
// f_fsid (XFS derives it from the device number, tmpfs and NFS leave it
// 0); and an unmounted mount point leaves its directory on the mount
// below, with another mount point.
type SourceFS struct {
	// Mount is the mount point of the file system holding the source.
	Mount string `json:"mount"`
	// Type is the file system type, as /proc/self/mountinfo says (ext4).
	Type string `json:"type"`
	// Device is what is mounted (/dev/sdb1): shown, not compared, since
	// device names change across reboots.
	Device string `json:"device,omitempty"`
}

// Same reports whether two records name the same file system.
func (f *SourceFS) Same(o *SourceFS) bool {
	return f.Mount == o.Mount && f.Type == o.Type
}

func (f *SourceFS) String() string {
	s := f.Type + " mounted at " + f.Mount
	if f.Device != "" && f.Device != "none" {
		s += " from " + f.Device
	}
	return s
}

// UpdateVolume changes what a volume's record says of it (its source,
// policy, excludes) in one transaction; fn's changes to what the store
// keeps of the chain (name, id, kind, block size, head, sequence, the
// state of an operation, creation time) are not kept. An image's volume
// is not a volume here (ImageVolumes.SetMeta changes its metadata).
func (r *Repo) UpdateVolume(ctx context.Context, name string, fn func(*Volume) error) error {
	err := r.updateVolume(ctx, name, func(v *Volume) error {
		if v.Removing || v.Kind == KindImage {
			return fmt.Errorf("volume %s: %w", name, ErrNotFound)
		}
		kept := *v
		if err := fn(v); err != nil {
			return err
		}
		if v.Compression != "" {
			if _, err := ParseCompression(string(v.Compression)); err != nil {
				return err
			}
		}
		v.Name, v.ID, v.Kind, v.BlockSize, v.Created = kept.Name, kept.ID, kept.Kind, kept.BlockSize, kept.Created
		v.Head, v.NextSeq, v.Applying, v.Deleting, v.Removing = kept.Head, kept.NextSeq, kept.Applying, kept.Deleting, kept.Removing
		v.Writer, v.Lease, v.Host = kept.Writer, kept.Lease, kept.Host
		return nil
	})
	if err != nil {
		return err
	}
	r.changed(name, "")
	return nil
}

// ValidVolumeName reports whether s can name a volume.
func ValidVolumeName(s string) bool { return ValidLabel(s) && s != "latest" }

// AddVolume records a new volume. The caller checks the source.
func (r *Repo) AddVolume(ctx context.Context, v Volume) (*Volume, error) {
	if !ValidVolumeName(v.Name) {
		return nil, fmt.Errorf("volume name %q: use 1-128 letters, digits, '.', '_', '-', '+', ':', '@', not starting with '.' or '-': %w", v.Name, ErrInvalid)
	}
	if v.BlockSize == 0 {
		v.BlockSize = DefaultBlockSize
		if v.Kind == KindDisk {
			v.BlockSize = DefaultDiskBlockSize
		}
	}
	if v.Compression != "" {
		if _, err := ParseCompression(string(v.Compression)); err != nil {
			return nil, err
		}
	}
	if v.BlockSize < MinBlockSize || v.BlockSize > MaxBlockSize || v.BlockSize&(v.BlockSize-1) != 0 {
		return nil, fmt.Errorf("block size %d: must be a power of two from %d to %d: %w", v.BlockSize, MinBlockSize, MaxBlockSize, ErrInvalid)
	}
	if v.Kind == "" {
		v.Kind = KindTree
	}
	return r.addVolume(ctx, v)
}

// addVolume records a volume whose name and kind are already checked.
func (r *Repo) addVolume(ctx context.Context, v Volume) (*Volume, error) {
	if v.BlockSize == 0 {
		v.BlockSize = DefaultBlockSize
	}
	v.Created = time.Now().UTC()
	v.Head, v.Applying, v.NextSeq, v.Removing, v.Writer, v.Lease = 0, 0, 1, false, "", time.Time{}
	if v.Kind == KindImage {
		// An image's volume marks its making until its snapshot commits.
		v.Writer, v.Lease = r.info.Replica, r.leaseEnd()
	} else if r.journal != nil {
		v.Host = r.host
	}
	err := r.commit(ctx, func(m metaTxn) error {
		var old Volume
		if err := getJSON(m.txn, volumeKey(v.Name), &old); err == nil {
			return fmt.Errorf("volume %s: %w", v.Name, ErrExists)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		id, err := m.nextID("volume")
		if err != nil {
			return err
		}
		v.ID = id
		return m.putVolume(&v)
	})
	if err != nil {
		return nil, err
	}
	r.changed(v.Name, "")
	return &v, nil
}

// Volume returns the named volume. An image's volume is not a volume
// here: ImageVolumes is the one way to it.
func (r *Repo) Volume(ctx context.Context, name string) (*Volume, error) {
	v, err := r.anyVolume(name)
	if err == nil && v.Kind == KindImage {
		return nil, fmt.Errorf("volume %s: %w", name, ErrNotFound)
	}
	return v, err
}

// anyVolume returns the named volume, an image's too.
func (r *Repo) anyVolume(name string) (*Volume, error) {
	var v Volume
	err := r.view(func(txn *badger.Txn) error { return getJSON(txn, volumeKey(name), &v) })
	if errors.Is(err, ErrNotFound) || (err == nil && v.Removing) {
		return nil, fmt.Errorf("volume %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	vs := []Volume{v}
	r.withRunning(vs)
	return &vs[0], nil
}

// Volumes lists the volumes in name order.
func (r *Repo) Volumes(ctx context.Context) ([]Volume, error) {
	vols, err := r.allVolumes()
	if err != nil {
		return nil, err
	}
	out := vols[:0]
	for _, v := range vols {
		if !v.Removing && v.Kind != KindImage {
			out = append(out, v)
		}
	}
	r.withRunning(out)
	return out, nil
}

func (r *Repo) allVolumes() ([]Volume, error) {
	var vols []Volume
	err := r.view(func(txn *badger.Txn) error {
		return scanJSON(txn, []byte{prefixVolume}, func(_ []byte, v *Volume) error {
			vols = append(vols, *v)
			return nil
		})
	})
	return vols, err
}

// RemoveVolume deletes a volume. With snapshots left it fails with
// ErrHasSnapshots unless withSnapshots is set, in which case they go too.
// An image's volume is not a volume here: it goes with its image
// (ImageVolumes.Remove).
func (r *Repo) RemoveVolume(ctx context.Context, name string, withSnapshots bool) error {
	if v, err := r.Volume(ctx, name); err != nil {
		return err
	} else if v.Kind == KindImage {
		return fmt.Errorf("volume %s: %w", name, ErrNotFound)
	}
	return r.removeVolume(ctx, name, withSnapshots)
}

func (r *Repo) removeVolume(ctx context.Context, name string, withSnapshots bool) error {
	release, err := r.claimVolume(name, "removal")
	if err != nil {
		return err
	}
	defer release()
	if err := r.takeOver(ctx, name); err != nil {
		return err
	}
	err = r.commit(ctx, func(m metaTxn) error {
		// A snapshot of it another host is making would commit into
		// whatever volume of this name there is next.
		if err := r.snapshotElsewhere(m, name); err != nil {
			return err
		}
		return m.updateVolume(name, func(v *Volume) error {
			if v.Removing {
				return fmt.Errorf("volume %s: %w", name, ErrNotFound)
			}
			if v.Head != 0 && !withSnapshots {
				return fmt.Errorf("volume %s: %w", name, ErrHasSnapshots)
			}
			if v.Head != 0 {
				if err := refuseHeld(m, v); err != nil {
					return err
				}
			}
			if err := v.idle(r.info.Replica); err != nil {
				return err
			}
			v.Removing, v.Writer, v.Lease = true, r.info.Replica, r.leaseEnd()
			return nil
		})
	})
	if err != nil {
		return err
	}
	if err := r.finishRemoval(ctx, name); err != nil {
		return err
	}
	release()
	r.changed(name, "")
	return nil
}

// finishRemoval drops everything of a volume marked Removing. Each step is
// idempotent, so a crash part-way is finished by the next Open.
func (r *Repo) finishRemoval(ctx context.Context, name string) error {
	var v Volume
	if err := r.view(func(txn *badger.Txn) error { return getJSON(txn, volumeKey(name), &v) }); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	w := r.work(name, func(cur *Volume) bool { return cur.Removing })
	defer r.hold(w)()
	if err := r.dropIntervals(ctx, w, v.ID); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	for _, p := range [][]byte{snapshotPrefix(v.ID), snapNameKey(v.ID, ""), trashPrefix(v.ID), deltaPrefix(v.ID, 0)[:9]} {
		if err := r.deletePrefix(ctx, p); err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
	}
	return r.commitWork(ctx, w, func(m metaTxn) error { return m.deleteVolume(name) })
}

// claimVolume marks a volume busy with an operation that must run alone
// on it; the returned func releases it.
func (r *Repo) claimVolume(name, what string) (func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.running[name]; ok {
		return nil, fmt.Errorf("volume %s: %s is running: %w", name, cur, ErrBusy)
	}
	r.running[name] = what
	// Idempotent: callers release early, before telling others of the
	// change, and again on their way out.
	return sync.OnceFunc(func() {
		r.mu.Lock()
		delete(r.running, name)
		r.mu.Unlock()
	}), nil
}

// withRunning fills in what runs on each volume now.
func (r *Repo) withRunning(vols []Volume) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range vols {
		vols[i].Running = r.running[vols[i].Name]
	}
}

// scanJSON calls fn for every JSON record under prefix.
func scanJSON[T any](txn *badger.Txn, prefix []byte, fn func(key []byte, v *T) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var v T
		item := it.Item()
		if err := getItemJSON(item, &v); err != nil {
			return err
		}
		if err := fn(item.KeyCopy(nil), &v); err != nil {
			return err
		}
	}
	return nil
}

// OwnedElsewhere reports whether v's source is on another host than this
// one, which then neither snapshots it nor runs its policy.
func (r *Repo) OwnedElsewhere(v *Volume) bool { return v.Host != "" && v.Host != r.host }

// idle refuses, with ErrBusy, new work on a volume whose snapshot,
// deletion or removal another replica has under way, in a repository in
// an object store. This replica's own is what an earlier failure left:
// in one process the volume's claim keeps two apart, and the work goes
// on as it always has (a deletion run again resumes).
func (v *Volume) idle(replica string) error {
	if v.Writer != replica && (v.Applying != 0 || v.Deleting != 0 || v.Removing) {
		return fmt.Errorf("volume %s: a snapshot, deletion or removal is under way on another host (replica %s): %w", v.Name, v.Writer, ErrBusy)
	}
	return nil
}
