package s3_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/check"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/s3"
	"github.com/chainfs/chainfs/store/s3/s3test"
	"github.com/chainfs/chainfs/store/storetest"
)

func TestParseURL(t *testing.T) {
	for in, want := range map[string]s3.Location{
		"s3://bucket":              {Bucket: "bucket"},
		"s3://bucket/":             {Bucket: "bucket"},
		"s3://my.bucket-1/a/b.img": {Bucket: "my.bucket-1", Key: "a/b.img"},
	} {
		if got, err := s3.ParseURL(in); err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"s3://", "s3://ab", "s3://Bucket/x", "s3://-bucket", "s3://bucket-/x", "s3://buck_et", "https://b/x", "s3:/bucket"} {
		if _, err := s3.ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
		}
	}
	if got := (s3.Location{Bucket: "b1b", Key: "k/x"}).String(); got != "s3://b1b/k/x" {
		t.Errorf("String: %q", got)
	}
}

// open starts a MinIO server and returns a new bucket on it.
func open(t *testing.T) (*s3test.Server, *s3.Bucket) {
	t.Helper()
	srv := s3test.StartChosen(t)
	b := srv.Bucket(t, "chainfs-test")
	if err := b.Create(context.Background(), ""); err != nil {
		t.Fatalf("a second Create: %v", err)
	}
	return srv, b
}

// TestBucket: objects written are read back whole, by range and listed,
// and a missing one is ErrNotFound.
func TestBucket(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	if _, err := b.Put(ctx, "p/one", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "p/two", strings.NewReader("2"), 1); err != nil {
		t.Fatal(err)
	}
	rd, obj, err := b.Get(ctx, "p/one")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rd)
	rd.Close()
	if err != nil || !bytes.Equal(got, data) || obj.Size != int64(len(data)) || obj.ETag == "" {
		t.Fatalf("Get: %d bytes, %v, %+v", len(got), err, obj)
	}
	part := make([]byte, 7)
	if err := b.ReadAt(ctx, "p/one", part, 999_993); err != nil || string(part) != "3456789" {
		t.Errorf("ReadAt: %q %v", part, err)
	}
	if err := b.ReadAt(ctx, "p/one", make([]byte, 10), int64(len(data))-5); err == nil {
		t.Error("a read past the end succeeded")
	}
	var keys []string
	for o, err := range b.List(ctx, "p/") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, " ") != "p/one p/two" {
		t.Errorf("List: %q", keys)
	}
	if err := b.Remove(ctx, "p/two"); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, "p/two"); err != nil {
		t.Errorf("removing what is gone: %v", err)
	}
	if _, err := b.Stat(ctx, "p/two"); !errors.Is(err, s3.ErrNotFound) {
		t.Errorf("Stat of a removed object: %v", err)
	}
	if _, _, err := b.Get(ctx, "nothing"); !errors.Is(err, s3.ErrNotFound) {
		t.Errorf("Get of nothing: %v", err)
	}
}

// TestPutIfOneWins: of writers that all saw the same object, exactly one
// replaces it; the others fail with ErrChanged and write nothing.
func TestPutIfOneWins(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	first, err := b.PutIf(ctx, "head", []byte("0"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutIf(ctx, "head", []byte("x"), ""); !errors.Is(err, s3.ErrChanged) {
		t.Fatalf("a write of a new object over an existing one: %v", err)
	}
	const writers = 8
	var wg sync.WaitGroup
	won := make(chan string, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := string(rune('a' + i))
			if _, err := b.PutIf(ctx, "head", []byte(v), first.ETag); err == nil {
				won <- v
			} else if !errors.Is(err, s3.ErrChanged) {
				t.Errorf("writer %s: %v", v, err)
			}
		}()
	}
	wg.Wait()
	close(won)
	var winners []string
	for v := range won {
		winners = append(winners, v)
	}
	got := make([]byte, 1)
	if err := b.ReadAt(ctx, "head", got, 0); err != nil {
		t.Fatal(err)
	}
	if len(winners) != 1 || winners[0] != string(got) {
		t.Errorf("winners %q, the object holds %q", winners, got)
	}
}

// TestProbe: MinIO honours conditional writes and reads its writes.
func TestProbe(t *testing.T) {
	_, b := open(t)
	if err := b.Probe(context.Background(), "repo"); err != nil {
		t.Fatal(err)
	}
	for o, err := range b.List(context.Background(), "") {
		t.Errorf("the probe left %s behind (%v)", o.Key, err)
	}
}

// TestWrongCredentials: a wrong key says which settings to check.
func TestWrongCredentials(t *testing.T) {
	srv, _ := open(t)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey+"x")
	b, err := s3.Open("chainfs-test", s3.ConfigFromEnv())
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Stat(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("wrong secret: %v", err)
	}
}

// TestStalledEndpoint: a server that stops answering fails a read within
// the configured timeout, and serves again once it continues.
func TestStalledEndpoint(t *testing.T) {
	srv, _ := open(t)
	cfg := s3.ConfigFromEnv()
	cfg.Timeout = time.Second
	b, err := s3.Open("chainfs-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = b.ReadAt(ctx, "k", make([]byte, 1), 0)
	took := time.Since(start)
	if err == nil || took > 10*time.Second {
		t.Errorf("a read from a stopped server: %v after %s", err, took)
	}
	start = time.Now()
	_, err = b.Stat(ctx, "k")
	took = time.Since(start)
	if !errors.Is(err, s3.ErrTimeout) || took > 4*time.Second {
		t.Errorf("a HEAD to a stopped server: %v after %s, want ErrTimeout within 3 s", err, took)
	}
	srv.Resume()
	// An upload the server stops taking part-way: its writes block, and
	// no answer's timeout has begun.
	big, err := os.CreateTemp(t.TempDir(), "pack")
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	put := make(chan error, 1)
	go func() { _, err := b.Put(ctx, "big", big, 1<<30); put <- err }()
	time.Sleep(300 * time.Millisecond)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	select {
	case err = <-put:
		took = time.Since(start)
	case <-time.After(30 * time.Second):
		took = 30 * time.Second
	}
	srv.Resume()
	if !errors.Is(err, s3.ErrTimeout) || took > 10*time.Second {
		t.Errorf("an upload the server stopped taking: %v after %s, want ErrTimeout within a few seconds", err, took)
	}
	got := make([]byte, 1)
	if err := b.ReadAt(ctx, "k", got, 0); err != nil || string(got) != "v" {
		t.Errorf("after the server continued: %q %v", got, err)
	}
}

// TestObjectPacksConformance: packs as objects of a real bucket keep
// what the store relies on of a BlockStore, as pack files do.
func TestObjectPacksConformance(t *testing.T) {
	_, b := open(t)
	prefixes := 0
	storetest.BlockStoreConformance(t, func(t *testing.T) store.BlockStore {
		prefixes++
		bs, err := store.NewObjectPacks(b, fmt.Sprintf("repo%d/", prefixes), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return bs
	})
}

// TestRepositoryWithPacksInABucket: a repository in a real bucket
// sends its packs there, one object per pack, and keeps nothing staged;
// it reads every block back, collects garbage (a deleted snapshot's
// blocks only) and checks clean.
func TestRepositoryWithPacksInABucket(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	r := initRemote(t, b)
	if _, err := r.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	var data [][]byte
	for i := range 10 {
		data = append(data, storetest.Block(byte('a'+i)))
	}
	s1 := storetest.FileSnapshot(t, r, "v", data...)
	later := append(slices.Clone(data[5:]), storetest.Block('z'))
	s2 := storetest.FileSnapshot(t, r, "v", later...)
	var objects int
	for _, err := range b.List(ctx, "repo/packs/") {
		if err != nil {
			t.Fatal(err)
		}
		objects++
	}
	if objects < 4 {
		t.Errorf("%d pack objects in the bucket, want one per 3 blocks", objects)
	}
	if left, _ := os.ReadDir(filepath.Join(r.Info().Dir, "staging")); len(left) != 0 {
		t.Errorf("left staged: %v", left)
	}
	sameBlocks(t, r, s1, data)
	sameBlocks(t, r, s2, later)
	if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatal(err)
	}
	st, err := r.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BlocksFreed != 5 {
		t.Errorf("gc freed %d blocks, want the 5 only s1 held", st.BlocksFreed)
	}
	checkClean(t, r)
}

// remote is the repository at prefix repo/ of objs. The repositories of
// these tests are made with compression off: they count packs, objects
// and requests by the blocks' own sizes.
func remote(objs store.Objects) *store.Remote { return &store.Remote{Objects: objs, Prefix: "repo/"} }

// host opens a replica of the repository at prefix repo/ of b in dir, as
// a host with that cache does; it is closed when the test ends.
func host(t *testing.T, b *s3.Bucket, dir string) *store.Repo {
	t.Helper()
	r, err := store.Open(context.Background(), store.Options{Dir: dir, Remote: remote(b), PackSize: 3 * storetest.BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// initRemote makes a repository at prefix repo/ of b and opens it as the
// first host, whose replica is in a new directory.
func initRemote(t *testing.T, b *s3.Bucket) *store.Repo {
	t.Helper()
	dir := t.TempDir() + "/a"
	if _, err := store.Init(context.Background(), store.Options{Compression: store.CompressionOff, Dir: dir, Remote: remote(b)}); err != nil {
		t.Fatal(err)
	}
	return host(t, b, dir)
}

// twoHosts makes a repository with volumes v and w, opened by a first
// host and then a second.
func twoHosts(t *testing.T, b *s3.Bucket) (*store.Repo, *store.Repo) {
	t.Helper()
	a := initRemote(t, b)
	for _, n := range []string{"v", "w"} {
		if _, err := a.AddVolume(context.Background(), store.Volume{Name: n, Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
			t.Fatal(err)
		}
	}
	return a, host(t, b, t.TempDir()+"/b")
}

// checkClean fails t unless check, reading every block, finds nothing.
func checkClean(t *testing.T, r *store.Repo) {
	t.Helper()
	rep, err := check.Check(context.Background(), r, check.Options{ReadData: true})
	if err != nil || len(rep.Problems) > 0 {
		t.Errorf("check: %v %v", rep.Problems, err)
	}
}

// sameBlocks fails t unless every block of snapshot s reads back from r
// as want.
func sameBlocks(t *testing.T, r *store.Repo, s *store.Snapshot, want [][]byte) {
	t.Helper()
	ctx := context.Background()
	e, err := store.Lookup(ctx, r, &s.RootDir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := store.FileBlocks(ctx, r, e)
	if err != nil || len(hashes) != len(want) {
		t.Fatalf("%s: %d blocks, %v", s.Name, len(hashes), err)
	}
	buf := make([]byte, storetest.BlockSize)
	for i, h := range hashes {
		if n, err := r.ReadBlock(ctx, h, buf); err != nil || !bytes.Equal(buf[:n], want[i]) {
			t.Fatalf("%s block %d: %v", s.Name, i, err)
		}
	}
}

// TestRepositoryInABucket: a repository whose packs and metadata are in
// a real bucket. A second host with an empty replica reads every snapshot
// the first made, to the byte; a commit raced by the other host's is
// made after the other, which the replica has taken in; a replica deleted is made again from the bucket
// alone; a second init at the same place is refused.
func TestRepositoryInABucket(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	remote := remote(b)
	dirA, dirB := t.TempDir()+"/a", t.TempDir()+"/b"
	if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: dirA, Remote: remote}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: t.TempDir() + "/c", Remote: remote}); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second init at the same place: %v", err)
	}
	a := host(t, b, dirA)
	vol := store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}
	if _, err := a.AddVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	var data [][]byte
	for i := range 7 {
		data = append(data, storetest.Block(byte('a'+i)))
	}
	s1 := storetest.FileSnapshot(t, a, "v", data...)
	s2 := storetest.FileSnapshot(t, a, "v", data[2:]...)

	bh := host(t, b, dirB)
	snaps, err := bh.Snapshots(ctx, "v")
	if err != nil || len(snaps) != 2 {
		t.Fatalf("the second host sees %d snapshots (%v)", len(snaps), err)
	}
	sameBlocks(t, bh, s1, data)
	sameBlocks(t, bh, s2, data[2:])

	// A commits; B, behind, loses the race for the next entry, takes A's
	// commit in, and makes its own after it; then A, behind, does the
	// same with a deletion, whose references are planned in reads.
	s3 := storetest.FileSnapshot(t, a, "v", data[:1]...)
	if _, err := bh.AddVolume(ctx, store.Volume{Name: "w", Source: "/nowhere"}); err != nil {
		t.Fatalf("a commit behind another host's: %v", err)
	}
	if snaps, _ := bh.Snapshots(ctx, "v"); len(snaps) != 3 {
		t.Errorf("after its commit the second host sees %d snapshots, want 3", len(snaps))
	}
	sameBlocks(t, bh, s3, data[:1])
	if err := a.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatalf("a deletion behind another host's commit: %v", err)
	}

	// The second host's replica goes; the bucket alone makes it again.
	bh.Close()
	if err := os.RemoveAll(dirB); err != nil {
		t.Fatal(err)
	}
	again := host(t, b, dirB)
	vols, err := again.Volumes(ctx)
	if err != nil || len(vols) != 2 {
		t.Errorf("volumes after the replica was made again: %v %v", vols, err)
	}
	if snaps, _ := again.Snapshots(ctx, "v"); len(snaps) != 2 {
		t.Errorf("snapshots after the replica was made again: %d, want 2", len(snaps))
	}
	sameBlocks(t, again, s2, data[2:])
	checkClean(t, again)
}

// TestBigDeltaInABucket: a snapshot whose delta journal is larger than
// one journal entry and than a memtable of the local size holds (14,000
// blocks) commits, and another host's replica takes every entry in.
func TestBigDeltaInABucket(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	dirA := t.TempDir() + "/a"
	if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: dirA, Remote: remote(b)}); err != nil {
		t.Fatal(err)
	}
	a, err := store.Open(ctx, store.Options{Dir: dirA, Remote: remote(b)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	data := make([][]byte, 14000)
	for i := range data {
		data[i] = make([]byte, storetest.BlockSize)
		binary.LittleEndian.PutUint64(data[i], uint64(i))
	}
	s := storetest.FileSnapshot(t, a, "v", data...)
	bh := host(t, b, t.TempDir()+"/b")
	if snaps, err := bh.Snapshots(ctx, "v"); err != nil || len(snaps) != 1 {
		t.Fatalf("the second host sees %d snapshots (%v)", len(snaps), err)
	}
	sameBlocks(t, bh, s, data)
}

// TestHostsRacingCommits: two hosts add volumes at once, each running a
// refused commit again; every volume each added is there once, and both
// replicas end the same.
func TestHostsRacingCommits(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	hosts := []*store.Repo{initRemote(t, b), host(t, b, t.TempDir()+"/b")}
	const each = 15
	var wg sync.WaitGroup
	for i, r := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range each {
				v := store.Volume{Name: fmt.Sprintf("h%d-%d", i, n), Source: "/nowhere"}
				for {
					_, err := r.AddVolume(ctx, v)
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrChanged) {
						t.Errorf("%s: %v", v.Name, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	// Both replicas, brought up to date, and a new one show the same.
	var names []string
	for _, r := range append(hosts, host(t, b, t.TempDir()+"/new")) {
		if _, err := r.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		vols, err := r.Volumes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var these []string
		for _, v := range vols {
			these = append(these, v.Name)
		}
		names = append(names, strings.Join(these, " "))
	}
	if len(strings.Fields(names[0])) != 2*each || names[0] != names[1] || names[1] != names[2] {
		t.Errorf("volumes:\n%s\n%s\n%s", names[0], names[1], names[2])
	}
}

// TestOpenLeavesAnotherHostsWork: an image another host is making (its
// volume there, no snapshot yet) is not taken for the remains of a crash
// by a host that opens the repository meanwhile: it is still there to
// commit, and the opening host sees it once it is made.
func TestOpenLeavesAnotherHostsWork(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	a := initRemote(t, b)
	w, err := a.ImageVolumes().Begin(ctx, "img", nil, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	bh := host(t, b, t.TempDir()+"/b") // opens, and recovers what is its own
	root := storetest.PutRoot(t, w, storetest.PutFile(t, w, "disk", storetest.Block('x')))
	if _, err := w.Commit(ctx, root, store.SnapshotStats{}); err != nil {
		t.Fatalf("the image the other host opened beside: %v", err)
	}
	if _, err := bh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bh.ImageVolumes().Get(ctx, "img"); err != nil {
		t.Errorf("the second host does not see the image: %v", err)
	}
}

// lossy is a real bucket that calls fail with each conditional write's
// data once it has landed: a test's hook there (to stall the writer, or
// let another host commit meanwhile), whose error, if any, is the
// write's answer: its answer lost (a cancellation, a reset connection),
// or a retry of it refused.
type lossy struct {
	store.Objects
	fail func(data []byte) error
}

func (l lossy) PutIf(ctx context.Context, key string, data []byte, etag string) (store.Object, error) {
	obj, err := l.Objects.PutIf(ctx, key, data, etag)
	if err == nil && l.fail != nil {
		if ferr := l.fail(data); ferr != nil {
			return store.Object{}, ferr
		}
	}
	return obj, err
}

// TestLostAnswerIsNoLostCommit: a snapshot's commit that lands but whose
// answer is lost, or whose retry is refused as if another writer had
// won, is a commit made: the snapshot is there, on this host and the
// next, whole, and nothing it wrote is given back.
func TestLostAnswerIsNoLostCommit(t *testing.T) {
	for name, failure := range map[string]error{"lost answer": context.Canceled, "retry refused": s3.ErrChanged} {
		t.Run(name, func(t *testing.T) {
			_, b := open(t)
			ctx := context.Background()
			var armed atomic.Bool
			objs := lossy{Objects: b, fail: func(data []byte) error {
				if bytes.Contains(data, []byte("victim")) && armed.CompareAndSwap(true, false) {
					return failure
				}
				return nil
			}}
			remote := remote(objs)
			dir := t.TempDir() + "/a"
			if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: dir, Remote: remote}); err != nil {
				t.Fatal(err)
			}
			a, err := store.Open(ctx, store.Options{Dir: dir, Remote: remote})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if _, err := a.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			data := [][]byte{storetest.Block('a'), storetest.Block('b')}
			s := storetest.Commit(t, a, "v", store.SnapshotOptions{Name: "victim"}, func(w storetest.Writer) []store.Entry {
				return []store.Entry{storetest.PutFile(t, w, "disk", data...)}
			})
			if armed.Load() {
				t.Fatal("the failure was never injected")
			}
			other := host(t, b, t.TempDir()+"/b")
			sameBlocks(t, a, s, data)
			sameBlocks(t, other, s, data)
			checkClean(t, other)
		})
	}
}

// TestReplicaIsNoRepository: a host's replica named as a repository
// directory is refused, naming the bucket: commits to it alone would
// never reach the bucket.
func TestReplicaIsNoRepository(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	dir := t.TempDir() + "/a"
	if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: dir, Remote: remote(b)}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, store.Options{Dir: dir}); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "s3://") {
		t.Errorf("a replica opened as a repository: %v", err)
	}
}

// TestAbortKeepsAnotherHostsTree: an aborted snapshot gives back the
// trees it wrote, but not one that another host's committed snapshot
// holds too (trees are named by their content).
func TestAbortKeepsAnotherHostsTree(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	a, bh := twoHosts(t, b)
	w, err := a.BeginSnapshot(ctx, "v", store.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.PutRoot(t, w, storetest.PutFile(t, w, "disk", storetest.Block('q')))
	if _, err := bh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	s := storetest.FileSnapshot(t, bh, "w", storetest.Block('q'))
	if _, err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	a.Close() // gives back what the aborted writer wrote, when it can
	sameBlocks(t, host(t, b, t.TempDir()+"/c"), s, [][]byte{storetest.Block('q')})
}

// TestHostsInStepTakeNoSamePack: two hosts in step both start a pack, so
// they would send the same entry (the pack counter's next value) at the
// same number; the one whose write lost must not take the winner's
// entry for its own and write into the same pack. The loser commits after
// the winner, and both snapshots read back exactly.
func TestHostsInStepTakeNoSamePack(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	a, bh := twoHosts(t, b)
	wa, err := a.BeginSnapshot(ctx, "v", store.SnapshotOptions{Name: "sa"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wb, err := bh.BeginSnapshot(ctx, "w", store.SnapshotOptions{Name: "sb"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	fa := storetest.PutFile(t, wa, "disk", storetest.Block('a')) // a's pack takes the number
	perr := wb.PutBlock(ctx, store.Sum(storetest.Block('b')), storetest.Block('b'))
	sa, err := wa.Commit(ctx, storetest.PutRoot(t, wa, fa), store.SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	// b, behind a, commits after it, into a pack of its own.
	fb := storetest.PutFile(t, wb, "disk", storetest.Block('b'))
	sb, err := wb.Commit(ctx, storetest.PutRoot(t, wb, fb), store.SnapshotStats{})
	if err != nil {
		t.Fatalf("b's commit, behind a's: %v", err)
	}
	bh.Close()
	c := host(t, b, t.TempDir()+"/c")
	sameBlocks(t, c, sa, [][]byte{storetest.Block('a')})
	sameBlocks(t, c, sb, [][]byte{storetest.Block('b')})
	checkClean(t, c)
}

// TestDeletionRacedPlansAgain: as a deletion is marked, another host
// commits a snapshot holding a block the deletion gives back its last
// reference of. The deletion's first chunk of references, planned on the
// replica before it took that commit in, is refused and planned again:
// the deletion is made, the block keeps the other snapshot's reference,
// and the deletion's own half-done work never locked the volume.
func TestDeletionRacedPlansAgain(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	first := initRemote(t, b)
	for _, n := range []string{"v", "o"} {
		if _, err := first.AddVolume(ctx, store.Volume{Name: n, Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
			t.Fatal(err)
		}
	}
	s1 := storetest.FileSnapshot(t, first, "v", storetest.Block('a'), storetest.Block('b'))
	storetest.FileSnapshot(t, first, "v", storetest.Block('a'), storetest.Block('c'))
	dir := first.Info().Dir
	first.Close()
	other := host(t, b, t.TempDir()+"/b")
	var fired atomic.Bool
	objs := lossy{Objects: b, fail: func(data []byte) error {
		if bytes.Contains(data, []byte(`"deleting"`)) && fired.CompareAndSwap(false, true) {
			storetest.FileSnapshot(t, other, "o", storetest.Block('b'))
		}
		return nil
	}}
	a, err := store.Open(ctx, store.Options{Dir: dir, Remote: remote(objs)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatalf("the deletion: %v", err)
	}
	if !fired.Load() {
		t.Fatal("the other host's commit was never made")
	}
	checkClean(t, a)
	if _, err := a.GC(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := a.Snapshots(ctx, "o")
	if err != nil || len(snaps) != 1 {
		t.Fatalf("the other host's snapshots: %v %v", snaps, err)
	}
	sameBlocks(t, a, &snaps[0], [][]byte{storetest.Block('b')})
	checkClean(t, a)
}

// TestHostsSnapshotAtOnce: two hosts snapshot their own volumes at the
// same time, each snapshot holding blocks the other host's snapshots hold
// too, and each delete their oldest as they go. Every commit that loses
// the race for the next entry is made again on what won, so none fails;
// afterwards a new host reads every snapshot kept to the byte and check
// finds every block's references right.
func TestHostsSnapshotAtOnce(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	a, bh := twoHosts(t, b)
	const rounds = 6
	// blocks is round i's file on a host: a block of its own, one the
	// other host's round i holds too, and one every snapshot holds.
	blocks := func(own byte, i int) [][]byte {
		return [][]byte{storetest.Block(own + byte(i)), storetest.Block('0' + byte(i)), storetest.Block('s')}
	}
	made := map[string][]*store.Snapshot{}
	t.Run("hosts", func(t *testing.T) {
		for _, h := range []struct {
			name, vol string
			r         *store.Repo
			own       byte
		}{{"a", "v", a, 'a'}, {"b", "w", bh, 'A'}} {
			var snaps []*store.Snapshot
			t.Cleanup(func() { made[h.vol] = snaps })
			t.Run(h.name, func(t *testing.T) {
				t.Parallel()
				for i := range rounds {
					snaps = append(snaps, storetest.FileSnapshot(t, h.r, h.vol, blocks(h.own, i)...))
					if i >= 2 {
						if err := h.r.DeleteSnapshot(ctx, h.vol, snaps[i-2].Name); err != nil {
							t.Fatalf("round %d: delete: %v", i, err)
						}
					}
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	c := host(t, b, t.TempDir()+"/c")
	for vol, own := range map[string]byte{"v": 'a', "w": 'A'} {
		kept, err := c.Snapshots(ctx, vol)
		if err != nil || len(kept) != 2 {
			t.Fatalf("%s: %d snapshots kept (%v), want 2", vol, len(kept), err)
		}
		for i := rounds - 2; i < rounds; i++ {
			sameBlocks(t, c, made[vol][i], blocks(own, i))
		}
	}
	checkClean(t, c)
}

// stallOnce is a real bucket on which the first conditional write whose
// data holds marker lands and then stalls until resume is closed, holding
// up its host's every commit (lease renewals too): a host that froze, or
// lost the network, right after marking work on a volume. stalled is
// closed once it has.
type stallOnce struct {
	objs            lossy
	stalled, resume chan struct{}
}

func newStallOnce(b *s3.Bucket, marker string) *stallOnce {
	s := &stallOnce{stalled: make(chan struct{}), resume: make(chan struct{})}
	var once sync.Once
	s.objs = lossy{Objects: b, fail: func(data []byte) error {
		if bytes.Contains(data, []byte(marker)) {
			once.Do(func() { close(s.stalled); <-s.resume })
		}
		return nil
	}}
	return s
}

// leasedHost opens a replica in dir over objs whose leases last term.
func leasedHost(t *testing.T, objs store.Objects, dir string, term time.Duration) *store.Repo {
	t.Helper()
	r, err := store.Open(context.Background(), store.Options{Dir: dir, Remote: remote(objs),
		PackSize: 3 * storetest.BlockSize, LeaseTerm: term})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// waitLease refreshes r until volume's lease, as r sees it, has run out.
func waitLease(t *testing.T, r *store.Repo, volume string) {
	t.Helper()
	ctx := context.Background()
	if _, err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := r.Volume(ctx, volume)
	if err != nil {
		t.Fatal(err)
	}
	if v.Lease.IsZero() {
		t.Fatalf("volume %s has no lease: %+v", volume, v)
	}
	time.Sleep(time.Until(v.Lease) + 100*time.Millisecond)
}

// TestStalledSnapshotIsTakenOver: a host stalls right after marking its
// snapshot's chain update. While its lease holds, another host's work on
// the volume is refused; once it has run out, the other host takes the
// work over (undoes it) and snapshots the volume itself. When the first
// host wakes, it is fenced: its snapshot fails, it undoes nothing of the
// other's, and a third host reads both hosts' snapshots exactly.
func TestStalledSnapshotIsTakenOver(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	const term = 2 * time.Second
	first := initRemote(t, b)
	if _, err := first.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	s0 := storetest.FileSnapshot(t, first, "v", storetest.Block('a'), storetest.Block('b'))
	dir := first.Info().Dir
	first.Close()

	stall := newStallOnce(b, `"applying":`)
	a := leasedHost(t, stall.objs, dir, term)
	bh := leasedHost(t, b, t.TempDir()+"/b", term)
	failed := make(chan error, 1)
	go func() {
		w, err := a.BeginSnapshot(ctx, "v", store.SnapshotOptions{Name: "from-a"})
		if err == nil {
			var root store.Entry
			root, err = putFileRoot(ctx, w, storetest.Block('a'), storetest.Block('c'))
			if err == nil {
				_, err = w.Commit(ctx, root, store.SnapshotStats{})
			}
		}
		failed <- err
	}()
	<-stall.stalled
	defer close(stall.resume)

	if _, err := bh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bh.DeleteSnapshot(ctx, "v", s0.Name); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("work on the volume while the other host's lease holds: %v", err)
	}
	waitLease(t, bh, "v")
	sb := storetest.FileSnapshot(t, bh, "v", storetest.Block('a'), storetest.Block('d'))

	stall.resume <- struct{}{} // a's stalled write returns; a goes on
	if err := <-failed; err == nil || !strings.Contains(err.Error(), "took this work over") {
		t.Fatalf("the stalled host's snapshot: %v", err)
	}
	c := host(t, b, t.TempDir()+"/c")
	snaps, err := c.Snapshots(ctx, "v")
	if err != nil || len(snaps) != 2 || snaps[0].Name != s0.Name || snaps[1].Name != sb.Name {
		t.Fatalf("snapshots after the takeover: %v %v", snaps, err)
	}
	sameBlocks(t, c, s0, [][]byte{storetest.Block('a'), storetest.Block('b')})
	sameBlocks(t, c, sb, [][]byte{storetest.Block('a'), storetest.Block('d')})
	checkClean(t, c)
}

// putFileRoot stores a root holding one file, "disk", of blocks, through
// w, without a testing.T: for a writer on a goroutine of its own.
func putFileRoot(ctx context.Context, w *store.SnapshotWriter, blocks ...[]byte) (store.Entry, error) {
	hs := make([]store.Hash, len(blocks))
	for i, b := range blocks {
		hs[i] = store.Sum(b)
		if err := w.PutBlock(ctx, hs[i], b); err != nil {
			return store.Entry{}, err
		}
	}
	e := store.Entry{Name: "disk", Type: store.TypeRegular, Mode: 0o644, Size: uint64(len(blocks) * storetest.BlockSize), BlockSize: storetest.BlockSize, Nlink: 1}
	if err := e.SetBlocks(hs, func(b []byte) (store.Hash, error) { return w.PutTree(ctx, b) }); err != nil {
		return store.Entry{}, err
	}
	h, err := w.PutTree(ctx, store.EncodeTree([]store.Entry{e}))
	return store.Entry{Type: store.TypeDir, Mode: 0o755, Subtree: h}, err
}

// TestDeadHostsDeletionIsFinished: a host marks a deletion and stops for
// good. A host that opens the repository once the lease has run out
// finishes the deletion at open, so the volume is free again; the first
// host, if it ever wakes, finds its work taken over.
func TestDeadHostsDeletionIsFinished(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	const term = 2 * time.Second
	first := initRemote(t, b)
	if _, err := first.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	s1 := storetest.FileSnapshot(t, first, "v", storetest.Block('a'), storetest.Block('b'))
	s2 := storetest.FileSnapshot(t, first, "v", storetest.Block('a'), storetest.Block('c'))
	dir := first.Info().Dir
	first.Close()

	stall := newStallOnce(b, `"deleting":`)
	a := leasedHost(t, stall.objs, dir, term)
	failed := make(chan error, 1)
	go func() { failed <- a.DeleteSnapshot(ctx, "v", s1.Name) }()
	<-stall.stalled
	defer close(stall.resume)

	// A host opening while the lease holds leaves the work alone.
	early := leasedHost(t, b, t.TempDir()+"/early", term)
	if v, err := early.Volume(ctx, "v"); err != nil || v.Deleting == 0 {
		t.Fatalf("the deletion under way, seen by a host that opened meanwhile: %+v %v", v, err)
	}
	waitLease(t, early, "v")
	late := leasedHost(t, b, t.TempDir()+"/late", term)
	if v, err := late.Volume(ctx, "v"); err != nil || v.Deleting != 0 {
		t.Fatalf("the deletion, after a host opened past its lease: %+v %v", v, err)
	}
	snaps, err := late.Snapshots(ctx, "v")
	if err != nil || len(snaps) != 1 || snaps[0].Name != s2.Name {
		t.Fatalf("snapshots after the deletion was finished: %v %v", snaps, err)
	}
	sameBlocks(t, late, s2, [][]byte{storetest.Block('a'), storetest.Block('c')})
	storetest.FileSnapshot(t, late, "v", storetest.Block('d'))

	stall.resume <- struct{}{}
	if err := <-failed; err == nil || !strings.Contains(err.Error(), "took this work over") {
		t.Fatalf("the dead host's deletion, when it woke: %v", err)
	}
	checkClean(t, host(t, b, t.TempDir()+"/check"))
}

// cutOff is a real bucket whose journal entries never land: an endpoint
// lost right after the repository's record was written.
type cutOff struct{ store.Objects }

func (c cutOff) PutIf(ctx context.Context, key string, data []byte, etag string) (store.Object, error) {
	if strings.Contains(key, "/journal/") {
		return store.Object{}, errors.New("connection reset by peer")
	}
	return c.Objects.PutIf(ctx, key, data, etag)
}

// TestInterruptedInitIsFinished: an init cut off between the repository's
// record and its first commit leaves no replica behind, and the next
// host to open the repository finishes it; an init where a journal but no
// record is left (a repository removed in part) is refused.
func TestInterruptedInitIsFinished(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	dir := t.TempDir() + "/a"
	if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: dir, Remote: &store.Remote{Objects: cutOff{b}, Prefix: "repo/"}}); err == nil {
		t.Fatal("init with its first commit cut off succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed init's replica is left: %v", err)
	}
	a := host(t, b, dir)
	if _, err := a.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	s := storetest.FileSnapshot(t, a, "v", storetest.Block('a'))
	sameBlocks(t, host(t, b, t.TempDir()+"/b"), s, [][]byte{storetest.Block('a')})

	if err := b.Remove(ctx, "repo/chainfs.json"); err != nil {
		t.Fatal(err)
	}
	_, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: t.TempDir() + "/c", Remote: remote(b)})
	if !errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), "journal entries but no repository record") {
		t.Errorf("init over a journal left without its record: %v", err)
	}
}

// garbage leaves in the repository, through r, the trees and blocks of a
// snapshot of volume made of blocks and then deleted: what gc frees,
// unless a snapshot under way links it again.
func garbage(t *testing.T, r *store.Repo, volume string, blocks ...[]byte) {
	t.Helper()
	s := storetest.FileSnapshot(t, r, volume, blocks...)
	if err := r.DeleteSnapshot(context.Background(), volume, s.Name); err != nil {
		t.Fatal(err)
	}
}

// TestGCWaitsForAnotherHostsSnapshot: a snapshot under way on one host
// links blocks and trees that only a deleted snapshot held, which gc
// would free; gc on another host is refused while the snapshot holds its
// lease, naming it, and runs once it has committed. A snapshot begun on a
// host that then stopped for good keeps gc waiting only until its lease
// runs out. Every snapshot reads back exactly.
func TestGCWaitsForAnotherHostsSnapshot(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	const term = 2 * time.Second
	first, _ := twoHosts(t, b)
	dirA := first.Info().Dir
	first.Close()
	a := leasedHost(t, b, dirA, term)
	bh := leasedHost(t, b, t.TempDir()+"/gc", term)
	data := [][]byte{storetest.Block('x'), storetest.Block('y')}
	garbage(t, a, "v", data...)

	w, err := a.BeginSnapshot(ctx, "v", store.SnapshotOptions{Name: "relinks"})
	if err != nil {
		t.Fatal(err)
	}
	root, err := putFileRoot(ctx, w, data...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var held *store.LeaseHeldError
	if _, err := bh.GC(ctx); !errors.As(err, &held) || !strings.Contains(err.Error(), "a snapshot of v") {
		t.Fatalf("gc while another host's snapshot runs: %v", err)
	}
	s, err := w.Commit(ctx, root, store.SnapshotStats{})
	if err != nil {
		t.Fatal(err)
	}

	dead := leasedHost(t, b, t.TempDir()+"/dead", term)
	stopped, err := dead.BeginSnapshot(ctx, "w", store.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dead.Close() // its lease is renewed no more, and never given back
	defer stopped.Abort()
	if _, err := bh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bh.GC(ctx); !errors.As(err, &held) {
		t.Fatalf("gc while a stopped host's snapshot lease holds: %v", err)
	}
	time.Sleep(time.Until(held.Until) + 100*time.Millisecond)
	if _, err := bh.GC(ctx); err != nil {
		t.Fatalf("gc once the stopped host's lease ran out: %v", err)
	}
	c := host(t, b, t.TempDir()+"/c")
	sameBlocks(t, c, s, data)
	checkClean(t, c)
}

// TestSnapshotWaitsForAnotherHostsGC: gc on one host stalls right after
// taking its lease. A snapshot begun on another host waits for it (and
// gives up when its context ends); once the lease has run out, the
// snapshot begins, taking the lease from gc, and commits, linking what
// gc would have freed. When gc wakes it stops, and the snapshot reads
// back exactly.
func TestSnapshotWaitsForAnotherHostsGC(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	const term = 2 * time.Second
	first, _ := twoHosts(t, b)
	dirA := first.Info().Dir
	first.Close()
	a := leasedHost(t, b, dirA, term)
	data := [][]byte{storetest.Block('x'), storetest.Block('y')}
	garbage(t, a, "v", data...)

	stall := newStallOnce(b, `"what":"gc"`)
	gcHost := leasedHost(t, stall.objs, t.TempDir()+"/gc", term)
	gcDone := make(chan error, 1)
	go func() { _, err := gcHost.GC(ctx); gcDone <- err }()
	<-stall.stalled
	defer close(stall.resume)

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := a.BeginSnapshot(short, "v", store.SnapshotOptions{}); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("a snapshot begun while another host's gc holds its lease: %v", err)
	}
	s := storetest.FileSnapshot(t, a, "v", data...) // waits for the lease to run out

	stall.resume <- struct{}{}
	if err := <-gcDone; err == nil {
		t.Error("the stalled gc went on after its lease was taken")
	}
	c := host(t, b, t.TempDir()+"/c")
	sameBlocks(t, c, s, data)
	checkClean(t, c)
}

// packsThenCut is a real bucket that ends a copy (cancels it) once it has
// sent some packs whole: a connection lost, or a kill, part-way.
type packsThenCut struct {
	store.Objects
	packs  atomic.Int32
	after  int32
	cancel context.CancelFunc
}

func (p *packsThenCut) Put(ctx context.Context, key string, r io.Reader, size int64) (store.Object, error) {
	obj, err := p.Objects.Put(ctx, key, r, size)
	if err == nil && strings.Contains(key, "/packs/") && p.packs.Add(1) == p.after {
		p.cancel()
	}
	return obj, err
}

// TestCopyIntoABucketResumes: an image copy into a repository in a
// bucket, cut short after two of its packs were sent, leaves them there;
// the copy run again sends only what they lack, and the copy reads back
// exactly.
func TestCopyIntoABucketResumes(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	src, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: t.TempDir() + "/src"})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := store.Open(ctx, store.Options{Dir: src.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sr.Close()
	if _, err := sr.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	var data [][]byte
	for i := range 12 {
		data = append(data, storetest.Block(byte('a'+i)))
	}
	s := storetest.FileSnapshot(t, sr, "v", data...)
	img, err := images.Create(ctx, sr, "golden", "v", s.Name, images.Meta{Owner: 1000})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir() + "/dst"
	if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: dir, Remote: remote(b)}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cut := &packsThenCut{Objects: b, after: 2, cancel: cancel}
	dst, err := store.Open(ctx, store.Options{Dir: dir, Remote: remote(cut), PackSize: 3 * storetest.BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := imagefile.Copy(cctx, sr, img, dst, "golden", "src"); err == nil {
		t.Fatal("the copy cut short succeeded")
	}
	dst.Close()
	dst = host(t, b, dir)
	copied, st, err := imagefile.Copy(ctx, sr, img, dst, "golden", "src")
	if err != nil {
		t.Fatal(err)
	}
	if st.LinkedBlocks < 6 || st.Blocks+st.LinkedBlocks != 12 {
		t.Errorf("the copy run again sent %d blocks and linked %d; want the 6 or more already sent linked", st.Blocks, st.LinkedBlocks)
	}
	sameBlocks(t, host(t, b, t.TempDir()+"/c"), &copied.Snapshot, data)
	checkClean(t, dst)
}

// countingReads is a real bucket that counts its ranged reads of the
// objects whose keys hold match ("/packs/", "/journal/").
type countingReads struct {
	store.Objects
	match string
	reads atomic.Int64
}

func (c *countingReads) ReadAt(ctx context.Context, key string, p []byte, off int64) error {
	if strings.Contains(key, c.match) {
		c.reads.Add(1)
	}
	return c.Objects.ReadAt(ctx, key, p, off)
}

// TestBlockCache: a host reads a snapshot through its cache of the
// store's packs: a 4 MiB chunk per request, not a block; read again, it
// sends no request, also after the replica is opened anew; a chunk
// damaged on the host's disk is read from the store again, right; the
// cache keeps within its bound; check reads the store, not the cache.
func TestBlockCache(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	first := initRemote(t, b)
	if _, err := first.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	// 10 MiB in one pack (the test hosts' packs are small): three chunks.
	var data [][]byte
	for i := range 2560 {
		data = append(data, bytes.Repeat([]byte(fmt.Sprintf("%07d\n", i)), storetest.BlockSize/8))
	}
	first.Close()
	w, err := store.Open(ctx, store.Options{Dir: first.Info().Dir, Remote: remote(b), PackSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := storetest.FileSnapshot(t, w, "v", data...)
	w.Close()

	dir := t.TempDir() + "/reader"
	objs := &countingReads{Objects: b, match: "/packs/"}
	reader := func(limit int64) *store.Repo {
		r, err := store.Open(ctx, store.Options{Dir: dir, Remote: remote(objs), BlockCache: limit})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	r := reader(0)
	sameBlocks(t, r, s, data)
	if n := objs.reads.Load(); n != 3 {
		t.Errorf("a first read of 10 MiB sent %d ranged requests, want 3", n)
	}
	sameBlocks(t, r, s, data)
	r.Close()
	r = reader(0)
	sameBlocks(t, r, s, data)
	if n := objs.reads.Load(); n != 3 {
		t.Errorf("reads again, also after the replica was opened anew, sent %d requests in all, want 3", n)
	}

	chunks, _ := filepath.Glob(filepath.Join(dir, "chunks", "*"))
	if len(chunks) != 3 {
		t.Fatalf("chunk files: %v", chunks)
	}
	f, err := os.OpenFile(chunks[1], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("damage"), 4096*100+7)
	f.Close()
	sameBlocks(t, r, s, data)
	if n := objs.reads.Load(); n != 4 {
		t.Errorf("a damaged chunk: %d requests in all, want 4 (one for it)", n)
	}
	checkClean(t, r) // reads the store: every block a request
	if n := objs.reads.Load(); n < 4+2560 {
		t.Errorf("check --read-data sent %d requests, want one a block: it reads the store", n-4)
	}

	r.Close()
	r = reader(5 << 20) // room for one chunk
	sameBlocks(t, r, s, data)
	chunks, _ = filepath.Glob(filepath.Join(dir, "chunks", "*"))
	var held int64
	for _, c := range chunks {
		st, _ := os.Stat(c)
		held += st.Size()
	}
	if held > 5<<20 {
		t.Errorf("the cache holds %d bytes in %d chunks, bound 5 MiB", held, len(chunks))
	}
}

// TestCheckpoint: a new replica starts from the newest checkpoint and
// reads only the journal entries after it, and holds what a replica made
// from the whole journal holds; a damaged checkpoint is passed over for
// the whole journal; no checkpoint is written again until entries came.
func TestCheckpoint(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	a := initRemote(t, b)
	if _, err := a.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	var snaps []*store.Snapshot
	for i := range 5 {
		snaps = append(snaps, storetest.FileSnapshot(t, a, "v", storetest.Block(byte('a'+i)), storetest.Block('z')))
	}
	if err := a.DeleteSnapshot(ctx, "v", snaps[1].Name); err != nil {
		t.Fatal(err)
	}
	at, err := a.Checkpoint(ctx, true)
	if err != nil || at == 0 {
		t.Fatalf("checkpoint: %d %v", at, err)
	}
	if again, err := a.Checkpoint(ctx, true); err != nil || again != 0 {
		t.Errorf("a checkpoint with no entry since: %d %v", again, err)
	}
	last := storetest.FileSnapshot(t, a, "v", storetest.Block('f'))

	journal := &countingReads{Objects: b, match: "/journal/"}
	c, err := store.Open(ctx, store.Options{Dir: t.TempDir() + "/c", Remote: remote(journal)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := journal.reads.Load(); n == 0 || n >= int64(at) {
		t.Errorf("a replica from the checkpoint of entry %d read %d journal entries: want only the snapshot's after it", at, n)
	}
	for _, r := range []*store.Repo{c, a} {
		got, err := r.Snapshots(ctx, "v")
		if err != nil || len(got) != 5 {
			t.Fatalf("snapshots: %d %v", len(got), err)
		}
		sameBlocks(t, r, snaps[0], [][]byte{storetest.Block('a'), storetest.Block('z')})
		sameBlocks(t, r, last, [][]byte{storetest.Block('f')})
		checkClean(t, r)
	}

	// A checkpoint damaged in the bucket: passed over, the journal read.
	key := fmt.Sprintf("repo/checkpoints/%016x", at)
	obj, err := b.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, obj.Size)
	if err := b.ReadAt(ctx, key, data, 0); err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if _, err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	d := host(t, b, t.TempDir()+"/d")
	if got, err := d.Snapshots(ctx, "v"); err != nil || len(got) != 5 {
		t.Fatalf("after a damaged checkpoint: %d snapshots, %v", len(got), err)
	}
	sameBlocks(t, d, last, [][]byte{storetest.Block('f')})
	checkClean(t, d)
}

// pauseAt is a log handler that holds up, once, the goroutine that logs
// msg: at is closed then, and it goes on when resume is closed.
type pauseAt struct {
	msg        string
	at, resume chan struct{}
	once       *sync.Once
}

func (p pauseAt) Enabled(context.Context, slog.Level) bool { return true }
func (p pauseAt) Handle(_ context.Context, r slog.Record) error {
	if r.Message == p.msg {
		p.once.Do(func() { close(p.at); <-p.resume })
	}
	return nil
}
func (p pauseAt) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p pauseAt) WithGroup(string) slog.Handler      { return p }

// TestTakeoverUndoBesideOwnCommit: a host takes over another's snapshot
// whose lease ran out and undoes its chain update, while a snapshot of
// its own, of another volume holding the same block, commits: both
// change that block's references, and neither may plan over the other's
// (the undo runs under the commit lock, as every chain update). The
// block keeps every reference, and survives the deletion of one holder
// and gc.
func TestTakeoverUndoBesideOwnCommit(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	const term = 3 * time.Second
	first := initRemote(t, b)
	for _, n := range []string{"v", "o", "w"} {
		if _, err := first.AddVolume(ctx, store.Volume{Name: n, Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
			t.Fatal(err)
		}
	}
	x := storetest.Block('x')
	so := storetest.FileSnapshot(t, first, "o", x)
	vv, _ := first.Volume(ctx, "v")
	wv, _ := first.Volume(ctx, "w")
	dir := first.Info().Dir
	first.Close()
	hx := store.Sum(x)
	// The key of a volume's run of block x: an entry that holds it
	// updates x's references.
	run := func(id uint64) []byte { return append(binary.BigEndian.AppendUint64([]byte{'i'}, id), hx[:]...) }

	// Host B applies its snapshot of v's references and freezes.
	stalledB, resumeB := make(chan struct{}), make(chan struct{})
	var onceB sync.Once
	bh := leasedHost(t, lossy{Objects: b, fail: func(d []byte) error {
		if bytes.Contains(d, run(vv.ID)) {
			onceB.Do(func() { close(stalledB); <-resumeB })
		}
		return nil
	}}, t.TempDir()+"/b", term)
	go func() {
		w, err := bh.BeginSnapshot(ctx, "v", store.SnapshotOptions{Name: "from-b"})
		if err == nil {
			if root, err := putFileRoot(ctx, w, x); err == nil {
				w.Commit(ctx, root, store.SnapshotStats{})
			}
		}
	}()
	<-stalledB
	defer close(resumeB)

	// Host A: its snapshot of w commits x's references while, in the same
	// process, a takeover of B's work undoes them.
	var armed atomic.Bool
	stalledY, resumeY := make(chan struct{}), make(chan struct{})
	var onceY sync.Once
	undoAt, undo := make(chan struct{}), make(chan struct{})
	log := slog.New(pauseAt{msg: "undoing interrupted snapshot", at: undoAt, resume: undo, once: new(sync.Once)})
	a, err := store.Open(ctx, store.Options{Dir: dir, Remote: &store.Remote{Objects: lossy{Objects: b, fail: func(d []byte) error {
		if armed.Load() && bytes.Contains(d, run(wv.ID)) {
			onceY.Do(func() { close(stalledY); <-resumeY })
		}
		return nil
	}}, Prefix: "repo/"}, PackSize: 3 * storetest.BlockSize, LeaseTerm: term, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	waitLease(t, a, "v")
	wy, err := a.BeginSnapshot(ctx, "w", store.SnapshotOptions{Name: "from-a"})
	if err != nil {
		t.Fatal(err)
	}
	root, err := putFileRoot(ctx, wy, x)
	if err != nil {
		t.Fatal(err)
	}
	takeover := make(chan error, 1)
	go func() {
		w, err := a.BeginSnapshot(ctx, "v", store.SnapshotOptions{Name: "after-takeover"})
		if err == nil {
			w.Abort()
		}
		takeover <- err
	}()
	<-undoAt
	armed.Store(true)
	own := make(chan error, 1)
	go func() { _, err := wy.Commit(ctx, root, store.SnapshotStats{}); own <- err }()
	select {
	case <-stalledY: // the commit sent x's references before the undo
	case <-time.After(2 * time.Second): // or waits for it: the commit lock
	}
	close(undo)
	time.Sleep(time.Second)
	close(resumeY)
	if err := <-own; err != nil {
		t.Fatalf("the own snapshot: %v", err)
	}
	if err := <-takeover; err != nil {
		t.Fatalf("the takeover: %v", err)
	}
	c := host(t, b, t.TempDir()+"/c")
	checkClean(t, c)
	if err := c.DeleteSnapshot(ctx, "o", so.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GC(ctx); err != nil {
		t.Fatal(err)
	}
	snaps, err := c.Snapshots(ctx, "w")
	if err != nil || len(snaps) != 1 {
		t.Fatalf("w: %v %v", snaps, err)
	}
	sameBlocks(t, c, &snaps[0], [][]byte{x})
}

// TestSnapshotIntoRemadeVolume: a snapshot another host is making keeps
// other hosts from removing its volume (status 4) while its lease holds.
// Once the snapshot's host froze past it, the volume is removed and made
// again under the same name; when the host wakes, its commit is refused,
// and the new volume stays whole.
func TestSnapshotIntoRemadeVolume(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	const term = 2 * time.Second
	first := initRemote(t, b)
	if _, err := first.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	dir := first.Info().Dir
	first.Close()
	// The snapshot's host freezes at its lease's first renewal.
	var leases atomic.Int32
	frozen, wake := make(chan struct{}), make(chan struct{})
	a := leasedHost(t, lossy{Objects: b, fail: func(d []byte) error {
		if bytes.Contains(d, []byte(`"what":"a snapshot of v"`)) && leases.Add(1) == 2 {
			close(frozen)
			<-wake
		}
		return nil
	}}, dir, term)
	c := leasedHost(t, b, t.TempDir()+"/c", term)
	w, err := a.BeginSnapshot(ctx, "v", store.SnapshotOptions{Name: "from-a"})
	if err != nil {
		t.Fatal(err)
	}
	root, err := putFileRoot(ctx, w, storetest.Block('a'))
	if err != nil {
		t.Fatal(err)
	}
	c.Refresh(ctx)
	var held *store.LeaseHeldError
	if err := c.RemoveVolume(ctx, "v", true); !errors.As(err, &held) {
		t.Fatalf("removing a volume another host snapshots: %v", err)
	}
	<-frozen
	// The renewal the host froze at landed: the lease runs out after it.
	for i := 0; ; i++ {
		time.Sleep(time.Until(held.Until) + 100*time.Millisecond)
		c.Refresh(ctx)
		err := c.RemoveVolume(ctx, "v", true)
		if err == nil {
			break
		}
		if !errors.As(err, &held) || i == 3 {
			t.Fatalf("removing once the snapshot's lease ran out: %v", err)
		}
	}
	if _, err := c.AddVolume(ctx, store.Volume{Name: "v", Source: "/nowhere", BlockSize: storetest.BlockSize}); err != nil {
		t.Fatal(err)
	}
	close(wake)
	if _, err := w.Commit(ctx, root, store.SnapshotStats{}); err == nil {
		t.Fatal("a snapshot of the removed volume committed into the one made again")
	}
	d := host(t, b, t.TempDir()+"/d")
	if snaps, err := d.Snapshots(ctx, "v"); err != nil || len(snaps) != 0 {
		t.Errorf("the new volume's snapshots: %v %v", snaps, err)
	}
	storetest.FileSnapshot(t, d, "v", storetest.Block('b'))
	checkClean(t, d)
}

// TestVolumeBelongsToItsHost: a volume added on one host is that host's
// (its source is there): another host's snapshot of it is refused, saying
// where to take it, while images, which come from anywhere, are not.
func TestVolumeBelongsToItsHost(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	dir := t.TempDir() + "/a"
	if _, err := store.Init(ctx, store.Options{Compression: store.CompressionOff, Dir: dir, Remote: remote(b)}); err != nil {
		t.Fatal(err)
	}
	on := func(dir, name string) *store.Repo {
		r, err := store.Open(ctx, store.Options{Dir: dir, Remote: remote(b), Host: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	a := on(dir, "host-a")
	v, err := a.AddVolume(ctx, store.Volume{Name: "home", Source: "/home", BlockSize: storetest.BlockSize})
	if err != nil || v.Host != "host-a" {
		t.Fatalf("added: %+v %v", v, err)
	}
	bh := on(t.TempDir()+"/b", "host-b")
	got, _ := bh.Volume(ctx, "home")
	if !bh.OwnedElsewhere(got) || a.OwnedElsewhere(got) {
		t.Errorf("owned elsewhere: on b %v, on a %v", bh.OwnedElsewhere(got), a.OwnedElsewhere(got))
	}
	if _, err := bh.BeginSnapshot(ctx, "home", store.SnapshotOptions{}); err == nil || !strings.Contains(err.Error(), "host host-a") {
		t.Errorf("a snapshot of host-a's volume on host-b: %v", err)
	}
	storetest.FileSnapshot(t, a, "home", storetest.Block('a'))
	if _, err := bh.ImageVolumes().Begin(ctx, "img", nil, "test", ""); err != nil {
		t.Errorf("an image made on host-b: %v", err)
	}
}

// failAfter is a real bucket whose conditional writes fail, unsent, once
// one holding marker has landed: a store lost part-way through a commit.
type failAfter struct {
	store.Objects
	marker string
	armed  atomic.Bool
}

func (f *failAfter) PutIf(ctx context.Context, key string, data []byte, etag string) (store.Object, error) {
	if f.armed.Load() {
		return store.Object{}, errors.New("connection reset by peer")
	}
	obj, err := f.Objects.PutIf(ctx, key, data, etag)
	if err == nil && bytes.Contains(data, []byte(f.marker)) {
		f.armed.Store(true)
	}
	return obj, err
}

// TestImageUndoneThenRemoved: an image whose commit fails after its chain
// update was marked is undone, and its volume still marks the image's
// making: the host's next open removes the unfinished image, rather than
// take its own work for another host's.
func TestImageUndoneThenRemoved(t *testing.T) {
	_, b := open(t)
	ctx := context.Background()
	first := initRemote(t, b)
	dir := first.Info().Dir
	first.Close()
	cut := &failAfter{Objects: b, marker: `"applying":`}
	a, err := store.Open(ctx, store.Options{Dir: dir, Remote: remote(cut), PackSize: 3 * storetest.BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	w, err := a.ImageVolumes().Begin(ctx, "img", nil, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	root, err := putFileRoot(ctx, w, storetest.Block('a'), storetest.Block('b'))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, root, store.SnapshotStats{}); err == nil {
		t.Fatal("the commit with the store lost succeeded")
	}
	a.Close()
	again := host(t, b, dir)
	if imgs, err := again.ImageVolumes().List(ctx); err != nil || len(imgs) != 0 {
		t.Errorf("images after the unfinished one: %v %v", imgs, err)
	}
	checkClean(t, again)
}
