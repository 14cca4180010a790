//go:build linux

package fs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/storetest"
	"golang.org/x/sys/unix"
)

// fakeController records commands and answers as told.
type fakeController struct {
	mu       sync.Mutex
	commands []string
	fail     error
}

func (c *fakeController) Snapshot(ctx context.Context, volume, name string) (func(context.Context) error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commands = append(c.commands, "snapshot "+volume+" "+name)
	if c.fail != nil {
		return nil, c.fail
	}
	return func(context.Context) error { return nil }, nil
}

func (c *fakeController) Delete(ctx context.Context, volume, snapshot string) (func(context.Context) error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commands = append(c.commands, "delete "+volume+"/"+snapshot)
	if c.fail != nil {
		return nil, c.fail
	}
	return func(context.Context) error { return nil }, nil
}

func (c *fakeController) Export(ctx context.Context, volume, snapshot, image, file string) (func(context.Context) error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commands = append(c.commands, "export "+volume+"/"+snapshot+" "+image)
	if c.fail != nil {
		return nil, c.fail
	}
	return func(context.Context) error { return nil }, nil
}

func (c *fakeController) setFail(err error) {
	c.mu.Lock()
	c.fail = err
	c.mu.Unlock()
}

func (c *fakeController) Reject(ctx context.Context, file, command string, err error) {}
func (c *fakeController) Status(uid uint32) []byte                                    { return []byte("{}\n") }

// testMount snapshots src into a new repository and mounts it; everything
// is undone when the test ends.
func testMount(t testing.TB, src string, with ...func(*Options)) (mnt string, repo *store.Repo, ctl *fakeController) {
	t.Helper()
	return mountSnapshot(t, src, store.MinBlockSize, with...)
}

// mountSnapshot is testMount with the volume's block size.
func mountSnapshot(t testing.TB, src string, blockSize uint32, with ...func(*Options)) (mnt string, repo *store.Repo, ctl *fakeController) {
	t.Helper()
	_, mnt, repo, ctl = mountSnapshotFS(t, src, blockSize, with...)
	return mnt, repo, ctl
}

// snapshotRepo is a repository whose volume v, of src, has one snapshot,
// s.
func snapshotRepo(t testing.TB, src string, blockSize uint32) *store.Repo {
	t.Helper()
	repo := storetest.Repo(t, store.Volume{Name: "v", Source: src, BlockSize: blockSize})
	if _, err := source.Snapshot(context.Background(), repo, "v", store.SnapshotOptions{Name: "s"}, source.Options{}); err != nil {
		t.Fatal(err)
	}
	return repo
}

// mountSnapshotFS is mountSnapshot that also returns the mounted FS, for
// tests that call its nodes directly.
func mountSnapshotFS(t testing.TB, src string, blockSize uint32, with ...func(*Options)) (fsys *FS, mnt string, repo *store.Repo, ctl *fakeController) {
	t.Helper()
	repo = snapshotRepo(t, src, blockSize)
	ctl = &fakeController{}
	mnt = filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	opts := Options{Repo: repo, Images: &imagefile.Library{Repo: repo}, Controller: ctl}
	for _, fn := range with {
		fn(&opts)
	}
	fsys = New(opts)
	mount, err := Mount(mnt, fsys, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.Unmount() })
	return fsys, mnt, repo, ctl
}

func TestReadPathAndHoles(t *testing.T) {
	src := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: 20 blocks of 4 KiB
	os.WriteFile(filepath.Join(src, "f"), data, 0o644)
	f, _ := os.Create(filepath.Join(src, "sparse"))
	f.WriteAt([]byte("middle"), 1<<20)
	f.Truncate(2 << 20)
	f.Close()
	mnt, _, _ := testMount(t, src)
	p := filepath.Join(mnt, "volumes/v/s/f")

	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v, equal %v", err, bytes.Equal(got, data))
	}
	// Reads across block boundaries, at odd offsets, backwards.
	fh, _ := os.Open(p)
	defer fh.Close()
	for _, c := range []struct{ off, n int }{{4090, 20}, {0, 1}, {79990, 100}, {40000, 12345}, {5, 4096 * 3}} {
		buf := make([]byte, c.n)
		n, _ := fh.ReadAt(buf, int64(c.off))
		want := data[c.off:min(c.off+c.n, len(data))]
		if !bytes.Equal(buf[:n], want) {
			t.Errorf("ReadAt(%d, %d) differs", c.off, c.n)
		}
	}
	// SEEK_DATA / SEEK_HOLE answer as the source did.
	sp, _ := os.Open(filepath.Join(mnt, "volumes/v/s/sparse"))
	defer sp.Close()
	fd := int(sp.Fd())
	srcFd, _ := unix.Open(filepath.Join(src, "sparse"), unix.O_RDONLY, 0)
	defer unix.Close(srcFd)
	for _, off := range []int64{0, 4096, 1 << 20, 1<<20 + 3, 1<<20 + 8192, 2<<20 - 1} {
		for _, whence := range []int{unix.SEEK_DATA, unix.SEEK_HOLE} {
			want, werr := unix.Seek(srcFd, off, whence)
			got, gerr := unix.Seek(fd, off, whence)
			if want != got || !errors.Is(gerr, werr) && (werr != nil || gerr != nil) {
				t.Errorf("lseek(%d, %d): got %d %v, source %d %v", off, whence, got, gerr, want, werr)
			}
		}
	}
}

func TestReadOnlyAndControl(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	unix.Setxattr(filepath.Join(src, "f"), "user.k", []byte("value"), 0)
	mnt, _, ctl := testMount(t, src)
	snap := filepath.Join(mnt, "volumes/v/s")

	for name, err := range map[string]error{
		"create":   os.WriteFile(filepath.Join(snap, "new"), nil, 0o644),
		"write":    os.WriteFile(filepath.Join(snap, "f"), []byte("y"), 0o644),
		"remove":   os.Remove(filepath.Join(snap, "f")),
		"mkdir":    os.Mkdir(filepath.Join(snap, "d"), 0o755),
		"rename":   os.Rename(filepath.Join(snap, "f"), filepath.Join(snap, "g")),
		"chmod":    os.Chmod(filepath.Join(snap, "f"), 0o600),
		"setxattr": unix.Setxattr(filepath.Join(snap, "f"), "user.k", []byte("v"), 0),
		"symlink":  os.Symlink("f", filepath.Join(snap, "l")),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s in a snapshot: %v, want EROFS", name, err)
		}
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(filepath.Join(snap, "f"), "user.k", buf); err != nil || string(buf[:n]) != "value" {
		t.Errorf("getxattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(filepath.Join(snap, "f"), "user.k", make([]byte, 2)); !errors.Is(err, unix.ERANGE) {
		t.Errorf("getxattr into a short buffer: %v, want ERANGE", err)
	}
	if _, err := unix.Getxattr(filepath.Join(snap, "f"), "user.none", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("getxattr of a missing name: %v, want ENODATA", err)
	}

	ctlFile := filepath.Join(mnt, ".control/snapshot")
	for line, want := range map[string]error{
		"v named\n":    nil,
		"v\n":          nil,
		"a b c\n":      syscall.EINVAL,
		"\n":           syscall.EINVAL,
		"v\x00x\n":     syscall.EINVAL,
		"v\nsecond\n":  syscall.EINVAL,
		"v/too/deep\n": nil, // the store judges names; the fake accepts
	} {
		err := os.WriteFile(ctlFile, []byte(line), 0)
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("write %q: %v, want %v", line, err, want)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, ".control/delete"), []byte("v/s\n"), 0); err != nil {
		t.Errorf("delete: %v", err)
	}
	ctl.setFail(store.ErrBusy)
	if err := os.WriteFile(ctlFile, []byte("v\n"), 0); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("busy controller: %v, want EBUSY", err)
	}
	ctl.setFail(store.ErrNotFound)
	if err := os.WriteFile(ctlFile, []byte("nosuch\n"), 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unknown volume: %v, want ENOENT", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, ".control/status"), []byte("x"), 0); !errors.Is(err, syscall.EACCES) {
		t.Errorf("write to status: %v, want EACCES", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, ".control/status")); err != nil || string(b) != "{}\n" {
		t.Errorf("status: %q %v", b, err)
	}
	// Exactly the lines that parsed reached the controller, as parsed (the
	// busy and unknown ones too: the controller refused them).
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	got := slices.Sorted(slices.Values(ctl.commands))
	want := []string{"delete v/s", "snapshot nosuch ", "snapshot v ", "snapshot v ", "snapshot v named", "snapshot v/too/deep "}
	if !slices.Equal(got, want) {
		t.Errorf("commands seen:\n%q\nwant\n%q", got, want)
	}
}

func TestInodeNumberRules(t *testing.T) {
	snap := &snapRef{volID: 1, seq: 2}
	a := store.Entry{Name: "b", Type: store.TypeRegular, Nlink: 1}
	if entryIno(snap, &a, "a/b/b") == entryIno(snap, &a, "a/b") {
		t.Error("a/b/b and a/b share an inode number")
	}
	if entryIno(snap, &a, "a/b") != entryIno(snap, &a, "a/b") {
		t.Error("inode numbers are not stable")
	}
	link := store.Entry{Type: store.TypeRegular, Nlink: 2, Dev: 5, Ino: 9}
	if entryIno(snap, &link, "x") != entryIno(snap, &link, "y/z") {
		t.Error("hard links do not share an inode number")
	}
	if entryIno(&snapRef{volID: 1, seq: 3}, &a, "a/b") == entryIno(snap, &a, "a/b") {
		t.Error("the same path in two snapshots shares an inode number")
	}
	for i := 0; i < 1000; i++ {
		if n := inodeNumber("entry", []uint64{uint64(i)}, "p"); n < firstHashedIno || n == ^uint64(0) {
			t.Fatalf("inode number %d out of range", n)
		}
	}
}

// readCounter is an Observer that adds up what it is told.
type readCounter struct {
	mu            sync.Mutex
	reads, failed int
	bytes         int
}

func (c *readCounter) Read(n int, took time.Duration, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	c.bytes += n
	if failed {
		c.failed++
	}
}

// TestObserverAndReadAhead: the observer hears of every byte read, and a
// mount without read-ahead reads the same bytes.
func TestObserverAndReadAhead(t *testing.T) {
	src := t.TempDir()
	data := bytes.Repeat([]byte("observed"), 40000) // 320,000 bytes
	os.WriteFile(filepath.Join(src, "f"), data, 0o644)
	obs := &readCounter{}
	mnt, _, _ := testMount(t, src, func(o *Options) { o.Observer, o.ReadAhead, o.TreeCache = obs, -1, 1 })
	got, err := os.ReadFile(filepath.Join(mnt, "volumes/v/s/f"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read without read-ahead: %v, equal %v", err, bytes.Equal(got, data))
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.bytes != len(data) || obs.reads == 0 || obs.failed != 0 {
		t.Errorf("observer: %d reads, %d bytes, %d failed; want %d bytes", obs.reads, obs.bytes, obs.failed, len(data))
	}
}

// countingReader decodes trees of n entries and counts the decodes.
type countingReader struct {
	stallingReader
	sizes   map[store.Hash]int
	decoded map[store.Hash]int
}

func (r *countingReader) Tree(_ context.Context, h store.Hash) ([]store.Entry, error) {
	r.decoded[h]++
	return make([]store.Entry, r.sizes[h]), nil
}

// TestTreeCacheKeepsAWalksPath: a directory bigger than the cache's bound
// is decoded once while a walk goes in and out of its subdirectories, not
// again after each.
func TestTreeCacheKeepsAWalksPath(t *testing.T) {
	big, rd := store.Sum([]byte("big")), &countingReader{sizes: map[store.Hash]int{}, decoded: map[store.Hash]int{}}
	rd.sizes[big] = 1000
	f := &FS{trees: newTreeCache(100)}
	ctx := context.Background()
	for i := range 20 {
		sub := store.Sum([]byte{byte(i)})
		rd.sizes[sub] = 10
		for _, h := range []store.Hash{big, sub, big} {
			if _, err := f.tree(ctx, rd, h); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rd.decoded[big] != 1 {
		t.Errorf("the big directory was decoded %d times, want once", rd.decoded[big])
	}
	if n := f.trees.order.Len(); n > keepRecent+100/11 {
		t.Errorf("%d trees cached", n)
	}
}
