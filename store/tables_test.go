package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/y"
)

// damageBlockHolding overwrites bytes in the middle of the table block of
// every metadata table whose key range would hold key (badger's block
// checksums then fail), leaving the footer and index whole. It returns how
// many blocks it damaged.
func damageBlockHolding(t *testing.T, metaDir string, key []byte) int {
	t.Helper()
	tables, _ := filepath.Glob(filepath.Join(metaDir, "*.sst"))
	damaged := 0
	for _, path := range tables {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		end := len(data) - 4
		chkLen := int(binary.BigEndian.Uint32(data[end:]))
		end -= chkLen + 4
		idxLen := int(binary.BigEndian.Uint32(data[end:]))
		index := fb.GetRootAsTableIndex(data[end-idxLen:end], 0)
		var bo fb.BlockOffset
		n := index.OffsetsLength()
		for i := 0; i < n; i++ {
			index.Offsets(&bo, i)
			base := bo.KeyBytes()
			if bytes.Compare(base[:len(base)-8], key) > 0 {
				break
			}
			var next []byte
			if i+1 < n {
				var nb fb.BlockOffset
				index.Offsets(&nb, i+1)
				next = nb.KeyBytes()
				next = next[:len(next)-8]
			}
			if next != nil && bytes.Compare(next, key) <= 0 {
				continue
			}
			off := int64(bo.Offset()) + int64(bo.Len())/2
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{^data[off], ^data[off+1], ^data[off+2]}, off)
			f.Close()
			damaged++
			break
		}
	}
	return damaged
}

// TestDamagedPackRecordKeepsPack: a pack record in a metadata block that
// fails its checksum reads as absent; opening the repository must not take
// the pack file for an unfinished one and delete it, and says why it kept it.
func TestDamagedPackRecordKeepsPack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir() + "/repo"
	r := newRepoAt(t, dir, Options{})
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	snapFile(t, r, "v", block('A'), block('B'))
	// Records around the pack records ('o' before, 'q' after: no prefix
	// of the store's), so that they lie in a table block of their own,
	// apart from the schema record and the volume records.
	fillAround(t, r, "o", "q")
	packs, _ := r.blocks.List(context.Background())
	if len(packs) != 1 {
		t.Fatalf("%d packs, want 1", len(packs))
	}
	r.Close()

	if n := damageBlockHolding(t, filepath.Join(dir, metaDir), packKey(packs[0])); n == 0 {
		t.Fatal("no table block holds the pack record")
	}
	var log strings.Builder
	r, err := Open(ctx, Options{Dir: dir, Logger: testLogger(&log)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer r.Close()
	if _, err := os.Stat(filepath.Join(dir, packsDir, fmt.Sprintf("%016x.pack", packs[0]))); err != nil {
		t.Fatalf("pack file removed over a damaged pack record: %v", err)
	}
	if !strings.Contains(log.String(), "pack files without a pack record are kept") || !strings.Contains(log.String(), ".sst") {
		t.Errorf("open did not report why it kept the pack:\n%s", log.String())
	}
	if err := r.Index().VerifyMetadata(); !errors.Is(err, ErrDamagedMetadata) {
		t.Errorf("metadata verified: %v", err)
	}
	found, err := r.Index().PackProblems(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if p := fmt.Sprint(found); !strings.Contains(p, "no readable pack record names it") {
		t.Errorf("check problems: %v", found)
	}
	if _, err := r.GC(ctx); !errors.Is(err, ErrDamagedMetadata) {
		t.Errorf("gc over damaged metadata: %v, want ErrDamagedMetadata", err)
	}
	if _, err := os.Stat(filepath.Join(dir, packsDir, fmt.Sprintf("%016x.pack", packs[0]))); err != nil {
		t.Fatalf("pack file removed by gc over a damaged pack record: %v", err)
	}
}

// testLogger logs every level as text into b.
func testLogger(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestBadgerPanicIsAnError: a panic raised inside badger during a read is
// an ErrDamagedMetadata; a panic of the store's own code is not swallowed.
func TestBadgerPanicIsAnError(t *testing.T) {
	r := testRepo(t)
	err := r.view(func(*badger.Txn) error {
		y.BytesToU32([]byte{1}) // badger reading a number from a short slice
		return nil
	})
	if !errors.Is(err, ErrDamagedMetadata) {
		t.Fatalf("badger's panic: %v, want ErrDamagedMetadata", err)
	}
	defer func() {
		if p := recover(); p == nil {
			t.Error("a panic of the store's own code was swallowed")
		}
	}()
	r.view(func(*badger.Txn) error {
		var s []int
		_ = s[len(s)+1]
		return nil
	})
}

// fillAround writes records of random bytes under two key prefixes, so
// that the records between them lie in table blocks of their own.
func fillAround(t *testing.T, r *Repo, before, after string) {
	t.Helper()
	err := r.db.Update(func(txn *badger.Txn) error {
		for i := range 200 {
			for _, prefix := range []string{before, after} {
				v := make([]byte, 200)
				rand.Read(v)
				if err := txn.Set(fmt.Appendf(nil, "%s filler %03d", prefix, i), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRepairOverDamagedMetadata: with the block holding a snapshot's top
// tree damaged, the tree reads as missing; repair must not take the
// snapshot for lost and drop it, nor change anything else.
func TestRepairOverDamagedMetadata(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir() + "/repo"
	r := newRepoAt(t, dir, Options{})
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s := snapFile(t, r, "v", block('A'), block('B'))
	fillAround(t, r, "s", "u")
	r.Close()
	if n := damageBlockHolding(t, filepath.Join(dir, metaDir), treeKey(s.Root)); n == 0 {
		t.Fatal("no table block holds the top tree")
	}
	r, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer r.Close()
	mended := false
	err = r.Index().Mend(ctx, func(Mender) error { mended = true; return nil })
	if !errors.Is(err, ErrDamagedMetadata) || mended {
		t.Errorf("mending over damaged metadata: %v (mended %v), want ErrDamagedMetadata", err, mended)
	}
	if _, err := r.Snapshot(ctx, "v", s.Name); err != nil {
		t.Errorf("repair dropped the snapshot whose tree it could not read: %v", err)
	}
}

// TestMemtableSizeReplaysLargerLogs: metadata whose memtable logs were
// made for larger memtables (by an earlier chainfs that crashed) opens
// with memtables that hold them, whether badger has cut them to their data
// or not; otherwise 8 MiB, and 32 MiB for a replica of a repository in an
// object store.
func TestMemtableSizeReplaysLargerLogs(t *testing.T) {
	dir := t.TempDir()
	if got := memtableSize(dir, false); got != 8<<20 {
		t.Errorf("memtable %d, want 8 MiB", got)
	}
	if got := memtableSize(dir, true); got != 32<<20 {
		t.Errorf("memtable of a replica %d, want 32 MiB", got)
	}
	for _, size := range []int64{64 << 20, 17 << 20} { // as made, as cut
		if err := os.WriteFile(filepath.Join(dir, "00001.mem"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(dir, "00001.mem"), size); err != nil {
			t.Fatal(err)
		}
		if got := memtableSize(dir, false); got < size {
			t.Errorf("memtable %d with a log of %d", got, size)
		}
	}
}

// TestCompressedTablesStillRead: metadata tables written compressed, as
// chainfs wrote them before, read and check whole with compression off.
func TestCompressedTablesStillRead(t *testing.T) {
	dir := t.TempDir()
	open := func(c options.CompressionType) *badger.DB {
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithCompression(c))
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open(options.Snappy)
	err := db.Update(func(txn *badger.Txn) error {
		for i := range 1000 {
			if err := txn.Set(fmt.Appendf(nil, "key%04d", i), bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close() // flushes the memtable to a compressed table
	tables, err := manifestTables(dir)
	if err != nil || len(tables) == 0 || tables[0].compression != options.Snappy {
		t.Fatalf("tables %+v %v, want one compressed", tables, err)
	}
	if err := checkTables(dir, nil, true); err != nil {
		t.Fatal(err)
	}
	db = open(options.None)
	defer db.Close()
	err = db.View(func(txn *badger.Txn) error {
		for i := range 1000 {
			item, err := txn.Get(fmt.Appendf(nil, "key%04d", i))
			if err != nil {
				return err
			}
			if v, _ := item.ValueCopy(nil); !bytes.Equal(v, bytes.Repeat([]byte{byte(i)}, 100)) {
				return fmt.Errorf("key%04d reads %q", i, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
