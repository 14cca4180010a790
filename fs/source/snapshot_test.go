package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/storetest"
	"golang.org/x/sys/unix"
)

func testRepo(t *testing.T, src string) *store.Repo {
	t.Helper()
	return storetest.Repo(t, store.Volume{Name: "v", Source: src, BlockSize: store.MinBlockSize})
}

// readBack returns a file's content in a snapshot.
func readBack(t *testing.T, r *store.Repo, s *store.Snapshot, path string) []byte {
	t.Helper()
	ctx := context.Background()
	e, err := store.Lookup(ctx, r, &s.RootDir, path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := store.FileBlocks(ctx, r, e)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, e.BlockSize)
	for i, h := range blocks {
		n, err := r.ReadBlock(ctx, h, buf[:e.BlockLen(i)])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

// TestFileChangedWhileRead: a file written to during its read is read
// again and stored as one version, never a mix.
func TestFileChangedWhileRead(t *testing.T) {
	src := t.TempDir()
	path := filepath.Join(src, "f")
	old := bytes.Repeat([]byte("old!"), 64<<10)
	os.WriteFile(path, old, 0o644)
	r := testRepo(t, src)

	changes := 0
	testHookAfterRead = func(p string) {
		if p == path && changes == 0 {
			changes++
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt([]byte("NEW!"), 100000)
			f.Close()
		}
	}
	defer func() { testHookAfterRead = nil }()
	res, err := Snapshot(context.Background(), r, "v", store.SnapshotOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if got := readBack(t, r, res.Snapshot, "f"); !bytes.Equal(got, want) {
		t.Errorf("stored content is not the file's final version (torn read)")
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %v", res.Warnings)
	}
}

// TestFileAlwaysChanging: a file that changes at every read is left out
// with a warning rather than stored torn, and the rest is committed.
func TestFileAlwaysChanging(t *testing.T) {
	src := t.TempDir()
	path := filepath.Join(src, "busy.log")
	os.WriteFile(path, bytes.Repeat([]byte("x"), 100000), 0o644)
	os.WriteFile(filepath.Join(src, "calm"), []byte("calm"), 0o644)
	r := testRepo(t, src)
	testHookAfterRead = func(p string) {
		if p == path {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte("more\n"))
			f.Close()
		}
	}
	defer func() { testHookAfterRead = nil }()
	res, err := Snapshot(context.Background(), r, "v", store.SnapshotOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0].String(), "busy.log: changed while it was read") {
		t.Fatalf("warnings: %v", res.Warnings)
	}
	if _, err := store.Lookup(context.Background(), r, &res.Snapshot.RootDir, "busy.log"); err == nil {
		t.Error("a file that never held still was stored")
	}
	if got := readBack(t, r, res.Snapshot, "calm"); string(got) != "calm" {
		t.Errorf("calm file: %q", got)
	}
}

// TestHardLinkGroupReadOnce: the names of a hard-link group share one
// content, read once.
func TestHardLinkGroupReadOnce(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a"), 0o755)
	data := bytes.Repeat([]byte("L"), 50000)
	os.WriteFile(filepath.Join(src, "a/one"), data, 0o644)
	os.Link(filepath.Join(src, "a/one"), filepath.Join(src, "two"))
	os.Link(filepath.Join(src, "a/one"), filepath.Join(src, "three"))
	r := testRepo(t, src)
	res, err := Snapshot(context.Background(), r, "v", store.SnapshotOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot.Stats.ReadBytes != uint64(len(data)) {
		t.Errorf("read %d bytes for a %d-byte file with three names", res.Snapshot.Stats.ReadBytes, len(data))
	}
	for _, p := range []string{"a/one", "two", "three"} {
		e, err := store.Lookup(context.Background(), r, &res.Snapshot.RootDir, p)
		if err != nil {
			t.Fatal(err)
		}
		if e.Nlink != 3 || !bytes.Equal(readBack(t, r, res.Snapshot, p), data) {
			t.Errorf("%s: nlink %d or content differs", p, e.Nlink)
		}
	}
}

// TestCarriedSparseFileKeepsExtents: an unchanged sparse file carried over
// to the next snapshot keeps its holes, not only its blocks.
func TestCarriedSparseFileKeepsExtents(t *testing.T) {
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("data"), 1<<20)
	f.Close()
	r := testRepo(t, src)
	ctx := context.Background()
	var snaps []*store.Snapshot
	for i := 0; i < 2; i++ {
		res, err := Snapshot(ctx, r, "v", store.SnapshotOptions{}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, res.Snapshot)
	}
	for i, s := range snaps {
		e, err := store.Lookup(ctx, r, &s.RootDir, "sparse")
		if err != nil {
			t.Fatal(err)
		}
		if !e.Sparse || len(e.Extents) != 1 || e.Extents[0].Off+e.Extents[0].Len != 1<<20+4 {
			t.Errorf("snapshot %d: sparse %v, extents %v", i+1, e.Sparse, e.Extents)
		}
	}
}

// TestDirectoriesWalkedAtOnce: directories walked beside each other (16
// workers) give the tree a walk of one directory at a time (1 worker)
// gives, and a hard-link group whose names lie in many of them is still
// read once.
func TestDirectoriesWalkedAtOnce(t *testing.T) {
	src := t.TempDir()
	data := bytes.Repeat([]byte("H"), 70000)
	os.WriteFile(filepath.Join(src, "linked"), data, 0o644)
	for i := range 40 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", i), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range 5 {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", j)), []byte(strings.Repeat("x", i*100+j)), 0o644)
		}
		if err := os.Link(filepath.Join(src, "linked"), filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	var roots []store.Hash
	for _, workers := range []int{1, 16} {
		r := testRepo(t, src)
		res, err := Snapshot(ctx, r, "v", store.SnapshotOptions{}, Options{Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		st := res.Snapshot.Stats
		if st.ReadBytes != uint64(len(data)+40*5*2+100*5*(39*40/2)) {
			t.Errorf("%d workers: read %d bytes: a hard-link group read more than once?", workers, st.ReadBytes)
		}
		if st.Dirs != 81 || st.Files != 241 {
			t.Errorf("%d workers: %d directories, %d files; want 81, 241", workers, st.Dirs, st.Files)
		}
		if got := readBack(t, r, res.Snapshot, "d39/sub/link"); !bytes.Equal(got, data) {
			t.Errorf("%d workers: a hard link's content differs", workers)
		}
		roots = append(roots, res.Snapshot.Root)
	}
	if roots[0] != roots[1] {
		t.Errorf("the tree differs with the walk's width: %v and %v", roots[0], roots[1])
	}
}

// TestQueuedReadsCloseTheirFiles: queue opens files ahead of their reads
// (more are open at once than there are workers), and they are closed
// however a read ends: done, or cancelled while it is queued or before.
func TestQueuedReadsCloseTheirFiles(t *testing.T) {
	src, err := filepath.EvalSymlinks(t.TempDir()) // as /proc/self/fd names it
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", i%7))
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), bytes.Repeat([]byte{byte(i)}, 100+i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// openUnder counts this process's descriptors of regular files under
	// src (its directories are open while they are walked).
	openUnder := func() int {
		fds, _ := os.ReadDir("/proc/self/fd")
		n := 0
		for _, fd := range fds {
			link := filepath.Join("/proc/self/fd", fd.Name())
			target, err := os.Readlink(link)
			if st, serr := os.Stat(link); err == nil && serr == nil && st.Mode().IsRegular() && strings.HasPrefix(target, src+"/") {
				n++
			}
		}
		return n
	}
	ctx := context.Background()
	var most int
	testHookAfterRead = func(string) { most = max(most, openUnder()) } // one worker at a time reads most
	defer func() { testHookAfterRead = nil }()
	if _, err := Snapshot(ctx, testRepo(t, src), "v", store.SnapshotOptions{}, Options{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	if most < 2 {
		t.Errorf("at most %d file open during reads by one worker: none opened ahead", most)
	}
	if n := openUnder(); n != 0 {
		t.Errorf("%d files of the source open after a snapshot", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var reads atomic.Int32
	testHookAfterRead = func(string) {
		if reads.Add(1) == 20 {
			cancel()
		}
	}
	if _, err := Snapshot(cctx, testRepo(t, src), "v", store.SnapshotOptions{}, Options{Workers: 2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a snapshot cancelled midway: %v", err)
	}
	if n := openUnder(); n != 0 {
		t.Errorf("%d files of the source open after a cancelled snapshot", n)
	}
}

// TestFileSwappedForAFifo: a file that is a FIFO by the time its read is
// queued is refused as no longer a regular file, without waiting for a
// writer that never comes.
func TestFileSwappedForAFifo(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "swapped")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	wk := &walker{jobs: make(chan *fileRead, 1), ahead: make(chan struct{}, 1)}
	fr := &fileRead{path: fifo, open: fifo, entry: store.Entry{Type: store.TypeRegular, Size: 100}, done: make(chan struct{})}
	ended := make(chan error, 1)
	go func() {
		ctx := context.Background()
		wk.queue(ctx, fr)
		fr = <-wk.jobs
		fr.end(wk.readFile(ctx, fr))
		ended <- fr.err
	}()
	select {
	case err := <-ended:
		if err == nil || !strings.Contains(err.Error(), "no longer a regular file") {
			t.Errorf("a file swapped for a FIFO: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read of a file swapped for a FIFO waits for a writer")
	}
}

// TestBlocking: the O_NONBLOCK openFile sets is cleared, and said to have
// been, once: a read that meets EAGAIN retries only when there was one.
func TestBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("x"), 0o644)
	fd, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if !blocking(fd) {
		t.Error("O_NONBLOCK of openFile not cleared")
	}
	if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 || fl&unix.O_NOATIME == 0 {
		t.Errorf("flags after blocking: %#x; want O_NOATIME kept, O_NONBLOCK gone", fl)
	}
	if blocking(fd) {
		t.Error("blocking cleared O_NONBLOCK twice: an EAGAIN would be retried for ever")
	}
}
