package integration

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// randomData returns n deterministic pseudo-random bytes.
func randomData(seed uint64, n int) []byte {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	b := make([]byte, n)
	rng.Read(b)
	return b
}

// makeCraftedTree builds below root a tree with every kind of entry and
// metadata chainfs must keep.
func makeCraftedTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	must(os.MkdirAll(p("dir/sub/deeper"), 0o755))
	must(os.MkdirAll(p("empty-dir"), 0o755))
	must(os.WriteFile(p("empty-file"), nil, 0o644))
	must(os.WriteFile(p("small.txt"), []byte("hello\n"), 0o644))
	must(os.WriteFile(p("dir/block-sized"), randomData(1, 256<<10), 0o600))
	must(os.WriteFile(p("dir/sub/odd-size"), randomData(2, 3*256<<10+17), 0o640))
	must(os.WriteFile(p("dir/sub/deeper/many-blocks"), randomData(3, 5<<20+1), 0o644))
	must(os.WriteFile(p("zeros-as-data"), make([]byte, 1<<20), 0o644))
	must(os.WriteFile(p("dir/dup-of-block-sized"), randomData(1, 256<<10), 0o644))

	// Sparse files: holes at the start, in the middle and at the end; and
	// one that is all hole.
	f, err := os.Create(p("sparse.img"))
	must(err)
	_, err = f.WriteAt(randomData(4, 300<<10), 4<<20)
	must(err)
	_, err = f.WriteAt([]byte("tail data"), 12<<20)
	must(err)
	must(f.Truncate(20 << 20))
	must(f.Close())
	f, err = os.Create(p("all-hole"))
	must(err)
	must(f.Truncate(8 << 20))
	must(f.Close())

	// Hard links: a group inside one directory and one across directories.
	must(os.WriteFile(p("dir/linked"), []byte("one inode, three names\n"), 0o644))
	must(os.Link(p("dir/linked"), p("dir/linked-2")))
	must(os.Link(p("dir/linked"), p("dir/sub/linked-3")))
	must(os.WriteFile(p("big-linked"), randomData(5, 1<<20), 0o644))
	must(os.Link(p("big-linked"), p("empty-dir/../big-linked-2")))

	// Symlinks: relative, absolute, dangling, to a directory.
	must(os.Symlink("small.txt", p("link-rel")))
	must(os.Symlink("/etc/hostname", p("link-abs")))
	must(os.Symlink("does/not/exist", p("link-dangling")))
	must(os.Symlink("dir/sub", p("link-dir")))

	// Special files.
	must(unix.Mkfifo(p("fifo"), 0o620))
	must(unix.Mknod(p("char-dev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(p("block-dev"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
	must(unix.Mknod(p("socket"), unix.S_IFSOCK|0o755, 0))

	// Names that are not tidy.
	must(os.WriteFile(p("with space and\nnewline"), []byte("x"), 0o644))
	must(os.WriteFile(p("latin1-\xe9\xff"), []byte("y"), 0o644))
	must(os.WriteFile(p(strings.Repeat("n", 255)), []byte("long name"), 0o644))

	// Modes, owners, xattrs, ACLs.
	must(os.WriteFile(p("setuid"), []byte("#!/bin/sh\n"), 0o755))
	must(unix.Chmod(p("setuid"), 0o4755))
	must(unix.Chmod(p("dir/sub"), 0o2775))
	must(os.MkdirAll(p("sticky"), 0o755))
	must(unix.Chmod(p("sticky"), 0o1777))
	must(os.Lchown(p("small.txt"), 1234, 5678))
	must(os.Lchown(p("link-rel"), 4321, 8765))
	must(os.Lchown(p("dir/sub"), 1000, 1000))
	must(unix.Lsetxattr(p("small.txt"), "user.comment", []byte("a note"), 0))
	must(unix.Lsetxattr(p("small.txt"), "user.binary", []byte{0, 1, 2, 255}, 0))
	must(unix.Lsetxattr(p("dir"), "user.on-dir", []byte("dir xattr"), 0))
	must(unix.Lsetxattr(p("link-rel"), "trusted.on-symlink", []byte("symlink xattr"), 0))
	sh(t, fmt.Sprintf("setfacl -m u:1234:rw,g:5678:r %q && setfacl -d -m u:1234:rwx %q", p("dir/block-sized"), p("dir")))
	must(os.WriteFile(p("restricted"), []byte("secret"), 0o000))
	must(os.MkdirAll(p("locked-dir/inner"), 0o755))
	must(os.WriteFile(p("locked-dir/inner/file"), []byte("in a locked dir"), 0o644))
	must(unix.Chmod(p("locked-dir"), 0o500))

	// Times to the nanosecond, including before 1970 and far ahead.
	setTimes(t, p("small.txt"), 1_234_567_890, 123_456_789, 1_111_111_111, 987_654_321)
	setTimes(t, p("dir/sub/odd-size"), -1_000_000, 1, 4_102_444_800, 999_999_999)
	setTimes(t, p("link-rel"), 1_500_000_000, 5, 1_600_000_000, 7)
	setTimes(t, p("empty-dir"), 1_000_000_000, 42, 1_000_000_001, 43)
	setTimes(t, p("dir/sub"), 1_700_000_000, 1, 1_700_000_001, 2)
	setTimes(t, p("locked-dir"), 1_700_000_100, 3, 1_700_000_101, 4)
}

func setTimes(t *testing.T, path string, asec, ansec, msec, mnsec int64) {
	t.Helper()
	ts := []unix.Timespec{{Sec: asec, Nsec: ansec}, {Sec: msec, Nsec: mnsec}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// fileState is everything of one path that a restore must reproduce.
type fileState struct {
	mode, uid, gid uint32
	size           int64
	atime, mtime   unix.Timespec
	nlink          uint64
	rdev           uint64
	target         string
	xattrs         string
	dataRanges     string // SEEK_DATA/SEEK_HOLE layout
	sum            string
	linkGroup      string // first path of the hard-link group
}

// treeState reads a tree's state without trusting any chainfs code. It
// opens directories and files with O_NOATIME and stats each entry before
// listing it, so that reading the tree does not move the atimes it records.
// (Reading a symlink does move its atime; nothing can avoid that.)
func treeState(t *testing.T, root string) map[string]fileState {
	t.Helper()
	states := map[string]fileState{}
	groups := map[[2]uint64]string{}
	var visit func(rel string)
	visit = func(rel string) {
		path := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		s := fileState{mode: st.Mode, uid: st.Uid, gid: st.Gid, atime: st.Atim, mtime: st.Mtim, rdev: st.Rdev}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			s.size, s.nlink = st.Size, st.Nlink
		}
		s.xattrs = xattrString(t, path)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			s.target, _ = os.Readlink(path)
		case unix.S_IFREG:
			s.dataRanges, s.sum = fileData(t, path, st.Size)
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if _, ok := groups[key]; !ok {
					groups[key] = rel
				}
				s.linkGroup = groups[key]
			}
		case unix.S_IFDIR:
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOATIME, 0)
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), path)
			names, err := f.Readdirnames(-1)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(names)
			for _, n := range names {
				visit(filepath.Join(rel, n))
			}
		}
		states[rel] = s
	}
	visit(".")
	return states
}

func xattrString(t *testing.T, path string) string {
	sz, err := unix.Llistxattr(path, nil)
	if err != nil || sz == 0 {
		return ""
	}
	buf := make([]byte, sz)
	sz, _ = unix.Llistxattr(path, buf)
	names := strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00")
	sort.Strings(names)
	var out []string
	for _, n := range names {
		v := make([]byte, 65536)
		vn, err := unix.Lgetxattr(path, n, v)
		if err != nil {
			t.Fatalf("%s: getxattr %s: %v", path, n, err)
		}
		out = append(out, fmt.Sprintf("%s=%x", n, v[:vn]))
	}
	return strings.Join(out, ";")
}

// fileData returns a file's data/hole layout and a digest of its bytes.
func fileData(t *testing.T, path string, size int64) (ranges, sum string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var rs []string
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, fmt.Sprintf("%d-%d", data, hole))
		off = hole
	}
	h := newDigest()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		t.Fatal(err)
	}
	return strings.Join(rs, ","), fmt.Sprintf("%x", h.Sum(nil))
}

// compareTrees fails the test for every difference between two trees'
// states.
func compareTrees(t *testing.T, want, got map[string]fileState, what string) {
	t.Helper()
	for path, w := range want {
		g, ok := got[path]
		if !ok {
			t.Errorf("%s: %q missing", what, path)
			continue
		}
		if fmt.Sprint(w) != fmt.Sprint(g) {
			t.Errorf("%s: %q differs\n want %+v\n  got %+v", what, path, w, g)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("%s: %q is extra", what, path)
		}
	}
}

// withoutAtimesAndHoles drops what rsync -a does not copy.
func withoutAtimesAndHoles(states map[string]fileState) map[string]fileState {
	out := make(map[string]fileState, len(states))
	for k, s := range states {
		s.atime, s.dataRanges = unix.Timespec{}, ""
		out[k] = s
	}
	return out
}
