package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAllowOtherIsolation: with --allow-other, another user reads in a
// snapshot exactly what the source's modes allowed, cannot act through the
// control directory, and is refused by the daemon's socket.
func TestAllowOtherIsolation(t *testing.T) {
	e := newEnv(t)
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755) // t.TempDir's parent is private
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "private-dir"), 0o700)
	os.Chmod(src, 0o755)
	os.WriteFile(filepath.Join(src, "public"), []byte("for all"), 0o644)
	os.WriteFile(filepath.Join(src, "secret"), []byte("root only"), 0o600)
	os.WriteFile(filepath.Join(src, "private-dir/inside"), []byte("hidden"), 0o644)
	// POSIX ACLs that say more than the modes: nobody is named and denied
	// a file the modes let others read, and granted one they do not.
	os.WriteFile(filepath.Join(src, "acl-denied"), []byte("not for nobody"), 0o644)
	os.WriteFile(filepath.Join(src, "acl-granted"), []byte("for nobody too"), 0o600)
	sh(t, fmt.Sprintf("setfacl -m u:65534:--- %q && setfacl -m u:65534:r %q",
		filepath.Join(src, "acl-denied"), filepath.Join(src, "acl-granted")))
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	d := e.serve(filepath.Join(e.dir, "mnt"), "--allow-other")
	snap := d.snapDir("v", "s")

	asNobody := func(args ...string) (string, error) {
		argv := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
		out, err := exec.Command("setpriv", argv...).CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody("cat", filepath.Join(snap, "public")); err != nil || out != "for all" {
		t.Errorf("nobody reading a 0644 file: %q %v", out, err)
	}
	if out, err := asNobody("cat", filepath.Join(snap, "acl-granted")); err != nil || out != "for nobody too" {
		t.Errorf("nobody reading a 0600 file whose ACL grants it: %q %v", out, err)
	}
	for _, p := range []string{"secret", "private-dir/inside", "acl-denied"} {
		if out, err := asNobody("cat", filepath.Join(snap, p)); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody reading %s: %q %v, want permission denied", p, out, err)
		}
	}
	if out, err := asNobody("ls", filepath.Join(snap, "private-dir")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nobody listing a 0700 directory: %q %v", out, err)
	}
	if out, err := asNobody("bash", "-c", "echo v > "+filepath.Join(d.mount, ".control/snapshot")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nobody writing the control directory: %q %v", out, err)
	}
	// The socket: the repository's directory must be reachable for the
	// refusal to come from the daemon rather than the file system.
	os.Chmod(e.repo, 0o755)
	os.Chmod(filepath.Join(e.repo, "daemon.sock"), 0o666)
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", chainfsBin, "snapshot", "list")
	cmd.Env = append(os.Environ(), "CHAINFS_REPO="+e.repo)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refuses uid 65534: only root may use it (run the command as root)") {
		t.Errorf("nobody through the socket: %q %v", out, err)
	}
	// With the socket closed to it by the file system, it is told the same.
	os.Chmod(filepath.Join(e.repo, "daemon.sock"), 0o600)
	cmd = exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", chainfsBin, "snapshot", "list")
	cmd.Env = append(os.Environ(), "CHAINFS_REPO="+e.repo)
	out, err = cmd.CombinedOutput()
	if want := "the daemon serving " + e.repo + " refuses uid 65534: only root may use it (run the command as root)"; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("nobody at a closed socket: %q %v; want %q", out, err, want)
	}
}

// TestImageUnshareReachesInside: a user whose shell sits inside an image
// shared with it loses the image at `image unshare`, not only at
// images/<name>: listing its working directory, reading a file it never
// opened or stat'ing one it only listed fail at once, while a file it
// holds open stays readable (as in Unix). Sharing again gives it back.
func TestImageUnshareReachesInside(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: runs a shell as uid 1001")
	}
	e := newEnv(t)
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "dir"), 0o755)
	for _, name := range []string{"held-open", "listed", "never-opened"} {
		os.WriteFile(filepath.Join(src, "dir", name), []byte(name+"\n"), 0o644)
	}
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	e.ok("image", "create", "img", "--from", "v/s")
	e.ok("image", "share", "img", "--with", "1001")
	d := e.serve(filepath.Join(e.dir, "mnt"), "--allow-other")

	// A shell of uid 1001 inside the image runs one command a line and
	// ends each answer with its exit status.
	shell := exec.Command("setpriv", "--reuid=1001", "--regid=1001", "--clear-groups", "bash", "-c",
		`cd `+filepath.Join(d.mount, "images/img/dir")+` || exit 1
		while read -r cmd; do eval "$cmd" 2>&1; echo "exit $?"; done`)
	stdin, _ := shell.StdinPipe()
	stdout, _ := shell.StdoutPipe()
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); shell.Process.Kill(); shell.Wait() })
	lines := bufio.NewScanner(stdout)
	run := func(cmd string) (string, bool) {
		t.Helper()
		fmt.Fprintln(stdin, cmd)
		var out []string
		for lines.Scan() {
			if status, ok := strings.CutPrefix(lines.Text(), "exit "); ok {
				return strings.Join(out, "\n"), status == "0"
			}
			out = append(out, lines.Text())
		}
		t.Fatalf("the shell of uid 1001 ended: %v", lines.Err())
		return "", false
	}
	if out, ok := run("ls -l . && exec 3<held-open"); !ok || !strings.Contains(out, "listed") {
		t.Fatalf("uid 1001 inside the shared image: %q %v", out, ok)
	}

	e.ok("image", "unshare", "img", "--with", "1001")
	denied := func(out string, ok bool) bool {
		return !ok && (strings.Contains(out, "Permission denied") || strings.Contains(out, "No such file"))
	}
	// Every name was looked up by ls -l, and the kernel holds them: the
	// daemon is asked at once for opens and listings.
	for _, cmd := range []string{"ls .", "cat never-opened", "cat listed"} {
		if out, ok := run(cmd); !denied(out, ok) {
			t.Errorf("uid 1001 after image unshare: %s: %q, succeeded %v; want EACCES or ENOENT", cmd, out, ok)
		}
	}
	// The kernel's cached attributes go when the daemon has told it of
	// the change, a moment after the command returned.
	deadline := time.Now().Add(5 * time.Second)
	for out, ok := run("stat listed"); !denied(out, ok); out, ok = run("stat listed") {
		if time.Now().After(deadline) {
			t.Errorf("uid 1001 after image unshare: stat listed: %q, succeeded %v; want EACCES or ENOENT", out, ok)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, ok := run("cat <&3"); !ok || out != "held-open" {
		t.Errorf("a file open before image unshare: %q %v; want it still readable", out, ok)
	}
	if out, err := exec.Command("setpriv", "--reuid=1001", "--regid=1001", "--clear-groups", "ls", filepath.Join(d.mount, "images")).CombinedOutput(); err != nil || strings.Contains(string(out), "img") {
		t.Errorf("uid 1001 lists images/ after image unshare: %q %v", out, err)
	}

	e.ok("image", "share", "img", "--with", "1001")
	if out, ok := run("cat never-opened && ls ."); !ok || !strings.Contains(out, "never-opened\nheld-open") {
		t.Errorf("uid 1001 after sharing again: %q %v", out, ok)
	}
}
