package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
)

// badger hides damage to a metadata table in two ways: a table whose
// footer is cut off or overwritten makes badger.Open panic on a goroutine
// of its own (no recover of ours can reach it), and a block that fails its
// checksum makes a read or an iteration find nothing, as if the keys in it
// did not exist. So the store checks table files itself: their footers and
// indexes before badger opens them, and every block before acting on the
// absence of a record (deleting a pack file no record names) and in check.

// checkTables checks every table the metadata's manifest names: with deep,
// every block against its checksum; without, the footer and index (what
// badger needs to open the table, a read of the index only). A damaged
// table is an error wrapping ErrDamagedMetadata and naming the file.
func checkTables(metaDir string, key []byte, deep bool) error {
	tables, err := manifestTables(metaDir)
	if err != nil {
		return err
	}
	var registry *badger.KeyRegistry
	var indexes *ristretto.Cache[uint64, *fb.TableIndex]
	if len(key) > 0 && len(tables) > 0 {
		// The data keys that seal the tables, themselves sealed with
		// key; read only.
		registry, err = badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: metaDir, ReadOnly: true, EncryptionKey: key})
		if err != nil {
			return fmt.Errorf("metadata key registry: %v: %w", err, ErrDamagedMetadata)
		}
		defer registry.Close()
		// badger keeps a sealed table's index opened in a cache, and
		// opens none without one.
		if indexes, err = ristretto.NewCache(&ristretto.Config[uint64, *fb.TableIndex]{NumCounters: 1 << 12, MaxCost: 16 << 20, BufferItems: 64}); err != nil {
			return err
		}
		defer indexes.Close()
	}
	for _, tf := range tables {
		var dataKey *pb.DataKey
		if tf.keyID != 0 {
			if registry == nil {
				return fmt.Errorf("metadata table %s is sealed, and the repository is not encrypted: %w", tf.path, ErrDamagedMetadata)
			}
			if dataKey, err = registry.DataKey(tf.keyID); err != nil || dataKey == nil {
				return fmt.Errorf("metadata table %s: its key %d is not in the key registry: %w", tf.path, tf.keyID, ErrDamagedMetadata)
			}
		}
		err := checkTableFile(tf.path, tf.compression, dataKey, indexes, deep)
		if errors.Is(err, errTableGone) {
			// A compaction of the open database may have replaced it
			// since the manifest was read: only a table the manifest
			// still names is missing.
			if again, merr := manifestTables(metaDir); merr == nil && !slices.Contains(again, tf) {
				continue
			}
			err = fmt.Errorf("metadata table %s is damaged: the file is missing: %w", tf.path, ErrDamagedMetadata)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// errTableGone: a table file the manifest named is not there.
var errTableGone = errors.New("table file missing")

type tableFile struct {
	path        string
	compression options.CompressionType
	// keyID is the data key that seals it; 0 when none does.
	keyID uint64
}

// manifestTables lists the table files badger's manifest names, in file
// order. Files the manifest does not name are left over from a compaction
// a crash cut short; badger deletes them at open, so they are not checked.
func manifestTables(metaDir string) ([]tableFile, error) {
	f, err := os.Open(filepath.Join(metaDir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // a new repository: badger makes it
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	mf, _, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(metaDir).WithLogger(nil))
	if err != nil {
		return nil, fmt.Errorf("metadata manifest %s: %v: %w", f.Name(), err, ErrDamagedMetadata)
	}
	var out []tableFile
	for id, tm := range mf.Tables {
		out = append(out, tableFile{path: table.NewFilename(id, metaDir), compression: tm.Compression, keyID: tm.KeyID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// checkTableFile opens one table read-only apart from badger, as badger
// opens it, and with deep reads every block. Its panics are badger's, on
// this goroutine, about this file: they are the finding.
func checkTableFile(path string, compression options.CompressionType, dataKey *pb.DataKey, indexes *ristretto.Cache[uint64, *fb.TableIndex], deep bool) (err error) {
	name := path
	damaged := func(what any) error {
		return fmt.Errorf("metadata table %s is damaged: %v: %w", name, what, ErrDamagedMetadata)
	}
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return errTableGone
	} else if err != nil {
		return fmt.Errorf("metadata table %s: %w", name, err)
	}
	if st.Size() < 8 {
		return damaged(fmt.Sprintf("%d bytes, too short for a table", st.Size()))
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("metadata table %s: %w", name, err)
	}
	defer mf.Close(-1)
	// badger panics instead of returning some errors, at either stage.
	finding := "truncated or overwritten: its index cannot be read"
	defer func() {
		if p := recover(); p != nil {
			err = damaged(finding)
		}
	}()
	opts := table.Options{
		// Opening reads the footer, the index (whose checksum badger
		// always checks) and the last block; deep reads every block.
		ChkMode:            options.OnBlockRead,
		Compression:        compression,
		BlockSize:          4 << 10,
		BloomFalsePositive: 0.01,
		DataKey:            dataKey,
		IndexCache:         indexes,
	}
	t, err := table.OpenTable(mf, opts)
	if err != nil {
		return damaged(err)
	}
	if deep {
		finding = "a block fails its checksum"
		if err := t.VerifyChecksum(); err != nil {
			return damaged(err)
		}
	}
	return nil
}

// firstLine is s up to its first line break with text (badger's panics
// carry pages of debugging output).
func firstLine(s string) string {
	for len(s) > 0 && (s[0] == '\n' || s[0] == ' ') {
		s = s[1:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// verifyMetadata checks every block of every metadata table of the open
// repository. It reads all of the metadata: it runs before acting on the
// absence of records and in check, not on every open.
func (r *Repo) verifyMetadata() error {
	return checkTables(filepath.Join(r.dir, metaDir), metaKeyOf(r.keys), true)
}

// view is r.db.View with a panic raised inside badger (reading a damaged
// table) turned into an error naming the table. A panic raised by the
// store's own code goes on: that is a bug to see. (Writes: commit.go.)
func (r *Repo) view(fn func(txn *badger.Txn) error) (err error) {
	defer r.recoverBadger(&err)
	return r.db.View(fn)
}

// recoverBadger, deferred, turns a panic that began inside badger into
// *errp, an ErrDamagedMetadata that names the damaged table when a check
// of the tables finds it.
func (r *Repo) recoverBadger(errp *error) {
	p := recover()
	if p == nil {
		return
	}
	if !panickedInBadger() {
		panic(p)
	}
	r.log.Error("badger panicked reading the metadata", "panic", firstLine(fmt.Sprint(p)))
	if err := r.verifyMetadata(); errors.Is(err, ErrDamagedMetadata) {
		*errp = err
		return
	}
	*errp = fmt.Errorf("badger failed reading the metadata: %s: %w", firstLine(fmt.Sprint(p)), ErrDamagedMetadata)
}

// panickedInBadger reports whether the panic being recovered was raised
// in badger (or its ristretto): below the panic, the first frame that is
// either badger's or this module's decides. Frames of the standard library
// badger called in between do not. Called from a deferred function, the
// stack still holds the frames that panicked.
func panickedInBadger() bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			inPanic = true
		case !inPanic:
		case strings.HasPrefix(f.Function, "github.com/dgraph-io/"):
			return true
		case strings.HasPrefix(f.Function, "github.com/chainfs/"):
			return false
		}
		if !more {
			return false
		}
	}
}

// metaKeyOf is the key of badger's encryption of the metadata; nil for a
// repository that is not encrypted.
func metaKeyOf(k *keyring) []byte {
	if k == nil {
		return nil
	}
	return k.meta[:]
}
