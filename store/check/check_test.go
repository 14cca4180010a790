package check

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/storetest"
	"github.com/dgraph-io/badger/v4"
)

const testBS = storetest.BlockSize

// testRepo is a repository of volume v that tests may damage: reopen
// closes it, lets edit change its metadata as stored (the key schema of
// docs/format.md) and opens it again.
type testRepo struct {
	t   *testing.T
	dir string
	*store.Repo
}

func newRepo(t *testing.T) *testRepo {
	t.Helper()
	tr := &testRepo{t: t, dir: t.TempDir() + "/repo"}
	if _, err := store.Init(context.Background(), store.Options{Dir: tr.dir, Compression: store.CompressionOff}); err != nil {
		t.Fatal(err)
	}
	tr.open()
	t.Cleanup(func() { tr.Close() })
	if _, err := tr.AddVolume(context.Background(), store.Volume{Name: "v", Source: "/nowhere", BlockSize: testBS}); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr *testRepo) open() {
	r, err := store.Open(context.Background(), store.Options{Dir: tr.dir})
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.Repo = r
}

// edit changes the metadata with the repository closed.
func (tr *testRepo) edit(fn func(txn *badger.Txn) error) {
	tr.t.Helper()
	tr.Close()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(tr.dir, "meta")).WithLogger(nil))
	if err != nil {
		tr.t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		tr.t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tr.t.Fatal(err)
	}
	tr.open()
}

// setRefs sets the reference count in block h's record ('b' hash: its
// count is the big-endian u64 at bytes 21-28).
func (tr *testRepo) setRefs(h store.Hash, n uint64) {
	tr.edit(func(txn *badger.Txn) error {
		key := append([]byte{'b'}, h[:]...)
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint64(v[21:], n)
		return txn.Set(key, v)
	})
}

// dropTree deletes a tree blob ('t' hash).
func (tr *testRepo) dropTree(h store.Hash) {
	tr.edit(func(txn *badger.Txn) error { return txn.Delete(append([]byte{'t'}, h[:]...)) })
}

var block = storetest.Block

// snapFile commits a snapshot of v whose tree is one file "disk".
func (tr *testRepo) snapFile(blocks ...[]byte) *store.Snapshot {
	tr.t.Helper()
	return storetest.FileSnapshot(tr.t, tr.Repo, "v", blocks...)
}

func (tr *testRepo) flipByte(at int64) {
	tr.t.Helper()
	packs, _ := filepath.Glob(filepath.Join(tr.dir, "packs", "*.pack"))
	if len(packs) == 0 {
		tr.t.Fatal("no pack")
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{'!'}, at); err != nil {
		tr.t.Fatal(err)
	}
}

func problems(rep *Report) string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, p.String())
	}
	return strings.Join(out, "\n")
}

// TestCheckFindsDamage: a healthy repository checks clean; a wrong
// reference count, a flipped data byte (with ReadData) and a missing pack
// are each found and named.
func TestCheckFindsDamage(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	s1 := r.snapFile(block('A'), block('B'))
	if _, err := images.Create(ctx, r.Repo, "img", "v", s1.Name, images.Meta{}); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(ctx, r.Repo, Options{ReadData: true})
	if err != nil || len(rep.Problems) != 0 || rep.Snapshots != 1 || rep.Images != 1 || rep.BytesRead != 2*testBS || rep.Blocks != 2 || rep.Trees != 1 {
		t.Fatalf("healthy repository: %+v %v", rep, err)
	}

	// A wrong reference count.
	h := store.Sum(block('A'))
	r.setRefs(h, 7)
	rep, _ = Check(ctx, r.Repo, Options{})
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].What, "reference count 7, but 2 chain runs") {
		t.Errorf("wrong refs: %v", problems(rep))
	}
	r.setRefs(h, 2)

	// A flipped byte: found only when the data is read, named by path.
	r.flipByte(testBS + 10) // in block B
	if rep, _ := Check(ctx, r.Repo, Options{}); len(rep.Problems) != 0 {
		t.Errorf("metadata check found data damage: %v", problems(rep))
	}
	var progress []int
	rep, _ = Check(ctx, r.Repo, Options{ReadData: true, Progress: func(done, total int) { progress = append(progress, done, total) }})
	if got := problems(rep); len(rep.Problems) != 2 || !strings.Contains(got, "v/"+s1.Name+"/disk: block 1") ||
		!strings.Contains(got, "image img/image/disk: block 1") {
		t.Errorf("flipped byte: %q", got)
	}
	if len(progress) != 4 || progress[2] != 2 || progress[3] != 2 {
		t.Errorf("progress %v", progress)
	}

	// A missing pack.
	packs, _ := filepath.Glob(filepath.Join(r.dir, "packs", "*.pack"))
	os.Remove(packs[0])
	rep, _ = Check(ctx, r.Repo, Options{})
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0].What, "missing or short") {
		t.Errorf("missing pack (first: what the repository lacks comes before what it costs): %v", problems(rep))
	}
}

// TestCheckWhileSnapshotsCommit: a check that runs while snapshots commit
// sees each commit whole or not at all: no reference count is ever off.
func TestCheckWhileSnapshotsCommit(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	r.snapFile(block('a'))
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.snapFile(block('a'), block(byte(i)), block(byte(i+1)))
			n++
		}
	}()
	checks := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); checks++ {
		rep, err := Check(ctx, r.Repo, Options{})
		if err != nil {
			t.Error(err)
			break
		}
		if len(rep.Problems) > 0 {
			t.Errorf("check %d while snapshots commit: %s", checks, problems(rep))
			break
		}
	}
	close(stop)
	if n := <-done; n < 2 || checks < 2 {
		t.Errorf("%d snapshots and %d checks ran side by side: too few to tell", n, checks)
	}
}

// TestCheckMissingRun: a block whose chain run is gone is named, with
// its place in the file, as not covered by a run, and its reference count
// as off.
func TestCheckMissingRun(t *testing.T) {
	r := newRepo(t)
	s := r.snapFile(block('a'), block('b'))
	v, err := r.Volume(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	// The run of b ('i' volume:8 hash:32 start:8) goes.
	h := store.Sum(block('b'))
	key := binary.BigEndian.AppendUint64([]byte{'i'}, v.ID)
	key = binary.BigEndian.AppendUint64(append(key, h[:]...), s.Seq)
	r.edit(func(txn *badger.Txn) error { return txn.Delete(key) })
	rep, err := Check(context.Background(), r.Repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := problems(rep)
	if !strings.Contains(got, "v/"+s.Name+"/disk: block 1 ("+h.Short()+") has no chain run covering this snapshot") ||
		!strings.Contains(got, "block "+h.Short()+": reference count 1, but 0 chain runs") || len(rep.Problems) != 2 {
		t.Errorf("a block without its run: %s", got)
	}
}

// TestCheckLostTree: a directory that cannot be read is named, and check
// goes on; a cancelled check ends.
func TestCheckLostTree(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	s := r.snapFile(block('A'))
	r.dropTree(s.Root)
	rep, err := Check(ctx, r.Repo, Options{})
	if err != nil || !strings.Contains(problems(rep), "v/"+s.Name+"/: directory unreadable") {
		t.Errorf("lost tree: %q %v", problems(rep), err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Check(cctx, r.Repo, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled check: %v", err)
	}
}

// damageTable closes the repository, flips a byte early in each metadata
// table (inside its first block: Open reads only footers and indexes, so
// it opens) and opens it again.
func (tr *testRepo) damageTable() {
	tr.t.Helper()
	tr.Close()
	tables, _ := filepath.Glob(filepath.Join(tr.dir, "meta", "*.sst"))
	if len(tables) == 0 {
		tr.t.Fatal("no metadata table")
	}
	for _, p := range tables {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			tr.t.Fatal(err)
		}
		b := make([]byte, 1)
		f.ReadAt(b, 40)
		f.WriteAt([]byte{b[0] ^ 0xff}, 40)
		f.Close()
	}
	tr.open()
}

// TestDamagedMetadata: check says the metadata tables fail their
// checksums, and what --repair cannot do about it; repair changes
// nothing.
func TestDamagedMetadata(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	// Enough records for tables of several blocks: the first can be
	// damaged while the last, which Open reads, is whole.
	var blocks [][]byte
	for i := range 400 {
		b := block('x')
		binary.BigEndian.PutUint32(b, uint32(i))
		blocks = append(blocks, b)
	}
	s := r.snapFile(blocks...)
	r.damageTable()
	rep, err := Check(ctx, r.Repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0].What, "metadata tables fail their checksums") ||
		!strings.Contains(rep.Problems[0].What, MetadataRepairNote) {
		t.Errorf("check over damaged metadata: %s", problems(rep))
	}
	if _, err := Repair(ctx, r.Repo, noSource); !errors.Is(err, store.ErrDamagedMetadata) {
		t.Errorf("repair over damaged metadata: %v, want ErrDamagedMetadata", err)
	}
	if _, err := r.Snapshot(ctx, "v", s.Name); err != nil {
		t.Errorf("the snapshot after repair was refused: %v", err)
	}
}
