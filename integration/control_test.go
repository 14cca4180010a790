package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// user is a uid that is neither root nor the daemon's user.
const user = 1001

// asUser runs a command as uid 1001 and returns what it printed.
func asUser(args ...string) (string, error) {
	argv := append([]string{fmt.Sprintf("--reuid=%d", user), fmt.Sprintf("--regid=%d", user), "--clear-groups"}, args...)
	out, err := exec.Command("setpriv", argv...).CombinedOutput()
	return string(out), err
}

// servedToOthers is a repository holding volume v with snapshot s, served
// by a root daemon with --allow-other, its folders reachable by uid 1001.
func servedToOthers(t *testing.T) (*env, *daemon) {
	t.Helper()
	e := newEnv(t)
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755) // t.TempDir's parent is private
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "data"), []byte("the repository's data"), 0o600)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	return e, e.serve(filepath.Join(e.dir, "mnt"), "--allow-other")
}

// TestRootRefusesUserRepository: a repository that uid 1001 owns is not
// root's to open, serve or write to (1001 could point its files anywhere,
// and would read its volumes' sources as root read them); its owner uses
// it as before. What root's daemon exports through .control/export is
// root's and 0600.
func TestRootRefusesUserRepository(t *testing.T) {
	e := newEnv(t)
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "data"), []byte("data"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	sh(t, fmt.Sprintf("chown -R %d:%d %s", user, user, e.repo))

	for _, args := range [][]string{{"snapshot", "list"}, {"check"}, {"snapshot", "create", "v"}} {
		e.fails(2, fmt.Sprintf("belongs to uid %d: root does not open a repository another user can change", user), args...)
	}
	mount := filepath.Join(e.dir, "mnt")
	os.Mkdir(mount, 0o755)
	r := e.run("serve", "--mount", mount)
	if r.code != 2 || !strings.Contains(r.stderr, "root does not open a repository another user can change") || mounted(mount) {
		t.Fatalf("root serving uid %d's repository: exit %d, mounted %v\n%s", user, r.code, mounted(mount), r.stderr)
	}
	if out, err := asUser(chainfsBin, "--repo", e.repo, "snapshot", "list", "v"); err != nil || !strings.Contains(out, "s") {
		t.Fatalf("the owner's own snapshot list: %v\n%s", err, out)
	}

	sh(t, fmt.Sprintf("chown -R 0:0 %s", e.repo))
	d := e.serve(mount, "--allow-other")
	target := filepath.Join(e.dir, "out.img")
	sh(t, fmt.Sprintf("/bin/echo 'v/s made %s' > %s", target, filepath.Join(d.mount, ".control/export")))
	st, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("root's export through the mount is owned by %d with mode %v; want root's and 0600", sys.Uid, st.Mode().Perm())
	}
}

// TestExportFileMode: the CLI's export is 0600 too, as the repository's
// data is; whoever wants it wider can chmod it.
func TestExportFileMode(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	e.ok("image", "create", "img", "--from", "v/s")
	out := filepath.Join(e.dir, "img.tar")
	e.ok("image", "export", "img", out)
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("exported file: %v %v, want mode 0600", st.Mode(), err)
	}
}

// TestStatusAndLogKeepSecrets: a URL's password shows nowhere the daemon
// records a command, and a user reading .control/status sees only their
// own jobs (here: none of root's).
func TestStatusAndLogKeepSecrets(t *testing.T) {
	e, d := servedToOthers(t)
	r := e.run("image", "import", "from-url", "https://user:secret@127.0.0.1:1/x")
	if r.code == 0 {
		t.Fatal("an import from a closed port succeeded")
	}
	if strings.Contains(r.stderr, "secret") {
		t.Errorf("the import's error shows the password: %s", r.stderr)
	}

	status, err := os.ReadFile(filepath.Join(d.mount, ".control/status"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "https://user:xxxxx@127.0.0.1:1/x") {
		t.Errorf("root's status lacks the redacted import:\n%s", status)
	}
	if strings.Contains(string(status), "secret") {
		t.Errorf("root's status shows the password:\n%s", status)
	}
	if log := d.log.String(); strings.Contains(log, "secret") || !strings.Contains(log, "user:xxxxx@") {
		t.Errorf("the daemon's log shows the password, or not the command:\n%s", log)
	}

	theirs, err := asUser("cat", filepath.Join(d.mount, ".control/status"))
	if err != nil {
		t.Fatalf("uid %d reading status: %v %s", user, err, theirs)
	}
	if strings.Contains(theirs, "from-url") || strings.Contains(theirs, `"uid":0`) || strings.Contains(theirs, "xxxxx") {
		t.Errorf("uid %d sees root's jobs:\n%s", user, theirs)
	}
}

// lookupGate is a FUSE directory whose every lookup waits until the test
// opens the gate, then finds nothing; it has no Create, so a file made
// there fails. An export into it waits at its first look at the target,
// inside the daemon's job.
type lookupGate struct {
	gofs.Inode
	reached chan struct{} // closed at the first lookup
	release chan struct{}
	once    sync.Once
}

var _ = (gofs.NodeLookuper)((*lookupGate)(nil))

func (g *lookupGate) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	g.once.Do(func() { close(g.reached) })
	select {
	case <-g.release:
		return nil, syscall.ENOENT
	case <-ctx.Done():
		return nil, syscall.EINTR
	}
}

// TestControlExportReturnsOnceBegun: a write to .control/export returns
// once the image is made and close() waits for the file, so a long export
// holds no lock: the next export, written to the same control file,
// completes while the first is still writing its file, and the first
// one's failure comes back from its close().
func TestControlExportReturnsOnceBegun(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	d := e.serve(filepath.Join(e.dir, "mnt"))
	export := filepath.Join(d.mount, ".control/export")

	gated := filepath.Join(e.dir, "gated")
	os.Mkdir(gated, 0o755)
	g := &lookupGate{reached: make(chan struct{}), release: make(chan struct{})}
	server, err := gofs.Mount(gated, g, &gofs.Options{MountOptions: fuse.MountOptions{DirectMount: true, FsName: "lookupgate"}})
	if err != nil {
		t.Fatal(err)
	}
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(g.release) }) }
	t.Cleanup(func() { open(); server.Unmount() })

	first := exec.Command("sh", "-c", fmt.Sprintf("/bin/echo 'v/s slow %s/out.img' > %s", gated, export))
	var firstOut strings.Builder
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	select {
	case <-g.reached:
	case err := <-firstDone:
		t.Fatalf("the gated export ended before reaching its file: %v %s", err, firstOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the export did not reach its file within 30 s")
	}

	// The second writer of the same control file is not held behind the
	// first (before, the first write held the file's lock until its export
	// was done, and this waited for the gate).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("/bin/echo 'v/s quick' > %s", export)).CombinedOutput(); err != nil {
		t.Fatalf("a second export while the first runs: %v %s", err, out)
	}
	status, _ := os.ReadFile(filepath.Join(d.mount, ".control/status"))
	if !strings.Contains(string(status), `"command":"v/s slow`) || !strings.Contains(string(status), `"state":"running"`) {
		t.Errorf("status while the first export runs:\n%s", status)
	}
	select {
	case err := <-firstDone:
		t.Fatalf("the first export's writer ended before its file was written: %v %s", err, firstOut.String())
	default:
	}

	open()
	select {
	case err := <-firstDone:
		if err == nil {
			t.Errorf("the first export's close() did not report its failure: %s", firstOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first export did not end within 30 s of the gate opening")
	}
	if out := e.ok("image", "list"); strings.Contains(out, "slow") || !strings.Contains(out, "quick") {
		t.Errorf("images after both exports:\n%s", out)
	}
}
