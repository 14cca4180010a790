package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// deepDirs makes under root a chain of directories whose path is longer
// than PATH_MAX, one name at a time (no path the kernel would refuse is
// ever used), and returns a descriptor of the deepest.
func deepDirs(t *testing.T, root string, levels int) int {
	t.Helper()
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < levels; i++ {
		name := fmt.Sprintf("%03d-%s", i, strings.Repeat("d", 196))
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	return fd
}

// fdTree reads a tree through descriptors, at any depth: relative path →
// type, mode, size, data digest, symlink target, xattrs.
func fdTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(fd int, rel string)
	walk = func(fd int, rel string) {
		f := os.NewFile(uintptr(fd), rel)
		defer f.Close()
		names, err := f.Readdirnames(-1)
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(names)
		for _, name := range names {
			p := rel + "/" + name
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				t.Fatal(err)
			}
			desc := fmt.Sprintf("mode %o", st.Mode)
			if st.Mode&unix.S_IFMT != unix.S_IFDIR { // a directory's size is the file system's own
				desc += fmt.Sprintf(" size %d", st.Size)
			}
			alias := fmt.Sprintf("/proc/self/fd/%d/%s", fd, name)
			if x, err := unix.Lgetxattr(alias, "user.deep", make([]byte, 64)); err == nil {
				desc += fmt.Sprintf(" xattr %d", x)
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				cfd, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW, 0)
				if err != nil {
					t.Fatal(err)
				}
				walk(cfd, p)
			case unix.S_IFREG:
				cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
				if err != nil {
					t.Fatal(err)
				}
				// Closed through its os.File only: closing the descriptor
				// directly as well would leave the File's finalizer to close
				// the same number again later, when it may be another file
				// this process has open (it was: a later test then read one
				// file's bytes through another's descriptor).
				f := os.NewFile(uintptr(cfd), name)
				h := sha256.New()
				io.Copy(h, f)
				f.Close()
				desc += " " + hex.EncodeToString(h.Sum(nil))
			case unix.S_IFLNK:
				buf := make([]byte, 256)
				n, _ := unix.Readlinkat(fd, name, buf)
				desc += " -> " + string(buf[:n])
			}
			out[p] = desc
		}
	}
	walk(fd, "")
	return out
}

// TestPathsLongerThanPathMax: a tree whose deepest paths are longer than
// PATH_MAX (4,096 bytes) is snapshotted, restored and mounted exactly,
// files, a symlink, a hard link and xattrs at the bottom included.
func TestPathsLongerThanPathMax(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.Mkdir(src, 0o755)
	fd := deepDirs(t, src, 25) // 25 × 201 bytes: about 5,000
	for i, data := range []string{"at the bottom\n", strings.Repeat("x", 300<<10)} {
		name := fmt.Sprint("file-", i)
		f, err := unix.Openat(fd, name, unix.O_CREAT|unix.O_WRONLY, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		unix.Write(f, []byte(data))
		unix.Close(f)
	}
	if err := unix.Linkat(fd, "file-0", fd, "link-to-file-0", 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Symlinkat("file-1", fd, "symlink"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/file-0", fd), "user.deep", []byte("yes"), 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	want := fdTree(t, src)
	deepest := 0
	for p := range want {
		deepest = max(deepest, len(src+p))
	}
	if deepest <= unix.PathMax {
		t.Fatalf("the deepest path is %d bytes, not longer than PATH_MAX", deepest)
	}

	e.ok("volume", "add", "deep", src)
	s := e.snapshot("deep")
	if s.Stats.Files != 3 || s.Stats.Warnings != 0 {
		t.Errorf("snapshot of a deep tree: %+v", s.Stats)
	}
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "deep/latest", dst)
	got := fdTree(t, dst)
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: restored %q, source %q", p[max(0, len(p)-60):], got[p], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("restored %d entries, source %d", len(got), len(want))
	}
	// And through the mount, one name at a time.
	d := e.serve(filepath.Join(e.dir, "mnt"))
	mounted := fdTree(t, d.snapDir("deep", s.Name))
	for p, w := range want {
		if mounted[p] != w {
			t.Errorf("%s: mounted %q, source %q", p[max(0, len(p)-60):], mounted[p], w)
		}
	}
}

// TestManyFilesOpen: 3,000 files of a snapshot held open at once through
// the mount all read back exactly while the daemon's own descriptors stay
// few; a snapshot taken with a limit of 64 open files still reads every
// entry (its readers and directories fit), and one of a tree deeper than
// the limit names what it could not open instead of failing.
func TestManyFilesOpen(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	for d := 0; d < 30; d++ {
		dir := filepath.Join(src, fmt.Sprint("d", d))
		os.MkdirAll(dir, 0o755)
		for f := 0; f < 100; f++ {
			os.WriteFile(filepath.Join(dir, fmt.Sprint("f", f)), []byte(fmt.Sprintf("file %d/%d\n", d, f)), 0o644)
		}
	}
	e.ok("volume", "add", "v", src)
	r := e.runAs([]string{"prlimit", "--nofile=64:64"}, "snapshot", "create", "v", "--name", "s", "--json")
	if r.code != 0 {
		t.Fatalf("snapshot with 64 open files allowed: exit %d %s", r.code, r.stderr)
	}
	// A tree deeper than the limit: entries beyond it are named, not fatal.
	deep := filepath.Join(e.dir, "deep")
	os.MkdirAll(deep, 0o755)
	unix.Close(deepDirs(t, deep, 80))
	e.ok("volume", "add", "deep", deep)
	r = e.runAs([]string{"prlimit", "--nofile=64:64"}, "snapshot", "create", "deep")
	if r.code != 3 || !strings.Contains(r.stderr, "too many open files") {
		t.Errorf("snapshot of an 80-deep tree with 64 open files: exit %d, stderr %q", r.code, r.stderr)
	}

	d := e.serve(filepath.Join(e.dir, "mnt"))
	before := openFiles(d.cmd.Process.Pid)
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for dd := 0; dd < 30; dd++ {
		for f := 0; f < 100; f++ {
			fh, err := os.Open(filepath.Join(d.snapDir("v", "s"), fmt.Sprint("d", dd), fmt.Sprint("f", f)))
			if err != nil {
				t.Fatalf("open file %d of 3,000: %v", len(files), err)
			}
			files = append(files, fh)
		}
	}
	for i, fh := range files {
		b, err := io.ReadAll(fh)
		if want := fmt.Sprintf("file %d/%d\n", i/100, i%100); err != nil || string(b) != want {
			t.Fatalf("file %d: %q %v", i, b, err)
		}
	}
	if after := openFiles(d.cmd.Process.Pid); after > before+64 {
		t.Errorf("the daemon went from %d to %d open descriptors for 3,000 open files", before, after)
	}

}
