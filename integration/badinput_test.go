package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadRepository: paths that are not usable repositories give one
// clear line and a failing exit status.
func TestBadRepository(t *testing.T) {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: filepath.Join(dir, "missing")}
	e.fails(1, "no repository here (run 'chainfs init')", "volume", "list")

	e.repo = filepath.Join(dir, "a-file")
	os.WriteFile(e.repo, []byte("x"), 0o644)
	e.fails(1, "is a file, not a repository", "volume", "list")
	e.fails(1, "exists and is not a directory", "init")

	e.repo = filepath.Join(dir, "not-empty")
	os.MkdirAll(filepath.Join(e.repo, "stuff"), 0o755)
	e.fails(1, "directory is not empty", "init")
	e.fails(1, "no repository here", "volume", "list")

	e.repo = filepath.Join(dir, "repo")
	e.ok("init")
	e.fails(1, "a repository is already there", "init")
	marker := filepath.Join(e.repo, "chainfs.json")
	good, _ := os.ReadFile(marker)

	os.WriteFile(marker, bytes.Replace(good, []byte(`"format": 1`), []byte(`"format": 99`), 1), 0o600)
	e.fails(1, "format version 99, this chainfs reads version 1", "volume", "list")

	os.WriteFile(marker, []byte("{garbage"), 0o600)
	e.fails(1, "unreadable chainfs.json", "volume", "list")

	os.WriteFile(marker, good, 0o600)
	os.RemoveAll(filepath.Join(e.repo, "meta"))
	e.fails(1, "no schema record", "volume", "list")
}

// TestBadArguments: wrong arguments are usage errors (exit 2) or clear
// failures, and change nothing.
func TestBadArguments(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)

	e.fails(2, "usage: chainfs volume add NAME SOURCE", "volume", "add", "onlyname")
	e.fails(2, "usage: chainfs snapshot create VOLUME", "snapshot", "create")
	e.fails(2, "flag provided but not defined", "snapshot", "create", "v", "--bogus")
	e.fails(2, `Required flag "from" not set`, "image", "create", "x")
	e.fails(2, `Required flag "to-repo" not set`, "image", "copy", "x")
	e.fails(1, "source "+filepath.Join(e.dir, "nope")+": no such file or directory", "volume", "add", "v", filepath.Join(e.dir, "nope"))
	e.fails(1, "not a directory, a disk-image file or a block device", "volume", "add", "v", "/dev/null")
	e.fails(2, "is a disk, not a tree", "volume", "add", "v", filepath.Join(src, "f"), "--exclude", "*.tmp")
	e.fails(2, `volume name "../x"`, "volume", "add", "../x", src)
	e.fails(2, `volume name "latest"`, "volume", "add", "latest", src)
	e.fails(2, "block size", "volume", "add", "v", src, "--block-size", "3000")
	e.fails(2, "a power of two from 4.0 KiB", "volume", "add", "v", src, "--block-size", "0")
	e.fails(2, "want a number of bytes, or with a unit", "volume", "add", "v", src, "--block-size", "12X")
	e.fails(2, "--exclude", "volume", "add", "v", src, "--exclude", "a[")
	e.fails(1, "volume nope: not found", "snapshot", "create", "nope")
	e.fails(1, "volume nope: not found", "snapshot", "list", "nope")

	e.ok("volume", "add", "v", src)
	e.fails(1, "volume v: already exists", "volume", "add", "v", src)
	e.fails(2, `snapshot name "a/b"`, "snapshot", "create", "v", "--name", "a/b")
	e.fails(2, `snapshot name "latest"`, "snapshot", "create", "v", "--name", "latest")
	e.fails(2, "--tag", "snapshot", "create", "v", "--tag", "novalue")
	e.fails(1, "snapshot v/latest: not found", "restore", "v/latest", filepath.Join(e.dir, "out"))
	e.snapshot("v", "--name", "s1", "--description", "first", "--tag", "k=v")
	e.fails(1, "snapshot v/s1: already exists", "snapshot", "create", "v", "--name", "s1")
	e.fails(2, `want VOLUME/SNAPSHOT[/PATH]`, "restore", "v", filepath.Join(e.dir, "out"))
	e.fails(1, "snapshot v/nope: not found", "restore", "v/nope", filepath.Join(e.dir, "out"))
	e.fails(1, "no/such/path: not found", "restore", "v/s1/no/such/path", filepath.Join(e.dir, "out"))

	// A failed command changed nothing: one volume, one snapshot.
	out := e.ok("snapshot", "list", "--json")
	if strings.Count(out, `"name"`) != 1 || !strings.Contains(out, `"description": "first"`) || !strings.Contains(out, `"k": "v"`) {
		t.Errorf("snapshot list after failures:\n%s", out)
	}

	// A volume with snapshots is not removed unless asked.
	e.fails(1, "volume v has snapshots", "volume", "rm", "v")
	e.ok("volume", "rm", "v", "--with-snapshots")
	e.fails(1, "volume v: not found", "volume", "rm", "v")
	if out := e.ok("volume", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("volume list after rm: %s", out)
	}
	// The name can be used again, from scratch.
	e.ok("volume", "add", "v", src)
	e.snapshot("v")
}

// TestUnreadableEntries: entries the snapshot cannot read are left out
// with a warning each, the snapshot is still made, and the exit status
// says so.
func TestUnreadableEntries(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "closed-dir"), 0o755)
	os.WriteFile(filepath.Join(src, "closed-dir/inside"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "readable"), []byte("fine"), 0o644)
	os.WriteFile(filepath.Join(src, "secret"), []byte("no"), 0o600)
	os.Chmod(filepath.Join(src, "closed-dir"), 0o700)
	// The snapshot runs as an unprivileged user who owns the repository
	// and the source, except for two entries.
	sh(t, "chown -R 65534:65534 "+e.dir+" && chown 0:0 "+filepath.Join(src, "secret")+" "+filepath.Join(src, "closed-dir"))
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755) // t.TempDir's parent is private
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	if r := e.runAs(nobody, "volume", "add", "v", src); r.code != 0 {
		t.Fatalf("volume add as nobody: %d %s", r.code, r.stderr)
	}
	r := e.runAs(nobody, "snapshot", "create", "v", "--name", "s")
	if r.code != 3 || !strings.Contains(r.stderr, "secret: permission denied") || !strings.Contains(r.stderr, "closed-dir: permission denied") ||
		!strings.Contains(r.stderr, "2 entries could not be read") {
		t.Fatalf("snapshot with unreadable entries: exit %d\n%s", r.code, r.stderr)
	}
	out := e.runAs(nobody, "restore", "v/s", filepath.Join(e.dir, "out"))
	if out.code != 0 {
		t.Fatalf("restore: %d %s", out.code, out.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "out/readable")); string(b) != "fine" {
		t.Errorf("readable file restored as %q", b)
	}
	for _, gone := range []string{"secret", "closed-dir"} {
		if _, err := os.Lstat(filepath.Join(e.dir, "out", gone)); err == nil {
			t.Errorf("%s was restored though it was left out", gone)
		}
	}
}

// TestRepositoryInUse: a second process gets one line naming the holder;
// a second snapshot of a volume fails at once naming the running one; a
// snapshot killed with -9 leaves no trace and no stale lock.
func TestRepositoryInUse(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "small"), []byte("x"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "first")
	// Enough data that the snapshot is still running when we look.
	for i := 0; i < 6; i++ {
		os.WriteFile(filepath.Join(src, "big"+strconv.Itoa(i)), randomData(uint64(i), 128<<20), 0o644)
	}
	cmd := exec.Command(chainfsBin, "snapshot", "create", "v", "--name", "killed")
	cmd.Env = append(os.Environ(), "CHAINFS_REPO="+e.repo)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lock := filepath.Join(e.repo, "lock")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(lock)
		if strings.Contains(string(b), "snapshot v/killed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot never started; lock says %q", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	e.fails(4, "held by process "+pid+" (snapshot v/killed), which answers only commands that only read it", "snapshot", "create", "v")
	e.fails(4, "held by process "+pid, "gc")
	// What only reads is answered by the command that holds the repository.
	if out := e.ok("volume", "list"); !strings.Contains(out, "v ") {
		t.Errorf("volume list while the snapshot runs:\n%s", out)
	}

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	e.ok("check", "--read-data")
	out := e.ok("snapshot", "list", "v")
	if strings.Contains(out, "killed") || !strings.Contains(out, "first") {
		t.Errorf("after kill -9: snapshot list shows:\n%s", out)
	}
	s := e.snapshot("v", "--name", "killed")
	if s.Name != "killed" {
		t.Errorf("snapshot after kill -9 named %q", s.Name)
	}
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "v/killed", dst)
	rsyncSame(t, src, dst)
}

// TestDiskFull: a snapshot that fills the repository's file system (a
// 128 MiB tmpfs, and an ext4 image loop-mounted) fails with a clear error,
// commits nothing, and the repository works on once space is free.
func TestDiskFull(t *testing.T) {
	for _, fs := range []string{"tmpfs", "ext4"} {
		t.Run(fs, func(t *testing.T) { diskFull(t, fs) })
	}
}

func diskFull(t *testing.T, fs string) {
	e := &env{t: t, dir: t.TempDir()}
	mnt := filepath.Join(e.dir, "small-fs")
	os.MkdirAll(mnt, 0o755)
	if fs == "tmpfs" {
		sh(t, "mount -t tmpfs -o size=128m tmpfs "+mnt)
	} else {
		img := filepath.Join(e.dir, "small-fs.img")
		sh(t, fmt.Sprintf("mkfs.ext4 -q -m 0 %q 128M && mount -o loop %q %q", img, img, mnt))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	e.repo = filepath.Join(mnt, "repo")
	e.ok("init")
	small := filepath.Join(e.dir, "small")
	os.MkdirAll(small, 0o755)
	os.WriteFile(filepath.Join(small, "f"), []byte("small"), 0o644)
	big := filepath.Join(e.dir, "big")
	os.MkdirAll(big, 0o755)
	for i := 0; i < 4; i++ {
		os.WriteFile(filepath.Join(big, "f"+strconv.Itoa(i)), randomData(uint64(i), 32<<20), 0o644)
	}
	e.ok("volume", "add", "small", small)
	e.ok("volume", "add", "big", big)
	e.snapshot("small", "--name", "before")

	e.fails(1, "no space left on device", "snapshot", "create", "big", "--name", "too-big")
	if out := e.ok("snapshot", "list", "--json"); strings.Contains(out, "too-big") {
		t.Errorf("a failed snapshot is listed:\n%s", out)
	}
	// Committed snapshots are intact and new work succeeds.
	e.ok("check", "--read-data")
	e.ok("restore", "small/before", filepath.Join(e.dir, "r1"))
	rsyncSame(t, small, filepath.Join(e.dir, "r1"))
	os.WriteFile(filepath.Join(small, "g"), []byte("more"), 0o644)
	e.snapshot("small", "--name", "after")
	// Once there is room, the big volume snapshots too.
	os.Remove(filepath.Join(big, "f0"))
	os.Remove(filepath.Join(big, "f1"))
	e.snapshot("big", "--name", "fits")
	e.ok("restore", "big/fits", filepath.Join(e.dir, "r2"))
	rsyncSame(t, big, filepath.Join(e.dir, "r2"))

	// Nearly full, with a snapshot that is nearly all metadata: the
	// metadata store writes through memory maps, which a full file system
	// would answer with SIGBUS, so chainfs refuses first and cleanly.
	many := filepath.Join(e.dir, "many")
	for d := 0; d < 20; d++ {
		os.MkdirAll(filepath.Join(many, fmt.Sprint(d)), 0o755)
		for f := 0; f < 1000; f++ {
			os.WriteFile(filepath.Join(many, fmt.Sprint(d), fmt.Sprint(f)), []byte(fmt.Sprint(d, "/", f)), 0o644)
		}
	}
	e.ok("volume", "add", "many", many)
	// Left free: too little to begin; enough to begin but not to commit
	// (the margin on these file systems is 32 MiB).
	filler := filepath.Join(mnt, "filler")
	for _, free := range []int{512 << 10, 36 << 20} {
		sh(t, fmt.Sprintf("fallocate -l $(( $(df -B1 --output=avail %s | tail -1) - %d )) %s", mnt, free, filler))
		e.fails(1, "no space left on device", "snapshot", "create", "many")
		e.ok("check", "--read-data")
		os.Remove(filler)
	}
	e.snapshot("many")
}

// TestUnknownCommand: a mistyped command or subcommand is named with the
// nearest one and exits 2, the same whether a daemon serves the
// repository or not; the CLI answers it, and the daemon, which runs typed
// requests, never hears of it.
func TestUnknownCommand(t *testing.T) {
	e := newEnv(t)
	check := func(how string) {
		t.Helper()
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"snapshto", "list"}, `chainfs: unknown command "snapshto" (did you mean "snapshot"?)`},
			{[]string{"snapshot", "lst"}, `chainfs: unknown command "snapshot lst" (did you mean "snapshot list"?)`},
			{[]string{"help", "snapshto"}, `chainfs: unknown command "snapshto" (did you mean "snapshot"?)`},
			{[]string{"xyzzyq"}, `chainfs: unknown command "xyzzyq"` + "\n"},
		} {
			r := e.fails(2, c.want, c.args...)
			if strings.Contains(r.stderr, "help topic") || r.stdout != "" {
				t.Errorf("%s: chainfs %s: stdout %q, stderr %q", how, strings.Join(c.args, " "), r.stdout, r.stderr)
			}
		}
		if out := e.ok("snapshot", "help"); !strings.Contains(out, "snapshot a volume now") {
			t.Errorf("%s: snapshot help:\n%s", how, out)
		}
	}
	check("without a daemon")
	d := e.serve(filepath.Join(e.dir, "mnt"))
	check("through the daemon")
	e.ok("snapshot", "list")
	if log := d.log.String(); strings.Contains(log, "snapshto") || strings.Contains(log, "xyzzyq") ||
		!strings.Contains(log, "request=snapshot.list") {
		t.Errorf("the daemon heard of a command line, or not of the request:\n%s", log)
	}
}

// TestDeleteLatestRefused: a snapshot is deleted by its name only;
// "latest", which a snapshot made meanwhile would make mean another, is
// refused with the name it meant, by the CLI (with and without the
// daemon), by .control/delete and by rmdir in the mount, and nothing is
// deleted.
func TestDeleteLatestRefused(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	e.snapshot("v", "--name", "s2")
	want := `refusing to delete "latest": name the snapshot; latest is now "s2" (chainfs snapshot delete v/s2)`
	e.fails(2, want, "snapshot", "delete", "v/latest")

	d := e.serve(filepath.Join(e.dir, "mnt"))
	e.fails(2, want, "snapshot", "delete", "v/latest")
	ctl := filepath.Join(d.mount, ".control")
	out, err := exec.Command("bash", "-c", fmt.Sprintf("echo v/latest > %s/delete", ctl)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Invalid argument") {
		t.Errorf(".control/delete v/latest: %v %s", err, out)
	}
	status, _ := os.ReadFile(filepath.Join(ctl, "status"))
	if !strings.Contains(string(status), `refusing to delete \"latest\": name the snapshot; latest is now \"s2\"`) {
		t.Errorf("status does not say why v/latest was not deleted:\n%s", status)
	}
	if log := d.log.String(); !strings.Contains(log, "refusing to delete") {
		t.Errorf("the daemon's log does not say why v/latest was not deleted:\n%s", log)
	}
	for _, rm := range []string{"rmdir " + d.snapDir("v", "latest"), "rmdir " + d.snapDir("v", "latest") + "/", "rm " + d.snapDir("v", "latest")} {
		if out, err := exec.Command("bash", "-c", rm).CombinedOutput(); err == nil {
			t.Errorf("%s: succeeded: %s", rm, out)
		}
	}
	if out := e.ok("snapshot", "list", "v"); !strings.Contains(out, "s1") || !strings.Contains(out, "s2") {
		t.Errorf("a refused delete deleted:\n%s", out)
	}
	// The name latest meant is what deletes it.
	e.ok("snapshot", "delete", "v/s2")
	if target, err := os.Readlink(d.snapDir("v", "latest")); err != nil || target != "s1" {
		t.Errorf("latest after deleting s2: %q %v", target, err)
	}
}

// TestUmountOnlyChainfs: chainfs umount of what is not a chainfs mount
// says so in one line and unmounts nothing.
func TestUmountOnlyChainfs(t *testing.T) {
	e := newEnv(t)
	plain := filepath.Join(e.dir, "plain")
	os.Mkdir(plain, 0o755)
	for _, c := range []struct{ dir, want string }{
		{plain, plain + " is not a mount point"},
		{filepath.Join(e.dir, "nowhere"), filepath.Join(e.dir, "nowhere") + " does not exist"},
		{"/proc", "/proc is not a chainfs mount (it is proc): use umount(8)"},
	} {
		r := e.fails(1, c.want, "umount", c.dir)
		if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines != 0 {
			t.Errorf("umount %s: %d lines:\n%s", c.dir, lines+1, r.stderr)
		}
	}
	if !mounted("/proc") {
		t.Error("/proc is no longer mounted")
	}
}
