package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A repository in an object store (Options.Remote) keeps its metadata
// there as a journal: every commit of the one metadata write path is
// sent as the next numbered entry, <prefix>journal/<seq>, before it is
// applied to the local replica, and the local replica records the last
// entry it applied in the same transaction. An entry is created only if
// no entry of its number is there yet (a conditional write): that is the
// commit point. Of two writers that read the same journal, one creates
// the entry; the other's commit fails with ErrChanged, having written
// nothing, and its replica takes in the winner's entry. A replica, also
// an empty one on another host, is brought up to date by applying the
// entries after its own in order, so the object store alone holds the
// repository: deleting a host's replica loses nothing.

// Remote places a repository's packs and metadata in an object store.
type Remote struct {
	Objects Objects
	// Prefix is where the repository's objects go: "" or ending in "/".
	Prefix string
}

// journalKey records, in the local replica, the last journal entry
// applied to it.
var journalKey = metaKey("journal")

// journal is the repository's log of commits in the object store.
type journal struct {
	remote Remote
	// mu keeps one commit at a time in flight, so that the replica
	// applies entries in their order; applied is the last entry the
	// replica holds.
	mu      sync.Mutex
	applied uint64
	// foreign counts the entries of other writers taken in: a plan read
	// before one came in is stale (foreignMark).
	foreign atomic.Uint64
	// leaseTerm is Options.LeaseTerm (lease.go).
	leaseTerm time.Duration
	// checkpointed is the entry of the newest checkpoint known, once
	// checkpointsListed (checkpoint.go); under mu.
	checkpointed      uint64
	checkpointsListed bool
	// lastSent is the last entry send built, whose landing a failed
	// commit reads back (commitJournaled); under mu.
	lastSent []byte
	// keys seal every entry of an encrypted repository; nil otherwise.
	keys *keyring
}

// maxEntry bounds a journal entry, sent or read: an entry is one
// transaction of the replica, which badger bounds far below this.
const maxEntry = 64 << 20

func (j *journal) key(seq uint64) string { return fmt.Sprintf("%sjournal/%016x", j.remote.Prefix, seq) }

// entryMagic begins a journal entry, and names its format.
var entryMagic = []byte("CFJ1")

// nonceSize is the length of an entry's nonce.
const nonceSize = 16

// encodeEntry is entry seq: a nonce, its mutations (a nil value deletes
// the key), then the BLAKE3 hash of all before it, so that a damaged or
// cut object is refused rather than applied. The nonce, new for every
// attempt, makes the bytes one writer's: two writers may build the same
// mutations at the same number (a counter's next value, say), and the
// read-back of a write whose answer was lost must tell its own entry
// from theirs.
func encodeEntry(seq uint64, nonce [nonceSize]byte, muts []kv) []byte {
	b := append([]byte{}, entryMagic...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, nonce[:]...)
	b = binary.AppendUvarint(b, uint64(len(muts)))
	for _, m := range muts {
		op := byte(1)
		if m.val == nil {
			op = 2
		}
		b = append(b, op)
		b = binary.AppendUvarint(b, uint64(len(m.key)))
		b = append(b, m.key...)
		if op == 1 {
			b = binary.AppendUvarint(b, uint64(len(m.val)))
			b = append(b, m.val...)
		}
	}
	h := Sum(b)
	return append(b, h[:]...)
}

// decodeEntry reads entry seq, refusing one that is damaged, cut short,
// or of another number.
func decodeEntry(seq uint64, b []byte) ([]kv, error) {
	bad := func(why string) ([]kv, error) {
		return nil, fmt.Errorf("journal entry %d: %s: %w", seq, why, ErrCorrupt)
	}
	if len(b) < len(entryMagic)+8+nonceSize+1+HashSize || !bytes.HasPrefix(b, entryMagic) {
		return bad("not an entry")
	}
	body, sum := b[:len(b)-HashSize], b[len(b)-HashSize:]
	if h := Sum(body); !bytes.Equal(h[:], sum) {
		return bad("its hash does not match")
	}
	if got := binary.BigEndian.Uint64(body[len(entryMagic):]); got != seq {
		return bad(fmt.Sprintf("it says it is entry %d", got))
	}
	rest := body[len(entryMagic)+8+nonceSize:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)) {
		return bad("bad count")
	}
	rest = rest[k:]
	muts := make([]kv, 0, n)
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(rest)
		if k <= 0 || l > uint64(len(rest)-k) {
			return nil, false
		}
		f := rest[k : k+int(l)]
		rest = rest[k+int(l):]
		return f, true
	}
	for range n {
		if len(rest) == 0 || (rest[0] != 1 && rest[0] != 2) {
			return bad("bad operation")
		}
		op := rest[0]
		rest = rest[1:]
		key, ok := field()
		if !ok || len(key) == 0 {
			return bad("bad key")
		}
		m := kv{key: key}
		if op == 1 {
			if m.val, ok = field(); !ok {
				return bad("bad value")
			}
			if m.val == nil {
				m.val = []byte{}
			}
		}
		muts = append(muts, m)
	}
	if len(rest) != 0 {
		return bad("data after its mutations")
	}
	return muts, nil
}

// send creates entry seq with muts; ErrChanged when another writer made
// it first. A write whose answer is lost (a cancellation, a reset
// connection) may have landed, and a retry of one that landed is refused
// as if another writer had won: on any failure the entry is read back,
// and one that holds exactly what was sent is this commit, made.
func (j *journal) send(ctx context.Context, seq uint64, muts []kv) error {
	var nonce [nonceSize]byte
	rand.Read(nonce[:])
	entry := encodeEntry(seq, nonce, muts)
	if j.keys != nil {
		entry = j.keys.seal(nil, sealJournal, binary.BigEndian.AppendUint64(nil, seq), entry)
	}
	j.lastSent = entry
	if len(entry) > maxEntry {
		return fmt.Errorf("journal entry %d: %d bytes, more than %d: %w", seq, len(entry), maxEntry, ErrInvalid)
	}
	_, err := j.remote.Objects.PutIf(ctx, j.key(seq), entry, "")
	if err == nil {
		return nil
	}
	there, rerr := j.fetchRaw(context.WithoutCancel(ctx), seq)
	switch {
	case rerr == nil && bytes.Equal(there, entry):
		return nil
	case rerr == nil:
		return fmt.Errorf("send journal entry %d: %w", seq, ErrChanged)
	case errors.Is(rerr, fs.ErrNotExist):
		return fmt.Errorf("send journal entry %d: %w (none is there now; should the write still land, the next catch-up applies it)", seq, err)
	}
	return fmt.Errorf("send journal entry %d: %w; whether it landed is unknown (%v): the next catch-up applies it if it did", seq, err, rerr)
}

// fetchRaw reads entry seq's bytes; an error that errors.Is takes for
// fs.ErrNotExist when there is none yet.
func (j *journal) fetchRaw(ctx context.Context, seq uint64) ([]byte, error) {
	obj, err := j.remote.Objects.Stat(ctx, j.key(seq))
	if err != nil {
		return nil, err
	}
	if obj.Size > maxEntry {
		return nil, fmt.Errorf("journal entry %d: %d bytes, more than %d: %w", seq, obj.Size, maxEntry, ErrCorrupt)
	}
	b := make([]byte, obj.Size)
	if err := j.remote.Objects.ReadAt(ctx, j.key(seq), b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// fetch reads and decodes entry seq.
func (j *journal) fetch(ctx context.Context, seq uint64) ([]kv, error) {
	b, err := j.fetchRaw(ctx, seq)
	if err != nil {
		return nil, err
	}
	if j.keys != nil {
		// Bound to its number: an entry moved to another's place does
		// not open.
		if b, err = j.keys.open(nil, sealJournal, binary.BigEndian.AppendUint64(nil, seq), b); err != nil {
			return nil, fmt.Errorf("journal entry %d: %v: %w", seq, err, ErrCorrupt)
		}
	}
	return decodeEntry(seq, b)
}

// readApplied reads the last entry the replica applied.
func readApplied(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get(journalKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("journal position: %w", ErrCorrupt)
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	return seq, err
}

// catchUp applies to the replica, in order, the entries after the last
// it holds, each with its number in one transaction. Called with j.mu
// held.
func (r *Repo) catchUp(ctx context.Context) error {
	j := r.journal
	for {
		seq := j.applied + 1
		muts, err := j.fetch(ctx, seq)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.applyEntry(seq, muts); err != nil {
			return fmt.Errorf("apply journal entry %d: %w", seq, err)
		}
		j.applied = seq
		// A snapshot another writer committed counts as one of this
		// process's for what an aborted writer gives back (reclaim):
		// its trees may be the same. Counted before foreign, which
		// reclaim reads first.
		r.commits.Add(1)
		j.foreign.Add(1)
	}
}

// commitJournaled is commit for a repository in an object store: fn's
// mutations are sent as the next journal entry, then applied with the
// entry's number. When another writer sent that entry first, the replica
// takes in what it is missing and fn runs again on what won: fn reads
// what it changes in its own transaction, so it plans afresh, and hosts
// that commit at the same moment each get their turn. mark, unless
// anyMark, is foreignMark when the commit's writes were planned in an
// earlier read: if another writer's entry came in since, the plan is
// stale and the commit fails with ErrChanged, having changed nothing, for
// its caller to plan again (applyPlanned).
func (r *Repo) commitJournaled(ctx context.Context, mark uint64, fn func(m metaTxn) error) error {
	j := r.journal
	j.mu.Lock()
	defer j.mu.Unlock()
	for attempt := 1; ; attempt++ {
		if mark != anyMark && j.foreign.Load() != mark {
			return fmt.Errorf("commit: another writer committed to the repository while this one was planned, and it was not made: %w", ErrChanged)
		}
		var seq uint64
		lost := false
		err := r.updateJournaled(fn, func(muts []kv) (uint64, error) {
			seq = j.applied + 1
			err := j.send(ctx, seq, muts)
			lost = errors.Is(err, ErrChanged)
			return seq, err
		})
		switch {
		case err == nil:
			if seq != 0 {
				j.applied = seq
			}
			return nil
		case lost:
			if cerr := r.catchUp(ctx); cerr != nil {
				return fmt.Errorf("%w; taking in the other commit: %v", err, cerr)
			}
			if mark != anyMark {
				return fmt.Errorf("commit: another writer committed to the repository first, and this commit, planned before that, was not made: %w", ErrChanged)
			}
			if attempt < commitAttempts && ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("commit: other writers committed to the repository first %d times in a row, and this commit was not made: %w", attempt, ErrChanged)
		case seq != 0 && j.landed(ctx, seq):
			// This commit's entry is in the journal, but the replica did
			// not take it (or its answer came too late): the commit is
			// made, and the replica takes it in as another host's.
			r.log.Warn("a commit reached the journal but not this replica; taking it in", "entry", seq, "err", err)
			if cerr := r.catchUp(ctx); cerr != nil {
				return fmt.Errorf("%w; the commit is in the journal, and the next catch-up applies it: %v", err, cerr)
			}
			return nil
		}
		return err
	}
}

// commitAttempts bounds how often one commit loses the race for the next
// journal entry before it gives up: each lost race is another writer's
// commit made, so only a host among very many busy ones reaches it.
const commitAttempts = 32

// sent reports whether entry seq is in the journal.
func (j *journal) sent(ctx context.Context, seq uint64) bool {
	_, err := j.remote.Objects.Stat(context.WithoutCancel(ctx), j.key(seq))
	return err == nil
}

// landed reports whether entry seq in the journal is the last one this
// replica sent, to the byte (its nonce makes it this attempt's alone).
func (j *journal) landed(ctx context.Context, seq uint64) bool {
	there, err := j.fetchRaw(context.WithoutCancel(ctx), seq)
	return err == nil && j.lastSent != nil && bytes.Equal(there, j.lastSent)
}

// remoteInfo is where a repository in an object store keeps its Info.
func (rm Remote) infoKey() string { return rm.Prefix + markerFile }

// putRemoteInfo records a new repository's Info in the object store;
// ErrExists when one is there.
func putRemoteInfo(ctx context.Context, rm Remote, info Info) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	_, err := rm.Objects.PutIf(ctx, rm.infoKey(), append(b, '\n'), "")
	if errors.Is(err, ErrChanged) {
		return fmt.Errorf("%s: a repository is already there: %w", rm.infoKey(), ErrExists)
	}
	return err
}

// readRemoteInfo reads a repository's Info from the object store.
func readRemoteInfo(ctx context.Context, rm Remote) (*Info, error) {
	obj, err := rm.Objects.Stat(ctx, rm.infoKey())
	if errors.Is(err, fs.ErrNotExist) {
		// The error names the bucket, and says when it is the bucket
		// that is missing.
		return nil, fmt.Errorf("%s: no repository there (check the name; 'chainfs init' makes one, and the bucket if it is missing): %w",
			strings.TrimSuffix(err.Error(), ": not found"), ErrNotRepository)
	}
	if err != nil {
		return nil, err
	}
	b := make([]byte, min(obj.Size, 1<<20))
	if err := rm.Objects.ReadAt(ctx, rm.infoKey(), b, 0); err != nil {
		return nil, err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil || info.ID == "" {
		return nil, fmt.Errorf("%s: unreadable: %w", rm.infoKey(), ErrCorrupt)
	}
	if info.Format != FormatVersion {
		return nil, fmt.Errorf("%s: format version %d, this chainfs reads version %d: %w", rm.infoKey(), info.Format, FormatVersion, ErrFormat)
	}
	return &info, nil
}

// attach makes, in the empty or missing opts.Dir, this host's replica of
// a repository in an object store: the marker with the repository's Info,
// read from the object store, and an empty metadata database, which Open
// then brings up to date from the journal.
func attach(ctx context.Context, opts Options, info Info, keys *keyring) (*Info, error) {
	dir := opts.Dir
	if names, err := readDirNames(dir); err == nil && len(names) > 0 {
		return nil, fmt.Errorf("%s: not empty, and no replica of %s (an init or a first open cut short leaves this; a replica holds nothing the bucket lacks): remove it: %w", dir, opts.Remote.infoKey(), ErrExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("replica %s: %w", dir, err)
	}
	if err := CheckTrusted(dir); err != nil {
		return nil, err
	}
	info.Dir, info.Replica = dir, newReplicaID()
	r, err := openDB(dir, opts, info, keys, nil)
	if err != nil {
		return nil, err
	}
	if err := r.Close(); err != nil {
		return nil, err
	}
	// The marker goes last: a directory without it is made again.
	if err := writeMarker(dir, info); err != nil {
		return nil, fmt.Errorf("replica %s: %w", dir, err)
	}
	return &info, nil
}

// Refresh brings this replica of a repository in an object store up to
// date: it takes in the commits other writers made since it last looked,
// and says how many. Elsewhere it does nothing.
func (r *Repo) Refresh(ctx context.Context) (int, error) {
	if r.journal == nil {
		return 0, nil
	}
	r.journal.mu.Lock()
	defer r.journal.mu.Unlock()
	before := r.journal.applied
	err := r.catchUp(ctx)
	return int(r.journal.applied - before), err
}

// anyMark is the mark of a commit whose writes fn reads itself, in its
// transaction: no plan of it can be stale.
const anyMark = ^uint64(0)

// foreignMark is taken before the reads that plan writes made later in
// another transaction (applyWrites): the commit of a plan read before
// another writer's entry came in is refused. Elsewhere it is 0, and
// nothing is refused: one process holds the repository, and commitMu
// orders its plans.
func (r *Repo) foreignMark() uint64 {
	if r.journal == nil {
		return 0
	}
	return r.journal.foreign.Load()
}

// Remote reports whether the repository is in an object store.
func (r *Repo) Remote() bool { return r.journal != nil }

// tryRefresh is Refresh, but none at all when a commit or a catch-up
// holds the journal: readers that fail together do not queue up behind
// each other's requests.
func (r *Repo) tryRefresh(ctx context.Context) {
	if !r.journal.mu.TryLock() {
		return
	}
	defer r.journal.mu.Unlock()
	r.catchUp(ctx)
}

// openJournal checks that the replica is of the repository in the
// object store, and brings it up to date.
func (r *Repo) openJournal(ctx context.Context, local Info) error {
	remote, err := readRemoteInfo(ctx, r.journal.remote)
	if err != nil {
		return err
	}
	if remote.ID != local.ID {
		return fmt.Errorf("%s holds a replica of repository %s, not of %s (%s), which was made again there since: delete that directory (a replica holds nothing the bucket lacks), and the next command makes a new one",
			r.dir, local.ID, remote.ID, r.journal.remote.infoKey())
	}
	r.journal.mu.Lock()
	defer r.journal.mu.Unlock()
	if r.journal.applied == 0 {
		// A new replica: from the newest checkpoint, if there is one.
		if err := r.loadCheckpoint(ctx); err != nil {
			return err
		}
	}
	return r.catchUp(ctx)
}

// newReplicaID names a new replica.
func newReplicaID() string {
	var id [8]byte
	rand.Read(id[:])
	return hex.EncodeToString(id[:])
}
