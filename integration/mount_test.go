package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountShowsSourceExactly: a snapshot seen through the mount is the
// source, to the byte and the nanosecond, with holes, hard links, xattrs,
// devices; rsync agrees, and copying out with rsync twice sends nothing
// the second time.
func TestMountShowsSourceExactly(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	makeCraftedTree(t, src)
	goroot := strings.TrimSpace(sh(t, "go env GOROOT"))
	sh(t, fmt.Sprintf("cp -a %s/src/net %s/go-net", goroot, src))
	treeState(t, src) // let relatime settle on symlinks; see TestCraftedTreeRoundTrip
	want := treeState(t, src)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "one")
	d := e.serve(filepath.Join(e.dir, "mnt"))
	snap := d.snapDir("v", "one")

	compareTrees(t, want, treeState(t, snap), "mount of v/one")
	rsyncSame(t, src, snap)
	// diff cannot compare fifos and sockets; it compares everything else.
	sh(t, fmt.Sprintf("diff -r --no-dereference %s/go-net %s/go-net", src, snap))

	// Recovery with rsync: the second pass has nothing to send.
	dst := filepath.Join(e.dir, "recovered")
	sh(t, fmt.Sprintf("rsync -aHAX %s/ %s/", snap, dst))
	if out := sh(t, fmt.Sprintf("rsync -aHAX -i %s/ %s/", snap, dst)); strings.TrimSpace(out) != "" {
		t.Errorf("second rsync from the mount transfers:\n%s", out)
	}
	// rsync -a keeps neither atimes nor holes (that takes -U and -S, and
	// -U keeps whole seconds only); everything else must be exact.
	compareTrees(t, withoutAtimesAndHoles(want), withoutAtimesAndHoles(treeState(t, dst)), "rsync -aHAX from the mount")

	// latest follows; a snapshot is read-only.
	if target, _ := os.Readlink(filepath.Join(d.mount, "volumes/v/latest")); target != "one" {
		t.Errorf("latest -> %q", target)
	}
	for _, cmd := range []string{"touch %s/small.txt", "rm %s/small.txt", "mkdir %s/new", "setfattr -n user.x -v y %s/small.txt", "chmod 600 %s/small.txt"} {
		out, err := exec.Command("bash", "-c", fmt.Sprintf(cmd, snap)).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Read-only file system") {
			t.Errorf("%s: %v %s; want EROFS", fmt.Sprintf(cmd, snap), err, out)
		}
	}
	// df shows the repository's real usage.
	df := sh(t, "df -B1 --output=used "+d.mount)
	if !strings.Contains(df, "Used") || strings.TrimSpace(strings.Split(strings.TrimSpace(df), "\n")[1]) == "0" {
		t.Errorf("df on the mount: %q", df)
	}
}

// TestInodeNumbersStable: the same file has the same inode number in every
// listing and after a remount; hard links share theirs.
func TestInodeNumbersStable(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	makeCraftedTree(t, src)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "one")
	mnt := filepath.Join(e.dir, "mnt")
	d := e.serve(mnt)
	list := func() string {
		return sh(t, "cd "+d.snapDir("v", "one")+" && ls -liRa --time-style=+ | sed 's/  */ /g'")
	}
	first := list()
	if second := list(); second != first {
		t.Errorf("two listings differ:\n%s\n---\n%s", first, second)
	}
	same := sh(t, fmt.Sprintf("find %s -samefile %s/dir/linked | sort", d.snapDir("v", "one"), d.snapDir("v", "one")))
	if strings.Count(same, "\n") != 3 {
		t.Errorf("find -samefile dir/linked finds:\n%s", same)
	}
	d.stop()
	d = e.serve(mnt)
	if again := list(); again != first {
		t.Errorf("listing after remount differs:\n%s\n---\n%s", first, again)
	}
}

// TestLiveSnapshots: snapshots made or deleted by the CLI (through the
// daemon) appear and vanish at once; the CLI prints the same with and
// without the daemon.
func TestLiveSnapshots(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("one"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "one")
	withoutDaemon := e.ok("snapshot", "list")
	withoutDaemonVol := e.ok("volume", "list", "--json")
	d := e.serve(filepath.Join(e.dir, "mnt"))
	if got := e.ok("snapshot", "list"); got != withoutDaemon {
		t.Errorf("snapshot list through the daemon:\n%s\nwithout:\n%s", got, withoutDaemon)
	}
	if got := e.ok("volume", "list", "--json"); got != withoutDaemonVol {
		t.Errorf("volume list --json through the daemon:\n%s\nwithout:\n%s", got, withoutDaemonVol)
	}
	os.WriteFile(filepath.Join(src, "f"), []byte("two"), 0o644)
	e.snapshot("v", "--name", "two")
	if b, err := os.ReadFile(filepath.Join(d.mount, "volumes/v/latest/f")); err != nil || string(b) != "two" {
		t.Errorf("latest/f after a CLI snapshot: %q %v", b, err)
	}
	e.ok("snapshot", "delete", "v/one")
	if _, err := os.Stat(d.snapDir("v", "one")); !os.IsNotExist(err) {
		t.Errorf("deleted snapshot still visible: %v", err)
	}
	// A relative restore target is the caller's, not the daemon's.
	cmd := exec.Command(chainfsBin, "restore", "v/two/f", "restored-f")
	cmd.Dir, cmd.Env = e.dir, append(os.Environ(), "CHAINFS_REPO="+e.repo)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("relative restore: %v %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "restored-f")); string(b) != "two" {
		t.Errorf("restored-f: %q", b)
	}
	// A second daemon on the same repository is refused.
	r := e.run("serve", "--mount", filepath.Join(e.dir, "mnt2"))
	if r.code == 0 || !strings.Contains(r.stderr, "held by process") && !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("second daemon: exit %d %s", r.code, r.stderr)
	}
}

// TestControlDirectory drives .control/ as scripts do.
func TestControlDirectory(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "small"), []byte("x"), 0o644)
	e.ok("volume", "add", "v", src)
	gate := mountGate(t, filepath.Join(e.dir, "gated"))
	e.ok("volume", "add", "big", gate.dir)
	d := e.serve(filepath.Join(e.dir, "mnt"))
	ctl := filepath.Join(d.mount, ".control")

	// A write returns when the snapshot exists.
	sh(t, fmt.Sprintf("echo v first > %s/snapshot && test -f %s/small", ctl, d.snapDir("v", "first")))
	sh(t, fmt.Sprintf("echo v > %s/snapshot && ls %s/volumes/v/latest/small", ctl, d.mount))

	writeErr := func(file, line string) string {
		out, _ := exec.Command("bash", "-c", fmt.Sprintf("printf '%%s\\n' %q > %s/%s", line, ctl, file)).CombinedOutput()
		return string(out)
	}
	if out := writeErr("snapshot", "v first"); !strings.Contains(out, "File exists") {
		t.Errorf("duplicate name: %s", out)
	}
	if out := writeErr("snapshot", "too many fields here"); !strings.Contains(out, "Invalid argument") {
		t.Errorf("malformed line: %s", out)
	}
	if out := writeErr("snapshot", "nosuch"); !strings.Contains(out, "No such file or directory") {
		t.Errorf("unknown volume: %s", out)
	}
	if out := writeErr("delete", "v/nosuch"); !strings.Contains(out, "No such file or directory") {
		t.Errorf("unknown snapshot: %s", out)
	}
	if out := writeErr("delete", "no-slash"); !strings.Contains(out, "Invalid argument") {
		t.Errorf("malformed delete: %s", out)
	}
	huge := strings.Repeat("x", 10000)
	if out := writeErr("snapshot", huge); !strings.Contains(out, "Invalid argument") {
		t.Errorf("huge write: %s", out)
	}
	status, _ := os.ReadFile(filepath.Join(ctl, "status"))
	if !strings.Contains(string(status), `"state":"rejected"`) || !strings.Contains(string(status), "volume nosuch: not found") {
		t.Errorf("status does not explain the failures:\n%s", status)
	}

	// EBUSY while a snapshot of the volume runs: the first one waits for
	// the gate, inside its read of the source.
	slow := exec.Command("bash", "-c", fmt.Sprintf("echo big > %s/snapshot", ctl))
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	gate.waitRead(t)
	if out := writeErr("snapshot", "big"); !strings.Contains(out, "Device or resource busy") {
		t.Errorf("second snapshot of a busy volume: %s", out)
	}
	if out := e.run("snapshot", "create", "big"); out.code != 4 || !strings.Contains(out.stderr, "snapshot big/") {
		t.Errorf("CLI snapshot of a busy volume: exit %d %s", out.code, out.stderr)
	}
	gate.open()
	if err := slow.Wait(); err != nil {
		t.Errorf("the gated snapshot: %v", err)
	}

	// mkdir and rmdir, ZFS style.
	sh(t, fmt.Sprintf("mkdir %s && test -f %s/small", d.snapDir("v", "by-mkdir"), d.snapDir("v", "by-mkdir")))
	sh(t, fmt.Sprintf("rmdir %s && ! test -e %s", d.snapDir("v", "first"), d.snapDir("v", "first")))
	if out := e.ok("snapshot", "list", "v"); strings.Contains(out, "first") || !strings.Contains(out, "by-mkdir") {
		t.Errorf("after mkdir and rmdir:\n%s", out)
	}

	// Only root and the repository's owner may act.
	nobody := "setpriv --reuid=65534 --regid=65534 --clear-groups "
	out, err := exec.Command("bash", "-c", nobody+fmt.Sprintf("bash -c 'echo v > %s/snapshot'", ctl)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("snapshot as nobody: %v %s", err, out)
	}
	out, err = exec.Command("bash", "-c", nobody+"mkdir "+d.snapDir("v", "nobodys")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("mkdir as nobody: %v %s", err, out)
	}
}

// TestCopyWhileChanging: a file copied from an old snapshot while another
// snapshot is made and a third deleted is exact.
func TestCopyWhileChanging(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	data := randomData(9, 96<<20)
	os.WriteFile(filepath.Join(src, "big"), data, 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "old")
	e.snapshot("v", "--name", "doomed")
	os.WriteFile(filepath.Join(src, "big"), randomData(10, 96<<20), 0o644)
	d := e.serve(filepath.Join(e.dir, "mnt"))

	cp := exec.Command("cp", filepath.Join(d.snapDir("v", "old"), "big"), filepath.Join(e.dir, "copy"))
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	// A reader holds a file of the snapshot about to be deleted.
	held, err := os.Open(filepath.Join(d.snapDir("v", "doomed"), "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	head := make([]byte, 1<<20)
	if _, err := held.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	e.snapshot("v", "--name", "new")
	e.ok("snapshot", "delete", "v/doomed")
	if err := cp.Wait(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(e.dir, "copy"))
	if string(got) != string(data) {
		t.Error("file copied from the old snapshot differs from the source")
	}
	// The held file still reads its own bytes after its snapshot went;
	// a new lookup of the deleted snapshot finds nothing.
	tail := make([]byte, 1<<20)
	if _, err := held.ReadAt(tail, int64(len(data)-len(tail))); err != nil || string(tail) != string(data[len(data)-len(tail):]) {
		t.Errorf("reading a file whose snapshot was deleted: %v", err)
	}
	if _, err := os.Stat(d.snapDir("v", "doomed")); !os.IsNotExist(err) {
		t.Errorf("deleted snapshot: %v", err)
	}
}

// TestMountPointProblems: each bad mount point is one clear error.
func TestMountPointProblems(t *testing.T) {
	e := newEnv(t)
	e.fails(1, "does not exist", "serve", "--mount", filepath.Join(e.dir, "missing"))
	full := filepath.Join(e.dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	e.fails(1, "not empty", "serve", "--mount", full)
	busy := filepath.Join(e.dir, "busy")
	os.MkdirAll(busy, 0o755)
	sh(t, "mount -t tmpfs tmpfs "+busy)
	t.Cleanup(func() { exec.Command("umount", busy).Run() })
	e.fails(1, "already mounted", "serve", "--mount", busy)
}

// TestStaleMountAfterCrash: a daemon killed with -9 leaves a dead mount;
// the next daemon clears it and serves, and the repository is not locked.
func TestStaleMountAfterCrash(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("still here"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	mnt := filepath.Join(e.dir, "mnt")
	d := e.serve(mnt)
	d.cmd.Process.Kill()
	<-d.done
	if _, err := os.Stat(filepath.Join(mnt, "volumes")); err == nil {
		t.Fatal("the mount still answers after its daemon was killed")
	}
	d = e.serve(mnt)
	if b, err := os.ReadFile(filepath.Join(d.snapDir("v", "s"), "f")); err != nil || string(b) != "still here" {
		t.Errorf("after restart: %q %v", b, err)
	}
	if !strings.Contains(d.log.String(), "clearing stale mount") {
		t.Errorf("the daemon did not say it cleared the stale mount:\n%s", d.log.String())
	}
}

// TestFixedTopRefusesChanges: as root, nothing of the mount can be
// removed, renamed, created, linked or changed, at the top, in the control
// directory, in a volume, in a snapshot or in an image: each call fails
// with EROFS or EPERM and everything is still there afterwards, also once
// the kernel has dropped its caches. (go-fuse answers success for an
// unlink or rmdir a node does not implement, and the entry vanished until
// remount.)
func TestFixedTopRefusesChanges(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the modes refuse anyone else before the daemon is asked")
	}
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "dir"), 0o755)
	os.WriteFile(filepath.Join(src, "file"), []byte("data\n"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	e.ok("image", "create", "img", "--from", "v/s")
	d := e.serve(filepath.Join(e.dir, "mnt"))
	m := d.mount
	entries := []string{".control", ".control/status", ".control/snapshot", "volumes", "volumes/v", "volumes/v/latest",
		"volumes/v/s", "volumes/v/s/file", "volumes/v/s/dir", "images", "images/img", "images/img/file"}

	for _, cmd := range []string{
		"rm -f .control/status", "rm -f .control/snapshot", "rmdir .control", "rmdir images", "rmdir volumes",
		"rm -f volumes/v/s/file", "rmdir volumes/v/s/dir", "rm -f images/img/file", "rmdir images/img", "rm -f volumes/v/latest",
		"mv volumes/v/s/file volumes/v/s/moved", "mv images/img/file images/img/moved", "mv images moved", "mv .control/status .control/moved",
		"mv volumes/v volumes/w", "touch new", "touch .control/new", "touch volumes/new", "touch images/new", "touch volumes/v/s/new",
		"ln volumes/v/s/file linked", "ln volumes/v/s/file volumes/v/s/linked", "ln -s file symlinked", "ln -s file images/img/symlinked",
		"mkfifo fifo", "mkfifo volumes/v/s/fifo", "mkfifo .control/fifo", "mknod node c 1 3", "mkdir new-dir", "mkdir images/new-dir",
		"mkdir .control/new-dir", "mkdir images/img/new-dir",
		"chmod 777 .control/status", "chmod 777 volumes", "chmod 700 images", "chmod 777 .", "chmod 600 volumes/v/s/file",
		"chown 1:1 .control/snapshot", "chown 1:1 images/img/file",
		// truncate(1) and touch(1) would open status for writing, which is
		// EACCES (the status file is not for writing); truncate(2) is below.
		"truncate -s 1 .control/snapshot", "truncate -s 0 volumes/v/s/file", "truncate -s 0 images/img/file",
		"touch -c -d 2000-01-01 .control/status", "touch -d 2000-01-01 volumes/v/s/file",
	} {
		cmd := exec.Command("bash", "-c", cmd)
		cmd.Dir = m
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Read-only file system") && !strings.Contains(string(out), "Operation not permitted") {
			t.Errorf("%s: %v %s; want EROFS or EPERM", cmd, err, out)
		}
	}
	if err := os.Truncate(filepath.Join(m, ".control/status"), 0); !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EPERM) {
		t.Errorf("truncate(2) .control/status: %v; want EROFS or EPERM", err)
	}
	for _, p := range []string{".control/status", "images", "volumes/v/s/file", "images/img/file", "."} {
		if err := unix.Setxattr(filepath.Join(m, p), "user.x", []byte("y"), 0); !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EPERM) {
			t.Errorf("setxattr %s: %v; want EROFS or EPERM", p, err)
		}
		if err := unix.Removexattr(filepath.Join(m, p), "user.x"); !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EPERM) {
			t.Errorf("removexattr %s: %v; want EROFS or EPERM", p, err)
		}
	}
	check := func(when string) {
		for _, p := range entries {
			if _, err := os.Lstat(filepath.Join(m, p)); err != nil {
				t.Errorf("%s %s: %v", when, p, err)
			}
		}
		if got := strings.Fields(sh(t, "ls -A "+m)); strings.Join(got, " ") != ".control images volumes" {
			t.Errorf("%s the top lists %q", when, got)
		}
	}
	check("afterwards")
	// Dropping the kernel's caches makes it ask the daemon again: a name
	// go-fuse had dropped from its tree would be gone now.
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("2\n"), 0)
	check("after dropping caches")
}

// TestFixedDirectoriesAttributes: the mount's own directories have a
// directory's link count (2 and one per subdirectory; images/, whose
// subdirectories depend on the caller, 1: not counted) and a real time:
// the daemon's start, or for a volume's directory its newest snapshot's,
// which latest has too.
func TestFixedDirectoriesAttributes(t *testing.T) {
	before := time.Now().Add(-time.Second)
	e, d := servedToOthers(t)
	e.snapshot("v", "--name", "s2")
	e.ok("image", "create", "mine", "--from", "v/s")
	e.ok("image", "create", "theirs", "--from", "v/s")
	e.ok("image", "share", "theirs", "--with", fmt.Sprint(user))
	var snaps []struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(e.ok("snapshot", "list", "v", "--json")), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("snapshot list: %v", err)
	}
	newest := snaps[1].Time
	for _, c := range []struct {
		path  string
		nlink uint64
		at    time.Time // zero: the daemon's start
	}{
		{d.mount, 5, time.Time{}},
		{filepath.Join(d.mount, "volumes"), 3, time.Time{}},
		{filepath.Join(d.mount, ".control"), 2, time.Time{}},
		{filepath.Join(d.mount, "images"), 1, time.Time{}}, // not counted: it differs by caller
		{filepath.Join(d.mount, "volumes", "v"), 4, newest},
		{filepath.Join(d.mount, "volumes", "v", "latest"), 1, newest},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(c.path, &st); err != nil {
			t.Fatal(err)
		}
		mtime := time.Unix(st.Mtim.Unix())
		ok := mtime.Equal(c.at)
		if c.at.IsZero() {
			ok = mtime.After(before) && mtime.Before(time.Now())
		}
		if st.Nlink != c.nlink || !ok {
			t.Errorf("%s: %d links, mtime %v; want %d, %v (zero: the daemon's start)", c.path, st.Nlink, mtime, c.nlink, c.at)
		}
	}
	if out, err := asUser("stat", "-c", "%h", filepath.Join(d.mount, "images")); err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("images/ as uid %d: %q, %v; want 1 link", user, out, err)
	}
}
