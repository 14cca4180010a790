package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// snapshotCount is how many snapshots volume has.
func (e *env) snapshotCount(volume string) int {
	e.t.Helper()
	return strings.Count(e.ok("snapshot", "list", volume, "--json"), `"seq"`)
}

// TestUnmountedSourceRefused: a volume whose source is a mount point is
// snapshotted; its disk is unmounted, leaving the empty directory on the
// file system below; the next snapshot fails (status 1) naming both file
// systems and --allow-empty, and nothing is lost; with --allow-empty it is
// taken.
func TestUnmountedSourceRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	e := newEnv(t)
	data := filepath.Join(e.dir, "data")
	os.MkdirAll(data, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "chainfs-test", data).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if mounted(data) {
			exec.Command("umount", data).Run()
		}
	})
	os.WriteFile(filepath.Join(data, "f"), []byte("precious"), 0o644)
	e.ok("volume", "add", "v", data)
	if out := e.ok("volume", "list", "--json"); !strings.Contains(out, `"mount": "`+data+`"`) || !strings.Contains(out, `"type": "tmpfs"`) {
		t.Errorf("volume add did not record the source's file system:\n%s", out)
	}
	e.snapshot("v", "--name", "good")
	if out, err := exec.Command("umount", data).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}

	e.fails(1, "is on ", "snapshot", "create", "v")
	r := e.fails(1, "--allow-empty", "snapshot", "create", "v")
	if !strings.Contains(r.stderr, "not on tmpfs mounted at "+data) {
		t.Errorf("the error does not name the file system the volume was on: %s", r.stderr)
	}
	if n := e.snapshotCount("v"); n != 1 {
		t.Errorf("%d snapshots after the refusals, want the good one only", n)
	}
	e.snapshot("v", "--allow-empty", "--name", "empty")
	if n := e.snapshotCount("v"); n != 2 {
		t.Errorf("%d snapshots after --allow-empty, want 2", n)
	}
}

// TestEmptiedSourceRefused: a source directory whose contents were
// removed (same file system) is not snapshotted unless --allow-empty.
func TestEmptiedSourceRefused(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("precious"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "good")
	sh(t, "rm -rf "+src+"/*")
	e.fails(1, "holds no files where the previous snapshot good held 1 file", "snapshot", "create", "v")
	if n := e.snapshotCount("v"); n != 1 {
		t.Errorf("%d snapshots after the refusal, want 1", n)
	}
	e.snapshot("v", "--allow-empty")
	e.snapshot("v") // empty after empty is ordinary
}

// TestRetainDaysBounds: --retain-days takes 1 to 65,536 days; anything
// else is a usage error naming the bounds.
func TestRetainDaysBounds(t *testing.T) {
	e := newEnv(t)
	for _, days := range []string{"106752", "65537", "0", "-1", "99999999999"} {
		if days == "0" {
			// Zero is "not given": no retention rule at all.
			e.fails(2, "give exactly one of --retain-days N, --keep N or --forever", "policy", "create", "p", "--at", "02:00", "--retain-days", days)
			continue
		}
		r := e.run("policy", "create", "p", "--at", "02:00", "--retain-days", days)
		if r.code != 2 {
			t.Errorf("--retain-days %s: exit %d, want 2\n%s", days, r.code, r.stderr)
		}
	}
	e.fails(2, "give 1 to 65536 days, or --forever", "policy", "create", "p", "--at", "02:00", "--retain-days", "106752")
	e.ok("policy", "create", "p", "--at", "02:00", "--retain-days", "65536")
	e.ok("policy", "create", "q", "--at", "02:00", "--forever")
}
