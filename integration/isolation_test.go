package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	for _, p := range []string{"secret", "private-dir/inside"} {
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
	if err == nil || !strings.Contains(string(out), "refuses uid 65534") {
		t.Errorf("nobody through the socket: %q %v", out, err)
	}
}
