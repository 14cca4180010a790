package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHoldKeepsSnapshot: a held snapshot is refused to snapshot delete
// (without and through the daemon), .control/delete, rmdir in the mount
// and volume rm, each naming the reason; snapshot list shows the hold, and
// the mount shows its reason as user.chainfs.hold on the snapshot's top
// directory, to root only and never listed; released, it is deleted.
func TestHoldKeepsSnapshot(t *testing.T) {
	e, d := servedToOthers(t)
	if out := e.ok("snapshot", "hold", "v/s", "--reason", "legal: case 41"); !strings.Contains(out, "snapshot v/s held: legal: case 41") {
		t.Fatalf("hold: %s", out)
	}
	want := "snapshot v/s is held (legal: case 41)"
	e.fails(1, want, "snapshot", "delete", "v/s")
	e.fails(1, want, "volume", "rm", "v", "--with-snapshots")
	e.fails(2, "--reason: say why the snapshot is kept", "snapshot", "hold", "v/s")
	e.fails(2, "one line of printable text", "snapshot", "hold", "v/s", "--reason", "two\nlines")

	ctl := filepath.Join(d.mount, ".control")
	if out, err := exec.Command("bash", "-c", fmt.Sprintf("echo v/s > %s/delete", ctl)).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "Operation not permitted") {
		t.Errorf(".control/delete of a held snapshot: %v %s", err, out)
	}
	if err := unix.Rmdir(d.snapDir("v", "s")); !errors.Is(err, unix.EPERM) {
		t.Errorf("rmdir of a held snapshot: %v; want EPERM", err)
	}
	if status, _ := os.ReadFile(filepath.Join(ctl, "status")); !strings.Contains(string(status), want) {
		t.Errorf("status does not say why v/s was not deleted:\n%s", status)
	}

	list := e.ok("snapshot", "list", "v")
	if !strings.Contains(list, "HELD") || !strings.Contains(list, "legal: case 41") {
		t.Errorf("snapshot list does not show the hold:\n%s", list)
	}
	if js := e.ok("snapshot", "list", "v", "--json"); !strings.Contains(js, `"reason": "legal: case 41"`) {
		t.Errorf("snapshot list --json does not show the hold:\n%s", js)
	}

	top := d.snapDir("v", "s")
	buf := make([]byte, 256)
	if n, err := unix.Getxattr(top, "user.chainfs.hold", buf); err != nil || string(buf[:n]) != "legal: case 41" {
		t.Errorf("user.chainfs.hold as root: %q, %v", buf[:max(n, 0)], err)
	}
	if n, err := unix.Listxattr(top, buf); err != nil || strings.Contains(string(buf[:n]), "chainfs") {
		t.Errorf("listxattr lists the hold (copies would take it): %q, %v", buf[:max(n, 0)], err)
	}
	if out, err := asUser("getfattr", "--only-values", "-n", "user.chainfs.hold", top); err == nil || !strings.Contains(out, "No such attribute") {
		t.Errorf("uid %d reads the hold's reason: %v %s", user, err, out)
	}

	if out := e.ok("snapshot", "release", "v/s"); !strings.Contains(out, "snapshot v/s released") {
		t.Errorf("release: %s", out)
	}
	if _, err := unix.Getxattr(top, "user.chainfs.hold", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("user.chainfs.hold after the release: %v; want ENODATA", err)
	}
	e.fails(2, "snapshot v/s is not held", "snapshot", "release", "v/s")
	e.ok("snapshot", "delete", "v/s")
	if n := e.snapshotCount("v"); n != 0 {
		t.Errorf("%d snapshots after deleting the released one", n)
	}
}
