package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Snapshot is a committed, immutable state of a volume.
type Snapshot struct {
	Volume      string            `json:"volume"`
	VolumeID    uint64            `json:"volume_id"`
	Seq         uint64            `json:"seq"`
	Name        string            `json:"name"`
	Parent      uint64            `json:"parent,omitempty"`
	Time        time.Time         `json:"time"`
	Auto        bool              `json:"auto,omitempty"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Root is the tree of the volume's top directory and RootDir that
	// directory's own metadata (Name empty, Subtree == Root).
	Root    Hash          `json:"root"`
	RootDir Entry         `json:"root_dir"`
	Stats   SnapshotStats `json:"stats"`
	// Hold, when set, keeps the snapshot from deletion until released.
	Hold *Hold `json:"hold,omitempty"`
	// Trashed, when set, says the snapshot is in the trash (trash.go):
	// listed by Trash and Chain only, found by TrashedSnapshot only.
	Trashed *Trashed `json:"trashed,omitempty"`
}

// SnapshotStats describe what making a snapshot did.
type SnapshotStats struct {
	Files    uint64 `json:"files"`
	Dirs     uint64 `json:"dirs"`
	Symlinks uint64 `json:"symlinks"`
	Others   uint64 `json:"others"`
	// LogicalBytes is the size of all regular files: what the snapshot shows.
	LogicalBytes uint64 `json:"logical_bytes"`
	// ReadBytes is what was read from the source (unchanged files are not).
	ReadBytes uint64 `json:"read_bytes"`
	// StoredBytes is block data written to the repository because it held
	// no copy yet.
	StoredBytes uint64 `json:"stored_bytes"`
	// LinkedBytes is data read but found in the repository already.
	LinkedBytes uint64 `json:"linked_bytes"`
	// AddedBytes and AddedBlocks are the blocks this snapshot holds itself:
	// referenced by it and not by its parent.
	AddedBytes  uint64        `json:"added_bytes"`
	AddedBlocks uint64        `json:"added_blocks"`
	Warnings    uint64        `json:"warnings"`
	Duration    time.Duration `json:"duration_ns"`
}

// Kind is "auto" or "manual".
func (s *Snapshot) Kind() string {
	if s.Auto {
		return "auto"
	}
	return "manual"
}

// MarshalText writes a hash as hex, for JSON records.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads the hex form.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	*h = v
	return err
}

// ValidSnapshotName reports whether s can name a snapshot: it becomes a
// directory name in the mount.
func ValidSnapshotName(s string) bool { return ValidLabel(s) && s != "latest" }

// SnapshotOptions describe a snapshot to be made.
type SnapshotOptions struct {
	Name        string // default: the start time, 20060102-150405
	Description string
	Tags        map[string]string
	Auto        bool
}

// defaultPackSize is the size at which a pack is finished and a new one
// begun: large enough that a pack file costs nothing per block, small
// enough that gc rewrites little at a time.
const defaultPackSize = 256 << 20

// SnapshotWriter builds one snapshot. Block and tree writes are safe for
// concurrent use; nothing is visible until Commit.
type SnapshotWriter struct {
	repo   *Repo
	vol    Volume
	parent *Snapshot
	// previous is the newest snapshot not in the trash: the parent, unless
	// that is in the trash (Previous).
	previous *Snapshot
	// compression is what the writer does with the blocks it stores: the
	// volume's, else the repository's.
	compression Compression
	snap        Snapshot
	release     func()
	started     time.Time
	// lease is the writer's hold on its snapshot, in an object store
	// (lease.go): gc on another host waits for it.
	lease *work

	trees *metaBatch
	// commitsAtBegin is the repository's commit count when the writer
	// began: if it has not moved when an aborted writer's trees are
	// reclaimed, no snapshot can have linked one.
	commitsAtBegin uint64
	committed      bool

	mu       sync.Mutex
	pack     *packBuilder // the open pack
	pending  map[Hash]struct{}
	treeSeen map[Hash]struct{}
	done     bool
	// finished and wroteTrees are what the writer stored, for reclaiming
	// if it never commits; listed counts the blocks of finished
	// (reclaimListMax).
	finished   []finishedPack
	listed     int
	wroteTrees []Hash
	// treesListed counts the trees written; past reclaimListMax,
	// wroteTrees is dropped and an aborted writer's trees are left for
	// gc.
	treesListed int
	// sinceCheck is block data written since free space was last checked.
	sinceCheck int

	stored, linked atomic.Uint64
	// recordedPacks counts the packs whose blocks left pending (recorded).
	recordedPacks atomic.Uint64

	// Full packs are finished (fsync, then block records) in the
	// background so that readers never wait for a disk flush.
	finishing sync.WaitGroup
	finishErr error // first error of a background finish; under mu
}

type pendingBlock struct {
	hash   Hash
	offset int64
	length uint32
	codec  Codec
}

// finishedPack is a pack a writer finished, with the blocks it put there,
// or nil blocks when the writer stored too many to list (reclaimListMax).
type finishedPack struct {
	id     uint64
	blocks []Hash
}

// reclaimListMax bounds the block hashes a writer keeps to give back its
// packs if it never commits (32 bytes each). A writer that stored more
// keeps its packs' ids alone, and the giving back finds their blocks by a
// scan of the block records (reclaimPacks): memory does not grow with the
// snapshot, and only the abort of a big one pays for the scan. (A
// variable for the tests.)
var reclaimListMax = 1 << 18

// noteFinished records a pack the writer finished, for reclaim. Called
// with w.mu held.
func (w *SnapshotWriter) noteFinished(pack *packBuilder) {
	p := finishedPack{id: pack.id}
	if w.listed += len(pack.blocks); w.listed <= reclaimListMax {
		p.blocks = make([]Hash, len(pack.blocks))
		for i, b := range pack.blocks {
			p.blocks[i] = b.hash
		}
	} else {
		for i := range w.finished {
			w.finished[i].blocks = nil
		}
	}
	w.finished = append(w.finished, p)
}

// BeginSnapshot starts a snapshot of a volume. It fails with ErrBusy while
// another snapshot or removal of the volume runs.
func (r *Repo) BeginSnapshot(ctx context.Context, volume string, opts SnapshotOptions) (*SnapshotWriter, error) {
	return r.beginSnapshot(ctx, volume, opts, KindTree)
}

// beginSnapshot is BeginSnapshot; an image's volume is snapshotted only
// when kind says it is one (ImageVolumes.Begin), any other only when it
// says it is not.
func (r *Repo) beginSnapshot(ctx context.Context, volume string, opts SnapshotOptions, kind VolumeKind) (*SnapshotWriter, error) {
	started := time.Now()
	name, defaultName := opts.Name, started.Format("20060102-150405")
	if name == "" {
		name = defaultName
	} else if !ValidSnapshotName(name) {
		return nil, fmt.Errorf("snapshot name %q: use 1-128 letters, digits, '.', '_', '-', '+', ':', '@', not starting with '.' or '-' and not 'latest': %w", name, ErrInvalid)
	}
	for k := range opts.Tags {
		if k == "" || strings.ContainsAny(k, "=\n") {
			return nil, fmt.Errorf("tag %q: %w", k, ErrInvalid)
		}
	}
	if err := r.haveSpace(0, "snapshot "+volume); err != nil {
		return nil, err
	}
	claim, err := r.claimVolume(volume, "snapshot "+volume+"/"+name)
	if err != nil {
		return nil, err
	}
	if err := r.takeOver(ctx, volume); err != nil {
		claim()
		return nil, err
	}
	r.gcMu.RLock()
	release := func() { r.gcMu.RUnlock(); claim() }
	w := &SnapshotWriter{repo: r, release: release, started: started, commitsAtBegin: r.commits.Load(),
		pending: map[Hash]struct{}{}, treeSeen: map[Hash]struct{}{}}
	begin := func(m metaTxn) error {
		txn := m.txn
		if err := getJSON(txn, volumeKey(volume), &w.vol); err != nil || w.vol.Removing || (w.vol.Kind == KindImage) != (kind == KindImage) {
			return fmt.Errorf("volume %s: %w", volume, ErrNotFound)
		}
		if r.OwnedElsewhere(&w.vol) {
			return fmt.Errorf("volume %s: its source is on host %s, not on this one (%s): snapshot it there", volume, w.vol.Host, r.host)
		}
		if opts.Name == "" {
			var err error
			if name, err = uniqueName(txn, w.vol.ID, defaultName); err != nil {
				return err
			}
		} else if _, err := txn.Get(snapNameKey(w.vol.ID, name)); err == nil {
			return fmt.Errorf("snapshot %s/%s: %w", volume, name, ErrExists)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("snapshot %s/%s: %w", volume, name, err)
		}
		w.parent, w.previous = nil, nil // a commit that lost a race runs again (commitJournaled)
		if w.vol.Head != 0 {
			w.parent = new(Snapshot)
			if err := getJSON(txn, snapshotKey(w.vol.ID, w.vol.Head), w.parent); err != nil {
				return fmt.Errorf("volume %s: head snapshot %d: %w", volume, w.vol.Head, errOr(err, ErrCorrupt))
			}
			w.previous = w.parent
			if w.parent.Trashed != nil {
				w.previous = nil
				if seq, err := newestLive(txn, w.vol.ID, w.vol.Head); err != nil {
					return err
				} else if seq != 0 {
					w.previous = new(Snapshot)
					if err := getJSON(txn, snapshotKey(w.vol.ID, seq), w.previous); err != nil {
						return fmt.Errorf("volume %s: snapshot %d: %w", volume, seq, errOr(err, ErrCorrupt))
					}
				}
			}
		}
		if w.compression = w.vol.Compression; w.compression == "" {
			var err error
			if w.compression, err = compressionIn(txn); err != nil {
				return err
			}
		} else if _, err := ParseCompression(string(w.compression)); err != nil {
			return fmt.Errorf("volume %s: compression %q: %w", volume, w.compression, ErrCorrupt)
		}
		seq := w.vol.NextSeq
		w.vol.NextSeq++
		w.snap = Snapshot{Volume: volume, VolumeID: w.vol.ID, Seq: seq, Name: name, Time: started.UTC(),
			Auto: opts.Auto, Description: opts.Description, Tags: opts.Tags}
		if w.parent != nil {
			w.snap.Parent = w.parent.Seq
		}
		if err := r.leaseSnapshot(m, volume, "a snapshot of "+volume); err != nil {
			return err
		}
		return m.putVolume(&w.vol)
	}
	stopMaking := func() {}
	if kind == KindImage {
		// An image's making, which its volume marks from its creation
		// until the commit: held from now, also while the beginning
		// waits for another host's gc.
		stopMaking = r.hold(r.work(volume, func(cur *Volume) bool { return cur.Head == 0 && !cur.Removing }))
	}
	for {
		err = r.commit(ctx, begin)
		var held *LeaseHeldError
		if !errors.As(err, &held) {
			break
		}
		if err = r.waitLease(ctx, held); err != nil {
			break
		}
	}
	if err != nil {
		stopMaking()
		release()
		return nil, err
	}
	w.lease = r.work("", nil).leased(snapshotLeaseKey(r.info.Replica, volume))
	stop := r.hold(w.lease)
	w.release = func() { stop(); stopMaking(); r.gcMu.RUnlock(); claim() }
	r.setActivity(fmt.Sprintf("snapshot %s/%s", volume, name))
	w.trees = r.newBatch()
	return w, nil
}

func errOr(err, fallback error) error {
	if errors.Is(err, ErrNotFound) {
		return fallback
	}
	return err
}

// uniqueName appends -2, -3, ... to a default name already taken.
func uniqueName(txn *badger.Txn, vol uint64, name string) (string, error) {
	cand := name
	for i := 2; ; i++ {
		_, err := txn.Get(snapNameKey(vol, cand))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return cand, nil
		} else if err != nil {
			return "", fmt.Errorf("snapshot name %s: %w", cand, err)
		}
		cand = fmt.Sprintf("%s-%d", name, i)
	}
}

// Volume is the volume being snapshotted, as it was at BeginSnapshot.
func (w *SnapshotWriter) Volume() *Volume { return &w.vol }

// Parent is the snapshot this one is incremental to, nil for the first.
// It may be in the trash.
func (w *SnapshotWriter) Parent() *Snapshot { return w.parent }

// Previous is the newest snapshot of the volume not in the trash, nil
// when there is none: what the source is compared with to tell a wiped
// one, since a snapshot deleted into the trash is one its user set aside.
func (w *SnapshotWriter) Previous() *Snapshot { return w.previous }

// Name is the new snapshot's name.
func (w *SnapshotWriter) Name() string { return w.snap.Name }

// StoredBytes and LinkedBytes so far, for progress reports.
func (w *SnapshotWriter) StoredBytes() uint64 { return w.stored.Load() }

// LinkedBytes is block data found in the repository already.
func (w *SnapshotWriter) LinkedBytes() uint64 { return w.linked.Load() }

// PutBlock stores a block's bytes unless the repository (or this snapshot)
// has them already. h must be w.Sum(data).
func (w *SnapshotWriter) PutBlock(ctx context.Context, h Hash, data []byte) error {
	recorded := w.recordedPacks.Load()
	if ok, err := w.repo.hasBlock(h); err != nil {
		return err
	} else if ok {
		w.linked.Add(uint64(len(data)))
		return nil
	}
	// Compressed and sealed before the lock: the writers' cores share
	// the work.
	stored, codec := data, CodecRaw
	if w.compression != CompressionOff {
		bp := storedBuffer(len(data))
		defer putStored(bp)
		stored, codec = compressBlock(w.compression, data, *bp)
	}
	stored, release := w.repo.sealStored(h, codec, stored)
	defer release()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("snapshot writer closed: %w", ErrInvalid)
	}
	if _, ok := w.pending[h]; ok {
		w.linked.Add(uint64(len(data)))
		return nil
	}
	if w.recordedPacks.Load() != recorded {
		// A pack was recorded and left pending since the look above:
		// the block may be in it.
		if ok, err := w.repo.hasBlock(h); err != nil {
			return err
		} else if ok {
			w.linked.Add(uint64(len(data)))
			return nil
		}
	}
	if err := w.checkSpace(len(stored)); err != nil {
		return err
	}
	if w.pack == nil {
		if err := w.openPack(ctx); err != nil {
			return err
		}
	}
	if _, err := w.pack.add(h, stored, codec); err != nil {
		return err
	}
	w.pending[h] = struct{}{}
	w.stored.Add(uint64(len(stored)))
	if w.pack.size() >= w.repo.packSize {
		pack := w.pack
		w.pack = nil
		w.noteFinished(pack)
		w.finishing.Add(1)
		// The pack is finished whatever becomes of this call: Commit
		// waits for it, and an aborted snapshot gives it back.
		finishCtx := context.WithoutCancel(ctx)
		go func() {
			defer w.finishing.Done()
			err := w.repo.finishPack(finishCtx, pack)
			w.mu.Lock()
			defer w.mu.Unlock()
			if err != nil {
				w.finishErr = cmp.Or(w.finishErr, err)
				return
			}
			w.recorded(pack)
		}()
	}
	return w.finishErr
}

// recorded forgets, as pending, the blocks of a pack whose records are
// written: PutBlock finds them in the repository now, and pending holds
// no more than the packs not yet recorded, whatever the snapshot's size.
// Called with w.mu held.
func (w *SnapshotWriter) recorded(pack *packBuilder) {
	for _, b := range pack.blocks {
		delete(w.pending, b.hash)
	}
	w.recordedPacks.Add(1)
}

func (w *SnapshotWriter) openPack(ctx context.Context) error {
	p, err := w.repo.newPack(ctx)
	if err != nil {
		return err
	}
	w.pack = p
	return nil
}

// finishPack makes a snapshot's pack durable and recorded (packBuilder),
// and only then records its blocks, so that no block record ever points
// at bytes a crash could lose.
func (r *Repo) finishPack(ctx context.Context, pack *packBuilder) error {
	if _, err := pack.finish(ctx); err != nil {
		return err
	}
	id, blocks := pack.id, pack.blocks
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	for len(blocks) > 0 {
		chunk := blocks[:min(chunkSize, len(blocks))]
		blocks = blocks[len(chunk):]
		err := r.commit(ctx, func(m metaTxn) error {
			for _, b := range chunk {
				// Another snapshot may have stored the same block since
				// PutBlock looked; its record stays and this copy is garbage.
				if _, err := m.txn.Get(blockKey(b.hash)); err == nil {
					continue
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
				rec := blockRecord{Codec: b.codec, Pack: id, Offset: uint64(b.offset), Length: b.length}
				if b.codec != CodecRaw {
					// An older chainfs takes a compressed block's record
					// for damage: it is to refuse the repository.
					if err := m.raiseSchema(); err != nil {
						return err
					}
				}
				if err := m.putBlock(b.hash, rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		crashPoint("blocks")
	}
	return nil
}

// flush finishes the open pack and waits for those finishing in the
// background.
func (w *SnapshotWriter) flush(ctx context.Context) error {
	w.mu.Lock()
	pack := w.pack
	w.pack, w.done = nil, true
	if pack != nil {
		w.noteFinished(pack)
	}
	w.mu.Unlock()
	var err error
	if pack != nil {
		err = w.repo.finishPack(ctx, pack)
	}
	w.finishing.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return cmp.Or(err, w.finishErr)
}

// checkSpace counts n more bytes written and, every spaceCheckEvery,
// fails when the file system nears full. Called with w.mu held.
func (w *SnapshotWriter) checkSpace(n int) error {
	if w.sinceCheck += n; w.sinceCheck < spaceCheckEvery {
		return nil
	}
	w.sinceCheck = 0
	return w.repo.haveSpace(spaceCheckEvery, "snapshot data")
}

// Sum names data as the repository names blocks and blobs.
func (w *SnapshotWriter) Sum(data []byte) Hash { return w.repo.ids.Sum(data) }

// PutTree stores a tree or content blob and returns its hash.
func (w *SnapshotWriter) PutTree(ctx context.Context, blob []byte) (Hash, error) {
	h := w.repo.ids.Sum(blob)
	w.mu.Lock()
	_, seen := w.treeSeen[h]
	if len(w.treeSeen) >= treeSeenMax {
		// Forgotten, a tree seen again is looked up, and at worst
		// written again with the same bytes.
		clear(w.treeSeen)
	}
	w.treeSeen[h] = struct{}{}
	// A tree is written twice: into a memtable, then into a table.
	err := w.checkSpace(2 * len(blob))
	w.mu.Unlock()
	if err != nil {
		return h, err
	}
	if seen {
		return h, nil
	}
	if ok, err := w.repo.hasTree(h); err != nil {
		return h, err
	} else if ok {
		return h, nil
	}
	if err := w.trees.putTree(ctx, h, blob); err != nil {
		return h, fmt.Errorf("store tree: %w", err)
	}
	w.mu.Lock()
	if w.treesListed < reclaimListMax {
		w.wroteTrees = append(w.wroteTrees, h)
	} else {
		w.wroteTrees = nil // past the bound, gc takes them if the writer aborts
	}
	w.treesListed++
	w.mu.Unlock()
	return h, nil
}

// treeSeenMax is how many trees a writer remembers having put, so that a
// tree put again (two directories alike) is neither looked up nor written.
const treeSeenMax = 1 << 16

// Commit makes the snapshot visible with rootDir (a directory entry whose
// Subtree is the top tree) as its root. On error nothing is visible and the
// writer is closed.
func (w *SnapshotWriter) Commit(ctx context.Context, rootDir Entry, stats SnapshotStats) (*Snapshot, error) {
	root := rootDir.Subtree
	rootDir.Name = ""
	defer w.close()
	if err := w.flush(ctx); err != nil {
		return nil, err
	}
	if err := w.trees.flush(ctx); err != nil {
		return nil, fmt.Errorf("store trees: %w", err)
	}
	if ok, err := w.repo.hasTree(root); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("root tree %s not stored: %w", root.Short(), ErrInvalid)
	}
	stats.StoredBytes = w.stored.Load()
	stats.LinkedBytes = w.linked.Load()
	w.snap.Root = root
	w.snap.RootDir = rootDir
	w.snap.Stats = stats
	if err := w.repo.commitSnapshot(ctx, &w.vol, &w.snap, w.parent); err != nil {
		return nil, err
	}
	w.committed = true
	w.close()
	w.repo.changed(w.vol.Name, w.snap.Name)
	return &w.snap, nil
}

// Abort drops the snapshot and gives back what it stored.
func (w *SnapshotWriter) Abort() {
	w.mu.Lock()
	if w.pack != nil {
		w.pack.abort()
		w.pack = nil
	}
	w.done = true
	w.mu.Unlock()
	w.finishing.Wait()
	w.close()
}

// close ends the writer: a writer that did not commit gives back what it
// stored.
func (w *SnapshotWriter) close() {
	if w.release == nil {
		return
	}
	w.trees.cancel()
	w.release()
	w.release = nil
	if !w.committed {
		w.repo.dropLease(w.lease)
	}
	w.repo.setActivity("")
	if !w.committed {
		w.mu.Lock()
		packs, trees := w.finished, w.wroteTrees
		w.mu.Unlock()
		// The store's own work, done once the gc lock is free, after the
		// caller has gone: no caller's context bounds it.
		w.repo.reclaim(context.Background(), packs, trees, w.commitsAtBegin)
	}
	w.repo.mu.Lock()
	fn := w.repo.watcher.SnapshotEnded
	w.repo.mu.Unlock()
	if fn != nil && w.vol.Kind != KindImage {
		end := SnapshotEnd{Volume: w.vol.Name, Name: w.snap.Name, Auto: w.snap.Auto, Took: time.Since(w.started)}
		if w.committed {
			snap := w.snap
			end.Snapshot = &snap
		}
		fn(end)
	}
}

// commitSnapshot marks the volume as applying snap, writes its delta
// against parent (nil for the first snapshot) to the delta journal while
// it compares their trees, applies the delta to the volume's chain and
// then writes its record in one transaction: the commit point. Should any
// step fail, or the process die, the volume's Applying mark gets the chain
// undone from the journal (rollback). The trees are compared without the
// commit lock: the delta journal is the volume's own, and another
// volume's commit need not wait for a walk of this one's tree.
func (r *Repo) commitSnapshot(ctx context.Context, vol *Volume, snap *Snapshot, parent *Snapshot) error {
	r.commitMu.Lock()
	locked := true
	defer func() {
		if locked {
			r.commitMu.Unlock()
		}
	}()
	leased := r.work("", nil).leased(snapshotLeaseKey(r.info.Replica, vol.Name))
	err := r.commitWork(ctx, leased, func(m metaTxn) error {
		return m.updateVolume(vol.Name, func(cur *Volume) error {
			// Another host's work on the volume, a snapshot it committed
			// since this one began (its delta is against an older parent),
			// or the volume removed and made again: in one process the
			// volume's claim rules them out.
			if cur.ID != vol.ID || cur.NextSeq <= snap.Seq {
				return fmt.Errorf("volume %s: removed and made again while this snapshot ran: %w", cur.Name, ErrChanged)
			}
			if err := cur.idle(r.info.Replica); err != nil {
				return err
			}
			if cur.Head != snap.Parent {
				return fmt.Errorf("volume %s: another snapshot was committed while this one ran: %w", cur.Name, ErrChanged)
			}
			cur.Applying, cur.Writer, cur.Lease = snap.Seq, r.info.Replica, r.leaseEnd()
			return nil
		})
	})
	if err != nil {
		return err
	}
	w := r.work(vol.Name, func(cur *Volume) bool { return cur.Applying == snap.Seq }).leased(snapshotLeaseKey(r.info.Replica, vol.Name))
	defer r.hold(w)()
	undo := func(cause error) error {
		// Undo now rather than at the next Open, so a failed snapshot
		// (a full disk, say) leaves the volume usable at once.
		if !locked {
			r.commitMu.Lock()
			locked = true
		}
		uctx := context.WithoutCancel(ctx)
		if uerr := r.rollback(uctx, vol.Name); uerr != nil {
			r.log.Error("undo failed snapshot", "volume", vol.Name, "snapshot", snap.Name, "err", uerr)
		}
		return cause
	}
	r.commitMu.Unlock()
	locked = false
	delta := r.newDeltaWriter(w, vol.ID, snap.Seq)
	var parentRoot Hash
	if parent != nil {
		parentRoot = parent.Root
	}
	if err := r.treeDelta(ctx, parentRoot, snap.Root, parent != nil, delta); err != nil {
		return undo(err)
	}
	// Each part of the journal made sure of room for itself and for
	// what applying it writes (deltaWriter.spill).
	if err := delta.finish(ctx); err != nil {
		return undo(err)
	}
	r.commitMu.Lock()
	locked = true
	added, addedBlocks, err := r.applyDelta(ctx, w, vol.ID, snap.Seq)
	if err != nil {
		return undo(err)
	}
	snap.Stats.AddedBytes, snap.Stats.AddedBlocks = added, addedBlocks
	snap.Stats.Duration = time.Since(snap.Time)
	err = r.commitWork(ctx, w, func(m metaTxn) error {
		if err := m.putSnapshot(snap); err != nil {
			return err
		}
		if w.lease != nil {
			if err := m.deleteLease(w.lease); err != nil {
				return err
			}
		}
		return m.updateVolume(vol.Name, func(cur *Volume) error {
			cur.Applying, cur.Writer, cur.Lease = 0, "", time.Time{} // the work done: no one holds it
			cur.Head = snap.Seq
			return nil
		})
	})
	if err != nil {
		return undo(err)
	}
	r.commits.Add(1)
	if err := r.syncMeta(); err != nil {
		r.log.Warn("sync after commit", "err", err)
	}
	return nil
}

// rollback undoes a volume's interrupted chain update, if any is this
// replica's: one that another host took over is that host's to undo.
func (r *Repo) rollback(ctx context.Context, volume string) error {
	var v Volume
	if err := r.view(func(txn *badger.Txn) error { return getJSON(txn, volumeKey(volume), &v) }); err != nil {
		return err
	}
	if v.Applying == 0 || v.Writer != r.info.Replica {
		return nil
	}
	w := r.work(volume, func(cur *Volume) bool { return cur.Applying == v.Applying })
	if err := r.undoDelta(ctx, w, v.ID, v.Applying); err != nil {
		return err
	}
	return r.commitWork(ctx, w, func(m metaTxn) error {
		return m.updateVolume(volume, func(cur *Volume) error {
			cur.Applying = 0 // the volume may mark more (an image's making)
			return nil
		})
	})
}

func (r *Repo) hasBlock(h Hash) (bool, error) { return r.has(blockKey(h)) }

func (r *Repo) hasTree(h Hash) (bool, error) { return r.has(treeKey(h)) }

// has reports whether key is recorded. Only badger's "not found" is
// absence; any other error is returned, never taken for absence.
func (r *Repo) has(key []byte) (bool, error) {
	err := r.view(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read record %q: %w", key[:1], err)
}

// Snapshots lists a volume's snapshots, oldest first; not those in the
// trash (Chain lists them too).
func (r *Repo) Snapshots(ctx context.Context, volume string) ([]Snapshot, error) {
	snaps, err := r.Chain(ctx, volume)
	if err != nil {
		return nil, err
	}
	live := snaps[:0]
	for _, s := range snaps {
		if s.Trashed == nil {
			live = append(live, s)
		}
	}
	return live, nil
}

// SnapshotCount is how many snapshots a volume has, not counting those in
// the trash, counted from their keys: no record is read.
func (r *Repo) SnapshotCount(ctx context.Context, volume string) (int, error) {
	v, err := r.Volume(ctx, volume)
	if err != nil {
		return 0, err
	}
	n := 0
	err = r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: snapshotPrefix(v.ID)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		n -= trashCount(txn, v.ID)
		return nil
	})
	return n, err
}

// Snapshot returns a volume's snapshot by name; "latest" is the newest.
func (r *Repo) Snapshot(ctx context.Context, volume, name string) (*Snapshot, error) {
	v, err := r.Volume(ctx, volume)
	if err != nil {
		return nil, err
	}
	return r.snapshotOf(v, name)
}

// snapshotOf returns a snapshot of v, which may be an image's volume.
func (r *Repo) snapshotOf(v *Volume, name string) (*Snapshot, error) {
	var s *Snapshot
	err := r.view(func(txn *badger.Txn) error {
		var err error
		s, err = r.snapshotIn(txn, v, name)
		return err
	})
	return s, err
}

// snapshotIn reads a snapshot of v in txn; "latest" is the newest not in
// the trash.
func (r *Repo) snapshotIn(txn *badger.Txn, v *Volume, name string) (*Snapshot, error) {
	var s Snapshot
	err := func() error {
		seq := v.Head
		if name == "latest" && seq != 0 {
			var err error
			if seq, err = newestLive(txn, v.ID, seq); err != nil {
				return err
			}
		}
		if name != "latest" {
			item, err := txn.Get(snapNameKey(v.ID, name))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrNotFound
			} else if err != nil {
				return err
			}
			if err := item.Value(func(b []byte) error {
				if len(b) != 8 {
					return ErrCorrupt
				}
				seq = binary.BigEndian.Uint64(b)
				return nil
			}); err != nil {
				return err
			}
		}
		if seq == 0 {
			return ErrNotFound
		}
		return getJSON(txn, snapshotKey(v.ID, seq), &s)
	}()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s/%s: %w", v.Name, name, err)
	}
	return &s, nil
}
