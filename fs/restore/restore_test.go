package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/fs/resolve"
	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/storetest"
	"golang.org/x/sys/unix"
)

// snapshotOf snapshots directory src into a new repository with a block
// size small enough that a few KiB make several blocks.
func snapshotOf(t *testing.T, src string) (*store.Repo, *store.Snapshot) {
	t.Helper()
	ctx := context.Background()
	r := storetest.Repo(t, store.Volume{Name: "v", Source: src, BlockSize: store.MinBlockSize})
	res, err := source.Snapshot(ctx, r, "v", store.SnapshotOptions{}, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("snapshot warnings: %v", res.Warnings)
	}
	return r, res.Snapshot
}

func restoreTo(t *testing.T, r *store.Repo, s *store.Snapshot, path, target string, opts Options) *Result {
	t.Helper()
	res, err := Restore(context.Background(), r, s, path, target, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func write(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(path, uint32(mode)); err != nil { // past the umask; os.Chmod drops 07000
		t.Fatal(err)
	}
}

func lstat(t *testing.T, path string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (owners, device nodes)")
	}
}

// sourceTree makes a tree of every kind of entry restore writes.
func sourceTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*store.MinBlockSize/16+7)
	write(t, filepath.Join(src, "big"), big, 0o640)
	write(t, filepath.Join(src, "empty"), nil, 0o600)
	if err := os.Mkdir(filepath.Join(src, "d"), 0o777); err != nil {
		t.Fatal(err)
	}
	unix.Chmod(filepath.Join(src, "d"), 0o777)
	for _, n := range []string{"a", "b", "c"} {
		write(t, filepath.Join(src, "d", n), []byte("file "+n), 0o4755)
	}
	os.MkdirAll(filepath.Join(src, "d", "sub", "deeper"), 0o750)
	write(t, filepath.Join(src, "d", "sub", "deeper", "x"), []byte("x"), 0o644)
	// A sparse file: data, a hole of several blocks, data, a trailing hole.
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 8*store.MinBlockSize)
	f.Truncate(16 * store.MinBlockSize)
	f.Close()
	os.Link(filepath.Join(src, "big"), filepath.Join(src, "d", "big-link"))
	os.Symlink("../big", filepath.Join(src, "d", "symlink"))
	os.Symlink("/nonexistent/target", filepath.Join(src, "dangling"))
	if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o620); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(src, "big"), "user.note", []byte("kept"), 0); err != nil {
		t.Logf("no user xattrs here: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		os.Lchown(filepath.Join(src, "d", "a"), 1001, 1002)
		os.Lchown(filepath.Join(src, "d", "symlink"), 1003, 1004)
	}
	// Times last, deepest first: writing moves a directory's mtime.
	when := []unix.Timespec{{Sec: 1_500_000_000, Nsec: 123}, {Sec: 1_600_000_000, Nsec: 456789}}
	for _, p := range []string{"d/sub/deeper/x", "d/sub/deeper", "d/sub", "d/a", "big", "sparse", "fifo", "d/symlink", "d", "."} {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, p), when, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// sameTree fails unless got holds what want holds, entry by entry: type,
// mode, owners, size, mtime, content, symlink targets and hard links.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	links := map[uint64]uint64{}
	filepath.Walk(want, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		w, g := lstat(t, p), lstat(t, q)
		if w.Mode != g.Mode || w.Uid != g.Uid || w.Gid != g.Gid || w.Size != g.Size || w.Rdev != g.Rdev {
			t.Errorf("%s: mode %o uid %d gid %d size %d, want %o %d %d %d", rel, g.Mode, g.Uid, g.Gid, g.Size, w.Mode, w.Uid, w.Gid, w.Size)
		}
		if w.Mtim != g.Mtim {
			t.Errorf("%s: mtime %v, want %v", rel, g.Mtim, w.Mtim)
		}
		switch w.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if !bytes.Equal(mustRead(t, p), mustRead(t, q)) {
				t.Errorf("%s: content differs", rel)
			}
			if w.Nlink > 1 {
				if first, ok := links[w.Ino]; ok && first != g.Ino {
					t.Errorf("%s: not a hard link of its group", rel)
				}
				links[w.Ino] = g.Ino
			}
		case unix.S_IFLNK:
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(q)
			if wt != gt {
				t.Errorf("%s: symlink to %q, want %q", rel, gt, wt)
			}
		}
		return nil
	})
}

// TestRestoreRoundTrip: every kind of entry comes back as it was, holes
// as holes, into a new directory and, as a single file, by name.
func TestRestoreRoundTrip(t *testing.T) {
	src := sourceTree(t)
	r, s := snapshotOf(t, src)
	dst := filepath.Join(t.TempDir(), "new", "dst")
	res := restoreTo(t, r, s, "", dst, Options{})
	if len(res.Problems) > 0 || res.Existing > 0 {
		t.Fatalf("problems: %v, existing %d", res.Problems, res.Existing)
	}
	sameTree(t, src, dst)
	if _, err := unixGetxattr(filepath.Join(src, "big"), "user.note"); err == nil {
		if v, err := unixGetxattr(filepath.Join(dst, "big"), "user.note"); err != nil || string(v) != "kept" {
			t.Errorf("xattr: %q %v, want \"kept\"", v, err)
		}
	}
	if st := lstat(t, filepath.Join(dst, "sparse")); st.Blocks*512 >= 4*store.MinBlockSize {
		t.Errorf("sparse file takes %d bytes on disk: its holes were written", st.Blocks*512)
	}
	// One file into a directory, and to a new name.
	into := t.TempDir()
	restoreTo(t, r, s, "d/a", into, Options{})
	restoreTo(t, r, s, "big", filepath.Join(into, "more", "renamed"), Options{})
	if string(mustRead(t, filepath.Join(into, "a"))) != "file a" || !bytes.Equal(mustRead(t, filepath.Join(into, "more", "renamed")), mustRead(t, filepath.Join(src, "big"))) {
		t.Error("single files not restored")
	}
	if _, err := Restore(context.Background(), r, s, "d/a", into, Options{Delete: true}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("delete with a single file: %v", err)
	}
}

func unixGetxattr(path, name string) ([]byte, error) {
	b := make([]byte, 256)
	n, err := unix.Getxattr(path, name, b)
	if err != nil {
		return nil, err
	}
	return b[:n], nil
}

// TestExistingDirectoryKeepsItsMetadata: without Overwrite, a directory
// that exists (TARGET itself, as /tmp would be, or one below it) keeps its
// owner and mode, and existing files are left and counted, not problems.
func TestExistingDirectoryKeepsItsMetadata(t *testing.T) {
	needRoot(t)
	src := sourceTree(t)
	r, s := snapshotOf(t, src)
	dst := t.TempDir()
	unix.Chmod(dst, 0o1777)
	os.Chown(dst, 1001, 1001)
	os.Mkdir(filepath.Join(dst, "d"), 0o700)
	unix.Chmod(filepath.Join(dst, "d"), 0o1770)
	os.Chown(filepath.Join(dst, "d"), 0, 1002)
	write(t, filepath.Join(dst, "d", "a"), []byte("mine"), 0o600)
	res := restoreTo(t, r, s, "", dst, Options{})
	for p, want := range map[string][2]uint32{".": {0o1777, 1001}, "d": {0o1770, 1002}} {
		st := lstat(t, filepath.Join(dst, p))
		if st.Mode&0o7777 != want[0] || st.Gid != want[1] {
			t.Errorf("%s: mode %o gid %d, want %o %d: an existing directory took the snapshot's metadata", p, st.Mode&0o7777, st.Gid, want[0], want[1])
		}
	}
	if got := string(mustRead(t, filepath.Join(dst, "d", "a"))); got != "mine" {
		t.Errorf("existing file replaced without Overwrite: %q", got)
	}
	if res.Existing != 1 || len(res.Problems) != 0 {
		t.Errorf("existing %d, problems %v; want 1 and none", res.Existing, res.Problems)
	}
	if string(mustRead(t, filepath.Join(dst, "d", "b"))) != "file b" {
		t.Error("new files not written into an existing directory")
	}
	// With Overwrite always, TARGET is the snapshot's, metadata too.
	res = restoreTo(t, r, s, "", dst, Options{Overwrite: OverwriteAlways})
	if len(res.Problems) > 0 {
		t.Fatal(res.Problems)
	}
	sameTree(t, src, dst)
}

// TestOthersDirectoryNotFilled: an existing directory of another user
// than the snapshot's owner, where the snapshot has a directory closed to
// that user (0700), receives nothing: its files would be that user's to
// read. With Overwrite it is made the snapshot's first.
func TestOthersDirectoryNotFilled(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "priv"), 0o700)
	write(t, filepath.Join(src, "priv", "notes"), []byte("secret"), 0o644)
	r, s := snapshotOf(t, src)
	dst := t.TempDir()
	unix.Chmod(dst, 0o1777)
	priv := filepath.Join(dst, "priv")
	os.Mkdir(priv, 0o755)
	os.Chown(priv, 1001, 1001)
	res := restoreTo(t, r, s, "", dst, Options{})
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(), "belongs to uid 1001") {
		t.Errorf("problems %v, want the directory of uid 1001 named", res.Problems)
	}
	if _, err := os.Lstat(filepath.Join(priv, "notes")); !os.IsNotExist(err) {
		t.Errorf("notes was written into uid 1001's directory (%v)", err)
	}
	res = restoreTo(t, r, s, "", dst, Options{Overwrite: OverwriteAlways})
	if len(res.Problems) > 0 {
		t.Fatal(res.Problems)
	}
	if st := lstat(t, priv); st.Uid != 0 || st.Mode&0o7777 != 0o700 {
		t.Errorf("priv after Overwrite: uid %d mode %o, want the snapshot's 0 and 700", st.Uid, st.Mode&0o7777)
	}
	if string(mustRead(t, filepath.Join(priv, "notes"))) != "secret" {
		t.Error("notes not restored with Overwrite")
	}
}

// TestOverwriteIfChanged: only what differs is rewritten: a file whose
// bytes changed behind the same size and mtime is found by its hashes;
// untouched files keep their inode; a file replaced is never written
// through (a hard link elsewhere, a symlink) but renamed over.
func TestOverwriteIfChanged(t *testing.T) {
	src := sourceTree(t)
	r, s := snapshotOf(t, src)
	dst := filepath.Join(t.TempDir(), "dst")
	restoreTo(t, r, s, "", dst, Options{})
	before := lstat(t, filepath.Join(dst, "d", "b")).Ino

	// Same size and mtime, other bytes.
	big := filepath.Join(dst, "big")
	st := lstat(t, big)
	b := mustRead(t, big)
	b[len(b)-3] ^= 0xff
	write(t, big, b, os.FileMode(st.Mode&0o777))
	unix.UtimesNanoAt(unix.AT_FDCWD, big, []unix.Timespec{st.Atim, st.Mtim}, 0)
	// A file that another hard link outside shares, with other content.
	outside := filepath.Join(t.TempDir(), "outside")
	write(t, outside, []byte("outside"), 0o600)
	os.Remove(filepath.Join(dst, "d", "c"))
	if err := os.Link(outside, filepath.Join(dst, "d", "c")); err != nil {
		t.Fatal(err)
	}
	// A symlink where a file was, pointing out.
	os.Remove(filepath.Join(dst, "empty"))
	os.Symlink(outside, filepath.Join(dst, "empty"))
	// A directory where a fifo was.
	os.Remove(filepath.Join(dst, "fifo"))
	os.MkdirAll(filepath.Join(dst, "fifo", "in"), 0o755)

	res := restoreTo(t, r, s, "", dst, Options{Overwrite: OverwriteIfChanged})
	if len(res.Problems) > 0 {
		t.Fatal(res.Problems)
	}
	sameTree(t, src, dst)
	if got := string(mustRead(t, outside)); got != "outside" {
		t.Errorf("a file was written through its hard link or a symlink: %q", got)
	}
	if lstat(t, filepath.Join(dst, "d", "b")).Ino != before {
		t.Error("an unchanged file was rewritten")
	}
	if res.Files != 4 || res.Others != 1 {
		t.Errorf("rewrote %d files, %d others; want big (and its link d/big-link), d/c, empty and fifo", res.Files, res.Others)
	}
	if res.Unchanged == 0 {
		t.Error("nothing counted unchanged")
	}
	// Again: nothing differs, nothing is written.
	res = restoreTo(t, r, s, "", dst, Options{Overwrite: OverwriteIfChanged})
	if res.Files+res.Others != 0 || len(res.Problems) > 0 {
		t.Errorf("a restore over an identical tree wrote %d files, %d others (%v)", res.Files, res.Others, res.Problems)
	}
}

// TestDelete: Delete removes what the snapshot does not hold, through a
// symlink to a directory never into it; without it nothing goes.
func TestDelete(t *testing.T) {
	src := sourceTree(t)
	r, s := snapshotOf(t, src)
	dst := filepath.Join(t.TempDir(), "dst")
	restoreTo(t, r, s, "", dst, Options{})
	elsewhere := t.TempDir()
	write(t, filepath.Join(elsewhere, "keep"), []byte("keep"), 0o600)
	write(t, filepath.Join(dst, "extra"), []byte("x"), 0o600)
	os.MkdirAll(filepath.Join(dst, "d", "sub", "gone", "deep"), 0o755)
	write(t, filepath.Join(dst, "d", "sub", "gone", "deep", "f"), []byte("x"), 0o600)
	os.Symlink(elsewhere, filepath.Join(dst, "d", "link-out"))

	res := restoreTo(t, r, s, "", dst, Options{})
	if res.Deleted != 0 {
		t.Fatal("deleted without Delete")
	}
	// A roll-back: what differs replaced, what is extra gone.
	res = restoreTo(t, r, s, "", dst, Options{Overwrite: OverwriteIfChanged, Delete: true})
	if len(res.Problems) > 0 {
		t.Fatal(res.Problems)
	}
	if res.Deleted != 3 {
		t.Errorf("deleted %d, want extra, d/sub/gone and d/link-out", res.Deleted)
	}
	for _, p := range []string{"extra", "d/sub/gone", "d/link-out"} {
		if _, err := os.Lstat(filepath.Join(dst, p)); !os.IsNotExist(err) {
			t.Errorf("%s is still there", p)
		}
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "keep")); err != nil {
		t.Error("delete followed a symlink out of the target")
	}
	sameTree(t, src, dst)
}

// TestSwappedDirectoryIsNotFollowed: another user who can write the
// target renames a directory the restore just made and puts a symlink (or
// a directory of their own) in its place; nothing is written through it
// and nothing outside the target changes.
func TestSwappedDirectoryIsNotFollowed(t *testing.T) {
	src := sourceTree(t)
	r, s := snapshotOf(t, src)
	for _, swap := range []string{"symlink", "directory"} {
		t.Run(swap, func(t *testing.T) {
			if swap == "directory" {
				needRoot(t) // another user's directory
			}
			dst := t.TempDir()
			outside := t.TempDir()
			unix.Chmod(outside, 0o700)
			victim := filepath.Join(outside, "victim")
			write(t, victim, []byte("root's"), 0o600)
			afterMkdir = func(parent int, name string) {
				if name != "d" {
					return
				}
				if err := unix.Renameat(parent, name, parent, name+".moved"); err != nil {
					t.Error(err)
				}
				if swap == "symlink" {
					err := unix.Symlinkat(outside, parent, name)
					if err != nil {
						t.Error(err)
					}
					return
				}
				unix.Mkdirat(parent, name, 0o700)
				unix.Fchownat(parent, name, 1001, 1001, 0)
			}
			t.Cleanup(func() { afterMkdir = nil })
			res := restoreTo(t, r, s, "", dst, Options{})
			names, _ := os.ReadDir(outside)
			if len(names) != 1 {
				t.Errorf("restore wrote into the swapped-in %s: %d entries there", swap, len(names))
			}
			if st := lstat(t, outside); st.Mode&0o777 != 0o700 {
				t.Errorf("restore chmodded the swapped-in %s: %o", swap, st.Mode&0o777)
			}
			if st := lstat(t, victim); st.Mode&0o777 != 0o600 {
				t.Errorf("restore chmodded a file outside: %o", st.Mode&0o777)
			}
			if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Path, "/d") {
				t.Errorf("problems %v, want one for d", res.Problems)
			}
			// Everything else came back.
			if string(mustRead(t, filepath.Join(dst, "big"))) != string(mustRead(t, filepath.Join(src, "big"))) {
				t.Error("big not restored")
			}
		})
	}
}

// TestTargetThroughAUsersSymlink: run as root, a restore follows no
// symlink of another user on the way to its target, neither for a tree
// (with --delete, which would empty where it leads) nor for a single
// file; a symlink of root's own is followed, as an admin's /home ->
// /data/home must be.
func TestTargetThroughAUsersSymlink(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	write(t, filepath.Join(src, "f"), []byte("from the snapshot"), 0o644)
	r, s := snapshotOf(t, src)
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	os.Mkdir(victim, 0o700)
	write(t, filepath.Join(victim, "keepme"), []byte("precious"), 0o600)
	home := filepath.Join(base, "home")
	os.Mkdir(home, 0o755)
	os.Chown(home, 1001, 1001)
	for _, link := range []string{"restored", "file-here"} {
		if err := os.Symlink(victim, filepath.Join(home, link)); err != nil {
			t.Fatal(err)
		}
		os.Lchown(filepath.Join(home, link), 1001, 1001)
	}
	ctx := context.Background()
	if _, err := Restore(ctx, r, s, "", filepath.Join(home, "restored"), Options{Overwrite: OverwriteAlways, Delete: true}); err == nil ||
		!strings.Contains(err.Error(), "a symlink of uid 1001") {
		t.Errorf("tree through uid 1001's symlink: %v, want refused", err)
	}
	if _, err := Restore(ctx, r, s, "f", filepath.Join(home, "file-here", "f"), Options{Overwrite: OverwriteAlways}); err == nil {
		t.Error("file through uid 1001's symlink: restored")
	}
	if names, _ := os.ReadDir(victim); len(names) != 1 || names[0].Name() != "keepme" {
		t.Errorf("where the symlinks lead: %v, want keepme alone", names)
	}
	if st := lstat(t, victim); st.Mode&0o7777 != 0o700 {
		t.Errorf("where the symlinks lead became %o", st.Mode&0o7777)
	}

	rootLink := filepath.Join(base, "admins-link")
	os.Symlink(filepath.Join(base, "data"), rootLink)
	res := restoreTo(t, r, s, "", filepath.Join(rootLink, "restored"), Options{})
	if res.Files != 1 || string(mustRead(t, filepath.Join(base, "data", "restored", "f"))) != "from the snapshot" {
		t.Errorf("through root's own symlink: %+v", res)
	}
}

// posixACL encodes a POSIX ACL as the kernel's system.posix_acl_* xattr
// value: version 2, then tag, permissions and id of each entry, sorted.
func posixACL(entries ...[3]uint32) []byte {
	b := []byte{2, 0, 0, 0}
	for _, e := range entries {
		b = append(b, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8), byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	return b
}

// grantACL gives uid rwx: an access ACL, or with def the default ACL that
// what is made inside inherits.
func grantACL(t *testing.T, path string, uid uint32, def bool) {
	t.Helper()
	const userObj, user, groupObj, mask, other = 0x01, 0x02, 0x04, 0x10, 0x20
	const none = ^uint32(0)
	acl := posixACL([3]uint32{userObj, 7, none}, [3]uint32{user, 7, uid}, [3]uint32{groupObj, 5, none},
		[3]uint32{mask, 7, none}, [3]uint32{other, 0, none})
	name := "system.posix_acl_access"
	if def {
		name = "system.posix_acl_default"
	}
	if err := unix.Setxattr(path, name, acl, 0); err != nil {
		t.Skipf("no POSIX ACLs here: %v", err)
	}
}

// noACLs fails for each POSIX ACL the entries below dir hold.
func noACLs(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
			if _, err := unixGetxattr(path, name); !errors.Is(err, unix.ENODATA) {
				t.Errorf("%s: %s %v: an ACL the snapshot does not hold", path, name, err)
			}
		}
		return nil
	})
}

// TestInheritedACLsDropped: what the restore makes in a directory with a
// default ACL (a user's, who names themselves in it) does not inherit
// it: with the snapshot's modes set, its mask would let that user read
// root's 0640 files. An ACL that the snapshot holds comes back.
func TestInheritedACLsDropped(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "d"), 0o750)
	write(t, filepath.Join(src, "d", "f"), []byte("root's"), 0o640)
	write(t, filepath.Join(src, "g"), []byte("root's too"), 0o640)
	write(t, filepath.Join(src, "shared"), []byte("for 1003"), 0o640)
	grantACL(t, filepath.Join(src, "shared"), 1003, false)
	if err := unix.Mkfifo(filepath.Join(src, "pipe"), 0o660); err != nil {
		t.Fatal(err)
	}
	os.Chmod(src, 0o755)
	r, s := snapshotOf(t, src)
	home := t.TempDir()
	os.Chmod(filepath.Dir(home), 0o755)
	os.Chown(home, 1001, 1001)
	grantACL(t, home, 1001, true)
	for _, overwrite := range []Overwrite{OverwriteNever, OverwriteAlways} {
		dst := filepath.Join(home, "new", "restored")
		res := restoreTo(t, r, s, "", dst, Options{Overwrite: overwrite})
		if len(res.Problems) > 0 {
			t.Fatal(res.Problems)
		}
		if acl, err := unixGetxattr(filepath.Join(dst, "shared"), "system.posix_acl_access"); err != nil || len(acl) != 44 {
			t.Errorf("%v: the snapshot's ACL of shared: %x %v", overwrite, acl, err)
		}
		os.Remove(filepath.Join(dst, "shared"))
		noACLs(t, filepath.Join(home, "new"))
		if out, err := exec.Command("setpriv", "--reuid", "1001", "--regid", "1001", "--clear-groups", "cat", filepath.Join(dst, "d", "f")).CombinedOutput(); err == nil {
			t.Errorf("%v: uid 1001 reads root's 0640 file: %s", overwrite, out)
		}
		os.RemoveAll(filepath.Join(home, "new"))
	}

	// A directory of another user that the restore takes (Overwrite)
	// loses the ACLs that user gave it, before anything is written in.
	src2 := t.TempDir()
	os.Mkdir(filepath.Join(src2, "priv"), 0o700)
	write(t, filepath.Join(src2, "priv", "notes"), []byte("secret"), 0o640)
	r2, s2 := snapshotOf(t, src2)
	dst := t.TempDir()
	priv := filepath.Join(dst, "priv")
	os.Mkdir(priv, 0o755)
	grantACL(t, priv, 1002, false)
	grantACL(t, priv, 1002, true)
	os.Chown(priv, 1001, 1001)
	if res := restoreTo(t, r2, s2, "", dst, Options{Overwrite: OverwriteAlways}); len(res.Problems) > 0 {
		t.Fatal(res.Problems)
	}
	noACLs(t, priv)
}

// TestMadeTargetSwapped: a target the restore makes, replaced by another
// user's directory between mkdir and open, gets nothing written into it.
func TestMadeTargetSwapped(t *testing.T) {
	needRoot(t)
	src := sourceTree(t)
	r, s := snapshotOf(t, src)
	home := t.TempDir()
	dst := filepath.Join(home, "restored")
	resolve.AfterMkdir = func(parent int, name string) {
		if name != "restored" {
			return
		}
		unix.Renameat(parent, name, parent, name+".moved")
		unix.Mkdirat(parent, name, 0o700)
		unix.Fchownat(parent, name, 1001, 1001, 0)
	}
	t.Cleanup(func() { resolve.AfterMkdir = nil })
	_, err := Restore(context.Background(), r, s, "", dst, Options{})
	if err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("restore into a swapped target: %v, want refused", err)
	}
	if names, _ := os.ReadDir(dst); len(names) != 0 {
		t.Errorf("written into the swapped-in directory: %d entries", len(names))
	}
}

// TestFindDevice: a block device as target is found on the resolved
// inode, and a symlink of another user on the way is not followed (it
// would turn a tree's restore into a disk's, onto a device of that
// user's choosing).
func TestFindDevice(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	plain := filepath.Join(base, "plain")
	write(t, plain, nil, 0o644)
	for _, p := range []string{plain, filepath.Join(base, "missing"), base} {
		if dev, err := FindDevice(p); dev != nil || err != nil {
			t.Errorf("%s: %v %v, want no device and no error", p, dev, err)
		}
	}
	link := filepath.Join(base, "link")
	os.Symlink("/dev/loop0", link)
	os.Lchown(link, 1001, 1001)
	if dev, err := FindDevice(link); dev != nil || err == nil || !strings.Contains(err.Error(), "symlink of uid 1001") {
		t.Errorf("through uid 1001's symlink: %v %v, want refused", dev, err)
	}
}
