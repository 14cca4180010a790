package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// FormatVersion is the repository layout this build writes and reads.
const FormatVersion = 1

const (
	markerFile = "chainfs.json"
	lockFile   = "lock"
	metaDir    = "meta"
	packsDir   = "packs"
	// stagingDir holds, in the replica of a repository in an object
	// store, the packs being written before they are sent.
	stagingDir = "staging"
)

// Info is what the marker file of a repository records.
type Info struct {
	Format  int       `json:"format"`
	ID      string    `json:"id"`
	Region  string    `json:"region"`
	Created time.Time `json:"created"`
	// Replica, in a repository in an object store, names this host's
	// replica of its metadata (Dir); it is in the marker of the replica
	// only.
	Replica string `json:"replica,omitempty"`
	// Encryption names the scheme an encrypted repository is sealed
	// with (EncryptionScheme); "" for one that is not.
	Encryption string `json:"encryption,omitempty"`
	// Dir is the repository's directory: where it was found, not stored.
	Dir string `json:"-"`
}

// Options configure Open and Init.
type Options struct {
	// Dir is the repository directory.
	Dir string
	// Logger receives the store's log lines; nil discards them.
	Logger *slog.Logger
	// Purpose says what the opening process is doing; another process that
	// finds the repository locked names it in its error.
	Purpose string
	// Command is what the lock of an encrypted repository says instead
	// of Purpose, which may name volumes and snapshots: the command alone
	// (default "chainfs").
	Command string
	// Region labels a repository at Init (default "local").
	Region string
	// Compression is a new repository's compression, at Init (default
	// DefaultCompression).
	Compression Compression
	// Encrypt makes an encrypted repository, at Init: its key opens with
	// the password Password gives.
	Encrypt bool
	// Password gives the password of an encrypted repository, asked only
	// when the repository is encrypted; a cancelled ctx ends the asking.
	Password func(ctx context.Context) ([]byte, error)
	// PackSize is the size at which a pack file is finished and the next
	// begun (default 256 MiB; tests use small packs).
	PackSize int64
	// MetadataCache is the memory kept for metadata read from disk
	// (default DefaultMetadataCache).
	MetadataCache int64
	// Remote, if set, places the repository in an object store: its
	// packs (NewObjectPacks) and its metadata, as a journal
	// of commits (journal.go); Dir then holds this host's replica of the
	// metadata, which Open makes from the object store when it is empty.
	Remote *Remote
	// Host names this host in a repository in an object store: the
	// volumes it adds are its own (Volume.Host). Default: the host name.
	Host string
	// BlockCache, in a repository in an object store, is how many bytes
	// of the packs read from it this host keeps on its disk, beside the
	// replica (default DefaultBlockCache; negative: none).
	BlockCache int64
	// LeaseTerm, in a repository in an object store, is how long a host's
	// hold on work it marked on a volume lasts unrenewed, before another
	// host may take the work over (default DefaultLeaseTerm; lease.go).
	LeaseTerm time.Duration
	// LockWait is how long Open waits for another process to let go of
	// the repository before it gives up with ErrInUse (default: not at
	// all). A daemon started right after the last one was unmounted
	// waits for it to finish closing.
	LockWait time.Duration
}

// DefaultBlockCache is Options.BlockCache's default: room for a working
// set of a few snapshots' reads, small beside a disk.
const DefaultBlockCache = 4 << 30

// DefaultMetadataCache is Options.MetadataCache's default.
const DefaultMetadataCache = 64 << 20

// Repo is an open repository. One process holds it at a time; within that
// process it is safe for concurrent use.
type Repo struct {
	dir    string
	info   Info
	db     *badger.DB
	blocks BlockStore
	// keys are an encrypted repository's (crypt.go); nil for one that
	// is not.
	keys *keyring
	// ids names blocks and blobs: keyed when encrypted.
	ids Hasher
	// journal, in a repository in an object store, sends every commit
	// there; nil otherwise.
	journal *journal
	lock    *os.File
	log     *slog.Logger
	// packSize is Options.PackSize.
	packSize int64
	// host is Options.Host.
	host string
	// memtable is the size of badger's memtables (memtableSize).
	memtable uint64

	// commitMu serialises the steps that change shared block state (block
	// records, reference counts, intervals) so concurrent snapshots of
	// different volumes cannot lose each other's updates. It is never held
	// while reading a source.
	commitMu sync.Mutex
	// gcMu keeps gc and snapshots apart (gclock.go).
	gcMu gcLock
	// verifyFailures counts blocks and trees that failed their hash check.
	verifyFailures atomic.Uint64
	// places remembers where blocks were read from (ReadBlock).
	places *placeCache
	// commits counts committed snapshots, so that reclaiming an aborted
	// writer's trees can tell whether anything could have linked them.
	commits atomic.Uint64

	mu      sync.Mutex
	running map[string]string // volume name → snapshot being made
	watcher Watcher
	// unmergeable are packs a merge of small packs left in place for a
	// damaged block (check names them): merging them again would copy
	// their healthy blocks once more each time, and never remove them.
	unmergeable map[uint64]bool
}

// SnapshotEnd is how a snapshot of a volume that had begun ended.
type SnapshotEnd struct {
	Volume string
	Name   string
	Auto   bool
	// Snapshot is the committed snapshot; nil when it failed or was
	// aborted.
	Snapshot *Snapshot
	// Took is the time from BeginSnapshot to the end.
	Took time.Duration
}

// Watcher hears of what changes in the repository. Its funcs, either of
// which may be nil, run on the goroutine that made the change, after the
// change is durable and outside every lock of the store, and must not
// block.
type Watcher struct {
	// Changed hears that a snapshot of a volume was committed or deleted,
	// a volume added, changed or removed (snapshot empty), or an image
	// made, changed or removed (volume empty, snapshot the image's name).
	Changed func(volume, snapshot string)
	// SnapshotEnded hears how each snapshot of a volume that had begun
	// ended, committed or given up (for logs and metrics).
	SnapshotEnded func(SnapshotEnd)
}

// Watch sets the repository's watcher; the zero Watcher stops it.
func (r *Repo) Watch(w Watcher) {
	r.mu.Lock()
	r.watcher = w
	r.mu.Unlock()
}

func (r *Repo) changed(volume, snapshot string) {
	if name, ok := imageNamed(volume); ok {
		volume, snapshot = "", name
	}
	r.mu.Lock()
	fn := r.watcher.Changed
	r.mu.Unlock()
	if fn != nil {
		fn(volume, snapshot)
	}
}

// spaceUsed is what the repository takes on disk.
// In an object store it is the packs there (a listing), not the host's
// replica and cache.
func (r *Repo) spaceUsed() (int64, error) {
	if r.journal != nil {
		return r.blocks.Size(context.Background())
	}
	return dirSize(r.dir)
}

// DefaultRegion is the region of a repository made without --region.
const DefaultRegion = "local"

// Init creates a repository in opts.Dir, which must not exist or be empty.
func Init(ctx context.Context, opts Options) (_ *Info, err error) {
	if opts.Compression != "" {
		if _, err := ParseCompression(string(opts.Compression)); err != nil {
			return nil, err
		}
	}
	dir := opts.Dir
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return nil, fmt.Errorf("init %s: exists and is not a directory: %w", dir, ErrExists)
		}
		names, err := readDirNames(dir)
		if err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
		if len(names) > 0 {
			if _, err := os.Stat(filepath.Join(dir, markerFile)); err == nil && opts.Remote != nil {
				return nil, fmt.Errorf("init: %s: a repository is already there (this host holds a replica of it): %w", opts.Remote.infoKey(), ErrExists)
			} else if err == nil {
				return nil, fmt.Errorf("init %s: a repository is already there: %w", dir, ErrExists)
			}
			return nil, fmt.Errorf("init %s: directory is not empty: %w", dir, ErrExists)
		}
	}
	region := opts.Region
	if region == "" {
		region = DefaultRegion
	}
	if !ValidLabel(region) {
		return nil, fmt.Errorf("region %q: use letters, digits, '.', '_' and '-': %w", region, ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	if err := CheckTrusted(dir); err != nil {
		return nil, err
	}
	var id [16]byte
	rand.Read(id[:])
	info := Info{Format: FormatVersion, ID: hex.EncodeToString(id[:]), Region: region, Created: time.Now().UTC(), Dir: dir}
	if opts.Remote != nil {
		// The replica's directory was made here, empty: it goes again
		// if init fails, so that running init again finds none.
		defer func() {
			if err != nil {
				os.RemoveAll(dir)
			}
		}()
		j := journal{remote: *opts.Remote}
		if _, err := opts.Remote.Objects.Stat(ctx, opts.Remote.infoKey()); err == nil {
			return nil, fmt.Errorf("init: %s: a repository is already there: %w", opts.Remote.infoKey(), ErrExists)
		}
		if j.sent(ctx, 1) {
			return nil, fmt.Errorf("init: %s holds journal entries but no repository record (%s): what is left of a repository removed in part; remove them or choose another prefix: %w",
				j.key(1), opts.Remote.infoKey(), ErrExists)
		}
	}
	var keys *keyring
	if opts.Encrypt {
		// The first key goes before the record: a repository without a
		// key could never be opened.
		var key *keyFile
		if keys, key, err = newKeys(ctx, info, opts); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
		if err := keyPlaceOf(opts).write(ctx, key); err != nil {
			return nil, fmt.Errorf("init %s: key: %w", dir, err)
		}
		info.Encryption = EncryptionScheme
	}
	if opts.Remote != nil {
		if err := putRemoteInfo(ctx, *opts.Remote, info); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		info.Replica = newReplicaID()
	}
	r, err := openDB(dir, opts, info, keys, nil)
	if err != nil {
		return nil, err
	}
	err = r.commit(ctx, func(m metaTxn) error {
		if err := m.setJSON(compressionKey, cmp.Or(opts.Compression, DefaultCompression)); err != nil {
			return err
		}
		return m.setSchema(SchemaVersion)
	})
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	// The marker is written last: a directory without it is not a
	// repository, so an interrupted init can simply be run again.
	if err == nil {
		err = writeMarker(dir, info)
	}
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	return &info, nil
}

// writeMarker writes the marker file, under a temporary name renamed
// into place, and makes it durable.
func writeMarker(dir string, info Info) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := filepath.Join(dir, markerFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, markerFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

// ReadInfo reads the marker record of the repository in dir without
// opening it: its format, id and region.
func ReadInfo(dir string) (*Info, error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s: no repository here (run 'chainfs init'): %w", dir, ErrNotRepository)
	case err != nil:
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	case !st.IsDir():
		return nil, fmt.Errorf("%s: is a file, not a repository: %w", dir, ErrNotRepository)
	}
	b, err := os.ReadFile(filepath.Join(dir, markerFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: no repository here (run 'chainfs init'): %w", dir, ErrNotRepository)
	} else if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("%s: unreadable %s: %w", dir, markerFile, ErrCorrupt)
	}
	if info.Format != FormatVersion {
		return nil, fmt.Errorf("%s: format version %d, this chainfs reads version %d: %w", dir, info.Format, FormatVersion, ErrFormat)
	}
	info.Dir = dir
	return &info, nil
}

// Open opens the repository in opts.Dir, takes its lock and finishes or
// undoes whatever a crashed process left half done.
func Open(ctx context.Context, opts Options) (*Repo, error) {
	dir := opts.Dir
	info, err := ReadInfo(dir)
	attaching := errors.Is(err, ErrNotRepository) && opts.Remote != nil
	if attaching {
		info, err = readRemoteInfo(ctx, *opts.Remote)
	}
	if err != nil {
		return nil, err
	}
	if info.Encryption != "" && info.Encryption != EncryptionScheme {
		return nil, fmt.Errorf("%s: encrypted as %q, which this chainfs does not know: %w", dir, info.Encryption, ErrFormat)
	}
	if info.Replica != "" && opts.Remote == nil {
		// Commits made to it alone would never reach the bucket.
		return nil, fmt.Errorf("%s is a host's replica of a repository in a bucket, not a repository: name the bucket (--repo s3://BUCKET/PREFIX): %w", dir, ErrInvalid)
	}
	// The directory is checked and locked before a password is asked or
	// a key file read: a repository another process holds (its daemon)
	// answers ErrInUse at once, and root reads no key file of a
	// directory another user could change.
	purpose := lockPurpose(opts, info.Encryption != "")
	var lock *os.File
	if !attaching {
		if err := CheckTrusted(dir); err != nil {
			return nil, err
		}
		if lock, err = lockWaiting(dir, purpose, opts.LockWait); err != nil {
			return nil, err
		}
	}
	var keys *keyring
	if info.Encryption != "" {
		if keys, _, _, err = unlock(ctx, opts, *info); err != nil {
			if lock != nil {
				lock.Close()
			}
			return nil, fmt.Errorf("open repository %s: %w", dir, err)
		}
	}
	if attaching {
		if info, err = attach(ctx, opts, *info, keys); err != nil {
			return nil, err
		}
		if lock, err = lockWaiting(dir, purpose, opts.LockWait); err != nil {
			return nil, err
		}
	}
	r, err := openDB(dir, opts, *info, keys, lock)
	if err != nil {
		return nil, err
	}
	if r.journal != nil {
		if err := r.openJournal(ctx, *info); err != nil {
			r.Close()
			return nil, err
		}
	}
	if err := r.checkSchema(ctx); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.recover(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: recovery: %w", dir, err)
	}
	return r, nil
}

// openDB opens the metadata and the packs of the repository in dir with
// lock held (nil: it takes it).
func openDB(dir string, opts Options, info Info, keys *keyring, lock *os.File) (*Repo, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var err error
	if lock == nil {
		if lock, err = lockWaiting(dir, lockPurpose(opts, keys != nil), opts.LockWait); err != nil {
			return nil, err
		}
	}
	if err := dropUninitialisedLogs(filepath.Join(dir, metaDir), log); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	// badger.Open panics, on a goroutine of its own, over a table whose
	// footer is damaged: the tables are checked first.
	if err := checkTables(filepath.Join(dir, metaDir), metaKeyOf(keys), false); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	memtable := memtableSize(filepath.Join(dir, metaDir), opts.Remote != nil)
	bopts := badger.DefaultOptions(filepath.Join(dir, metaDir)).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(memtable).
		// Values larger go to the value log; a batch must hold one.
		WithValueThreshold(min(1<<20, memtable*15/100/2)).
		WithNumMemtables(3).
		WithBlockCacheSize(cmp.Or(opts.MetadataCache, DefaultMetadataCache)).
		WithValueLogFileSize(256 << 20).
		WithNumVersionsToKeep(1).
		WithCompactL0OnClose(true).
		// Every table badger builds (a memtable's flush, a compaction's
		// output) takes pooled arenas several times its size: a value
		// larger than a table block (a directory's tree) grows the
		// block's buffer by doubling, and the compressed copy of each
		// block takes another. At a big snapshot's commit that was most
		// of the process's memory. With blocks of 16 KiB, uncompressed
		// (the keys are hashes, which do not compress: the tables take
		// about 1.5 times the room) and two compactions at a time, a
		// first snapshot of 400,000 files peaks at 255-277 MiB, not
		// 511, and takes no longer, nor does a listing of it
		// (docs/benchmarks.md, "Snapshot memory"). Tables written
		// otherwise before still read.
		WithBlockSize(16 << 10).
		WithCompression(options.None).
		WithNumCompactors(2).
		// Table blocks carry checksums; check them on every read from
		// disk, so damaged metadata is an error, not altered keys.
		WithChecksumVerificationMode(options.OnBlockRead)
	// Tables of every level of one size (2 MiB), where each level's were
	// twice the size of the level above's: a compaction deep in the tree
	// of millions of files' metadata built tables, and so arenas, of tens
	// of MiB each (a first snapshot of 2,000,000 files peaked at 677 MiB,
	// 466 so; 400,000 files no slower). More, smaller table files.
	bopts.TableSizeMultiplier = 1
	if keys != nil {
		// badger seals every table, value log and write-ahead log
		// with data keys of its own, kept sealed with this one.
		// It keeps the indexes of sealed tables opened in a cache
		// (it has none without one): room for those of tens of
		// millions of records.
		bopts = bopts.WithEncryptionKey(keys.meta[:]).WithIndexCacheSize(64 << 20)
	}
	db, err := openBadger(bopts)
	if err != nil {
		lock.Close()
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrDamagedMetadata) {
			return nil, fmt.Errorf("open repository %s: %w", dir, err)
		}
		return nil, fmt.Errorf("open repository %s: metadata: %v: %w", dir, err, ErrCorrupt)
	}
	var blocks BlockStore
	switch {
	case opts.Remote != nil:
		var cache *chunkCache
		if limit := cmp.Or(opts.BlockCache, DefaultBlockCache); limit > 0 {
			if cache, err = openChunkCache(filepath.Join(dir, chunkFiles), limit); err != nil {
				break
			}
		} else {
			os.RemoveAll(filepath.Join(dir, chunkFiles))
		}
		blocks, err = newObjectPacks(opts.Remote.Objects, opts.Remote.Prefix, filepath.Join(dir, stagingDir), cache)
	default:
		blocks, err = NewPackDir(filepath.Join(dir, packsDir))
	}
	if err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	packSize := opts.PackSize
	if packSize <= 0 {
		packSize = defaultPackSize
	}
	r := &Repo{dir: dir, info: info, db: db, blocks: blocks, places: newPlaceCache(), lock: lock, log: log, packSize: packSize, memtable: uint64(memtable),
		running: map[string]string{}, host: opts.Host, keys: keys}
	if keys != nil {
		r.ids = keys.ids
	}
	if r.host == "" {
		r.host, _ = os.Hostname()
	}
	if opts.Remote != nil {
		r.journal = &journal{remote: *opts.Remote, leaseTerm: cmp.Or(opts.LeaseTerm, DefaultLeaseTerm), keys: keys}
		if err := r.view(func(txn *badger.Txn) (err error) { r.journal.applied, err = readApplied(txn); return err }); err != nil {
			r.Close()
			return nil, fmt.Errorf("open repository %s: %w", dir, err)
		}
	}
	return r, nil
}

// openBadger is badger.Open, with a panic on the calling goroutine (badger
// reading a damaged file) turned into an error.
func openBadger(opts badger.Options) (db *badger.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("badger failed reading a damaged file: %s: %w", firstLine(fmt.Sprint(p)), ErrDamagedMetadata)
		}
	}()
	return badger.Open(opts)
}

// badgerLogHeader is the size of the header badger writes at the start of
// a value-log or memtable file before any entry.
const badgerLogHeader = 20

// dropUninitialisedLogs removes badger log files (.vlog, .mem) that a
// process killed at the wrong moment created and sized but never gave
// their header: badger refuses to open such a file. Without a header a
// file holds no entry (badger writes the header first), and badger finds
// these files by listing, so removing one loses nothing.
func dropUninitialisedLogs(dir string, log *slog.Logger) error {
	names, err := readDirNames(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, n := range names {
		if !strings.HasSuffix(n, ".vlog") && !strings.HasSuffix(n, ".mem") {
			continue
		}
		path := filepath.Join(dir, n)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		head := make([]byte, badgerLogHeader)
		k, _ := f.ReadAt(head, 0)
		f.Close()
		blank := true
		for _, b := range head[:k] {
			if b != 0 {
				blank = false
				break
			}
		}
		if blank {
			log.Warn("removing a metadata log file a crash left without its header", "file", path)
			if err := os.Remove(path); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockPurpose is the lock's text: what the process is doing, or, in an
// encrypted repository, whose lock is readable without the key, only its
// command (opts.Command), not what it runs on.
func lockPurpose(opts Options, encrypted bool) string {
	if encrypted {
		return cmp.Or(opts.Command, "chainfs")
	}
	return opts.Purpose
}

// lockWaiting is acquireLock, tried again for up to wait while another
// process holds the lock.
func lockWaiting(dir, purpose string, wait time.Duration) (*os.File, error) {
	lock, err := acquireLock(dir, purpose)
	for deadline := time.Now().Add(wait); errors.Is(err, ErrInUse) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		lock, err = acquireLock(dir, purpose)
	}
	return lock, err
}

// acquireLock takes the repository's lock file. The lock is an flock, so it
// dies with its process and kill -9 leaves no stale lock; the file's text
// names the holder for the error another process prints.
func acquireLock(dir, purpose string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	// Truncated and written: never through a symlink, a fifo or a hard
	// link to a file elsewhere that whoever could write the folder left.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink != 1 {
		f.Close()
		return nil, fmt.Errorf("open repository %s: %s is not a plain file of one link: %w", dir, path, ErrCorrupt)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %s: %w", dir, describeHolder(holder), ErrInUse)
		}
		return nil, fmt.Errorf("lock repository %s: %w", dir, err)
	}
	writeLockText(f, purpose)
	return f, nil
}

func writeLockText(f *os.File, purpose string) {
	f.Truncate(0)
	f.WriteAt([]byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), purpose)), 0)
}

func describeHolder(text []byte) string {
	pid, purpose, _ := strings.Cut(strings.TrimSpace(string(text)), "\n")
	if _, err := strconv.Atoi(pid); err != nil {
		return "held by another process"
	}
	if purpose == "" {
		return "held by process " + pid
	}
	return fmt.Sprintf("held by process %s (%s)", pid, purpose)
}

// Holder says what holds the repository, as another process trying to
// open it is told: "held by process N (snapshot v/s)".
func (r *Repo) Holder() string {
	text, err := os.ReadFile(r.lock.Name())
	if err != nil {
		return "held by process " + strconv.Itoa(os.Getpid())
	}
	return describeHolder(text)
}

// setActivity rewrites the lock file's description of what this process does.
func (r *Repo) setActivity(purpose string) {
	if r.keys != nil {
		// Its first word: what, not on what ("snapshot").
		purpose, _, _ = strings.Cut(purpose, " ")
	}
	writeLockText(r.lock, purpose)
}

// newKeys makes a new encrypted repository's master key and its first
// key file, with the password opts gives.
func newKeys(ctx context.Context, info Info, opts Options) (*keyring, *keyFile, error) {
	if opts.Password == nil {
		return nil, nil, fmt.Errorf("an encrypted repository needs a password: %w", ErrInvalid)
	}
	password, err := opts.Password(ctx)
	if err != nil {
		return nil, nil, err
	}
	master := make([]byte, masterKeySize)
	rand.Read(master)
	kf, err := wrapKey(info.ID, master, password)
	if err != nil {
		return nil, nil, err
	}
	keys, err := newKeyring(master)
	return keys, kf, err
}

func (r *Repo) checkSchema(ctx context.Context) error {
	return r.commit(ctx, func(m metaTxn) error {
		item, err := m.txn.Get(metaSchemaKey)
		if errors.Is(err, badger.ErrKeyNotFound) && r.journal != nil && r.journal.applied == 0 {
			// A repository's record in the bucket with an empty journal:
			// an init cut short between the two (its first commit is the
			// schema). Any host finishes it; of two, one entry wins.
			r.log.Info("finishing the repository's interrupted init", "repository", r.journal.remote.infoKey())
			return m.setSchema(SchemaVersion)
		}
		if errors.Is(err, badger.ErrKeyNotFound) {
			// badger shows a record in a damaged table as absent: name the
			// table, if that is why.
			if derr := r.verifyMetadata(); derr != nil {
				return derr
			}
			return fmt.Errorf("%s: no schema record: %w", r.dir, ErrCorrupt)
		} else if err != nil {
			return err
		}
		var s uint64
		if err := item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("%s: schema record: %w", r.dir, ErrCorrupt)
			}
			s = binary.BigEndian.Uint64(v)
			return nil
		}); err != nil {
			return err
		}
		switch s {
		case SchemaVersion, schemaChunked:
			return nil
		case 1:
			return m.setSchema(schemaChunked)
		}
		return fmt.Errorf("%s: metadata schema %d, this chainfs reads up to %d: %w", r.dir, s, SchemaVersion, ErrFormat)
	})
}

// Close releases the repository.
func (r *Repo) Close() error {
	r.gcMu.close()
	err := r.db.Close()
	r.blocks.Close()
	r.lock.Close()
	return err
}

// Info is the repository's marker record, and where it is.
func (r *Repo) Info() Info { return r.info }

// badgerLogger passes badger's warnings and errors to slog and drops its
// chatter.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// ValidLabel reports whether s is a safe name for a volume, a snapshot,
// an image, a policy or a region: 1–128 bytes of letters, digits, '.',
// '_', '-', '+', ':', '@', not starting with '.' or '-'.
func ValidLabel(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == '-' || c == '+' || c == ':' || c == '@':
		default:
			return false
		}
	}
	return true
}

// getJSON reads a JSON record; a missing key is ErrNotFound.
func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	} else if err != nil {
		return err
	}
	return getItemJSON(item, v)
}

func getItemJSON(item *badger.Item, v any) error {
	key := item.Key()
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("record %q: %v: %w", key, err, ErrCorrupt)
		}
		return nil
	})
}
