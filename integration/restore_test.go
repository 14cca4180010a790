package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRestoreIntoOthersDirectory: root restores into a directory uid 1001
// owns, while 1001 swaps the directory d the restore just made for a
// symlink: to a directory of theirs (where the old restore created every
// file of d) or to a root-owned 0600 file (which the old restore's last
// pass made 0777). Nothing outside the target is written or chmodded.
// Then the restore of the same snapshot into the now existing directory
// leaves its owner and mode (1777 here) as they are.
func TestRestoreIntoOthersDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv")
	}
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o777)
	unix.Chmod(filepath.Join(src, "d"), 0o777)
	for i := range 3000 {
		os.WriteFile(filepath.Join(src, "d", fmt.Sprintf("f%04d", i)), []byte("x"), 0o644)
	}
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")

	// A place 1001 can reach: the test's own directories are 0700.
	base, err := os.MkdirTemp("", "chainfs-swap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	unix.Chmod(base, 0o755)
	theirs := filepath.Join(base, "theirs")
	os.Mkdir(theirs, 0o755)
	os.Chown(theirs, 1001, 1001)
	rootFile := filepath.Join(base, "root-file")
	os.WriteFile(rootFile, []byte("root's"), 0o600)

	for i, to := range []string{theirs, rootFile} {
		dst := filepath.Join(base, fmt.Sprintf("home%d", i))
		os.Mkdir(dst, 0o755)
		os.Chown(dst, 1001, 1001)
		// 1001 waits for d, moves it away and puts the symlink there.
		swapper := exec.Command("setpriv", "--reuid=1001", "--regid=1001", "--clear-groups", "bash", "-c",
			`cd "$1" && until [ -d d ] && [ ! -L d ]; do :; done; mv d d.moved && ln -s "$2" d`, "swapper", dst, to)
		if err := swapper.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- swapper.Wait() }()
		r := e.run("restore", "v/s", dst)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("swapper: %v", err)
			}
		case <-time.After(10 * time.Second):
			swapper.Process.Kill()
			<-done
			t.Fatal("the swapper never saw d")
		}
		if r.code != 0 && r.code != 3 {
			t.Errorf("restore: exit %d: %s", r.code, r.stderr)
		}
		if fi, err := os.Lstat(filepath.Join(dst, "d")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("d was not swapped for a symlink: %v %v", fi, err)
		}
	}
	if names, _ := os.ReadDir(theirs); len(names) != 0 {
		t.Errorf("restore wrote %d entries into 1001's directory through the symlink", len(names))
	}
	for path, want := range map[string]uint32{theirs: 0o755, rootFile: 0o600} {
		var st unix.Stat_t
		unix.Stat(path, &st)
		if st.Mode&0o7777 != want {
			t.Errorf("%s: mode %o, want %o: chmodded through the symlink", path, st.Mode&0o7777, want)
		}
	}

	// An existing directory keeps its metadata without --overwrite.
	dst := filepath.Join(base, "shared")
	os.Mkdir(dst, 0o700)
	unix.Chmod(dst, 0o1777)
	os.Chown(dst, 1001, 1001)
	e.ok("restore", "v/s", dst)
	r := e.fails(3, "3000 existing entries left as they were; --overwrite if-changed|always replaces them", "restore", "v/s", dst)
	if strings.Count(r.stderr, "\n") > 3 {
		t.Errorf("one line per existing entry, not a summary:\n%s", r.stderr)
	}
	var st unix.Stat_t
	unix.Stat(dst, &st)
	if st.Mode&0o7777 != 0o1777 || st.Uid != 1001 {
		t.Errorf("an existing directory became mode %o uid %d, want 1777 1001", st.Mode&0o7777, st.Uid)
	}
	e.ok("restore", "--overwrite", "if-changed", "v/s", dst)
	e.fails(2, "--overwrite takes never, if-changed or always", "restore", "--overwrite", "v/s", dst)
	e.fails(2, "--delete removes from a directory", "restore", "--delete", "v/s/d/f0001", dst)
}

// TestRestoreDeleteKeepsWhatSnapshotsLeaveOut: restore --delete rolls a
// source back to a snapshot, but keeps what the volume's snapshots leave
// out on purpose: the repository inside the source, what the volume
// excludes (also below a directory the snapshot does not hold), and a file
// system mounted in the source.
func TestRestoreDeleteKeepsWhatSnapshotsLeaveOut(t *testing.T) {
	e := newEnv(t)
	src := e.dir // the repository is inside the source
	os.WriteFile(filepath.Join(src, "kept.txt"), []byte("in the snapshot"), 0o644)
	e.ok("volume", "add", "v", src, "--exclude", "*.tmp")
	e.snapshot("v", "--name", "s")

	os.WriteFile(filepath.Join(src, "extra.txt"), []byte("not in the snapshot"), 0o644)
	os.MkdirAll(filepath.Join(src, "newdir"), 0o755)
	os.WriteFile(filepath.Join(src, "newdir", "b"), []byte("not in the snapshot"), 0o644)
	os.WriteFile(filepath.Join(src, "newdir", "a.tmp"), []byte("excluded"), 0o644)
	os.WriteFile(filepath.Join(src, "top.tmp"), []byte("excluded"), 0o644)
	mnt := filepath.Join(src, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	os.WriteFile(filepath.Join(mnt, "other-fs"), []byte("another file system"), 0o644)

	out := e.ok("restore", "v/s", src, "--overwrite", "if-changed", "--delete")
	for _, gone := range []string{"extra.txt", "newdir/b"} {
		if _, err := os.Lstat(filepath.Join(src, gone)); !os.IsNotExist(err) {
			t.Errorf("%s, not in the snapshot, is still there after --delete (%v)", gone, err)
		}
	}
	for _, kept := range []string{"kept.txt", "newdir/a.tmp", "top.tmp", "mnt/other-fs", "repo/chainfs.json"} {
		if _, err := os.Lstat(filepath.Join(src, kept)); err != nil {
			t.Errorf("%s was deleted: %v", kept, err)
		}
	}
	if !strings.Contains(out, "kept although not in it") {
		t.Errorf("the restore does not say what it kept:\n%s", out)
	}
	e.ok("check", "--read-data")
	e.ok("snapshot", "list", "v")
}

// TestVolumeSourceSwappedForSymlink: a volume made from an image in uid
// 1001's home, whose directory 1001 then swaps for a symlink to a folder
// under a root-only (0700) directory, is not snapshotted through it: the
// snapshot would show that folder's files to 1001 through the mount. A
// symlink of root's own as a source is followed.
func TestVolumeSourceSwappedForSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("from the image"), 0o644)
	e.ok("volume", "add", "t", src)
	e.snapshot("t")
	e.ok("image", "create", "img", "--from", "t/latest")

	base, err := os.MkdirTemp("", "chainfs-source")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	private := filepath.Join(base, "private", "sub")
	os.MkdirAll(private, 0o755)
	os.Chmod(filepath.Dir(private), 0o700)
	os.WriteFile(filepath.Join(private, "note"), []byte("root's note"), 0o644)
	home := filepath.Join(base, "home")
	os.Mkdir(home, 0o755)
	os.Chown(home, user, user)
	plain := filepath.Join(home, "plain")
	e.ok("volume", "add", "vp", plain, "--from-image", "img")

	if out, err := asUser("bash", "-c", fmt.Sprintf("mv %q %q.old && ln -s %q %q", plain, plain, private, plain)); err != nil {
		t.Fatalf("the swap as uid %d: %v\n%s", user, err, out)
	}
	e.fails(1, fmt.Sprintf("a symlink of uid %d on the way, not followed", user), "snapshot", "create", "vp", "--allow-empty")
	if out := e.ok("snapshot", "list", "vp"); strings.Count(out, "\n") > 2 {
		t.Errorf("a snapshot was made through the symlink:\n%s", out)
	}
	e.fails(1, fmt.Sprintf("a symlink of uid %d on the way, not followed", user), "volume", "add", "vq", plain)
	os.Lchown(plain, 0, 0)
	s := e.snapshot("vp", "--allow-empty")
	e.ok("restore", "vp/"+s.Name+"/note", filepath.Join(e.dir, "note"))
}

// TestCreateAndRestoreCountAlike: snapshot create and restore of the whole
// snapshot count the same files, directories (the top included), symlinks
// and others, in their words and in --json.
func TestCreateAndRestoreCountAlike(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	sh(t, "mkdir -p "+src+"/a/b && echo x > "+src+"/f && echo y > "+src+"/a/b/g && ln -s f "+src+"/l && ln -s a "+src+"/a/l2 && mkfifo "+src+"/p")
	e.ok("volume", "add", "v", src)
	type counts struct {
		Files    uint64 `json:"files"`
		Dirs     uint64 `json:"dirs"`
		Symlinks uint64 `json:"symlinks"`
		Others   uint64 `json:"others"`
	}
	var made struct {
		Stats counts `json:"stats"`
	}
	if err := json.Unmarshal([]byte(e.ok("snapshot", "create", "v", "--name", "s", "--json")), &made); err != nil {
		t.Fatal(err)
	}
	var restored counts
	if err := json.Unmarshal([]byte(e.ok("restore", "v/s", filepath.Join(e.dir, "r"), "--json")), &restored); err != nil {
		t.Fatal(err)
	}
	want := counts{Files: 2, Dirs: 3, Symlinks: 2, Others: 1}
	if made.Stats != want || restored != want {
		t.Errorf("snapshot create counts %+v, restore %+v; want %+v", made.Stats, restored, want)
	}
	out := e.ok("restore", "v/s", filepath.Join(e.dir, "r2"))
	if !strings.Contains(out, ": 2 files, 3 directories, 2 symlinks, 1 other;") {
		t.Errorf("restore says: %s", out)
	}
}
