package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	e.fails(1, "snapshot v/s is not held", "snapshot", "release", "v/s")
	e.ok("snapshot", "delete", "v/s")
	if n := e.snapshotCount("v"); n != 0 {
		t.Errorf("%d snapshots after deleting the released one", n)
	}
}

// TestRetentionExplainsItself: policy run makes automatic snapshots and
// runs retention as the daemon's schedule does; snapshot list --why,
// policy prune --dry-run and user.chainfs.why in the mount say why each
// snapshot is kept or when it goes, held ones included; policy prune
// deletes what the dry run named and nothing else.
func TestRetentionExplainsItself(t *testing.T) {
	e, d := servedToOthers(t)
	e.ok("policy", "create", "nightly", "--at", "03:00", "--keep", "2")
	e.fails(2, "volume v does not have policy nightly", "policy", "run", "nightly", "v")
	e.fails(2, "policy nightly schedules no volume", "policy", "run", "nightly")
	e.fails(2, "volume v has no policy", "policy", "prune", "v")
	e.ok("policy", "apply", "nightly", "v")
	var autos []string
	for range 3 {
		out := e.ok("policy", "run", "nightly", "v")
		m := regexp.MustCompile(`snapshot v/(auto-\d{8}-\d{6}(-\d+)?) created`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("policy run: %s", out)
		}
		autos = append(autos, m[1])
	}
	// The third run's retention deleted the first: keep 2.
	if n := e.snapshotCount("v"); n != 3 {
		t.Fatalf("%d snapshots after three runs of keep 2; want s and two automatic", n)
	}
	e.ok("snapshot", "hold", "v/"+autos[1], "--reason", "audit")

	list := e.ok("snapshot", "list", "v", "--why")
	for _, want := range []string{"WHY", "manual: retention never prunes it", "held: audit", "policy nightly keeps the newest 2: this is the 1st"} {
		if !strings.Contains(list, want) {
			t.Errorf("snapshot list --why lacks %q:\n%s", want, list)
		}
	}
	// A fourth run: keep 2 lets autos[1] go, but it is held.
	e.ok("policy", "run", "nightly")
	if dry := e.ok("policy", "prune", "--dry-run"); !strings.Contains(dry, "nothing to prune") {
		t.Errorf("dry run with only a held snapshot past the rule: %s", dry)
	}
	e.ok("snapshot", "release", "v/"+autos[1])
	dry := e.ok("policy", "prune", "--dry-run")
	want := "would delete v/" + autos[1] + ": policy nightly keeps the newest 2: this is the 3rd; pruned at the next retention run"
	if !strings.Contains(dry, want) {
		t.Errorf("policy prune --dry-run: %s\nwant %s", dry, want)
	}
	if n := e.snapshotCount("v"); n != 4 {
		t.Errorf("the dry run deleted: %d snapshots", n)
	}

	buf := make([]byte, 512)
	n, err := unix.Getxattr(d.snapDir("v", autos[1]), "user.chainfs.why", buf)
	if err != nil || !strings.Contains(string(buf[:max(n, 0)]), "this is the 3rd; pruned at the next retention run") {
		t.Errorf("user.chainfs.why: %q, %v", buf[:max(n, 0)], err)
	}
	if n, err := unix.Getxattr(d.snapDir("v", "s"), "user.chainfs.why", buf); err != nil || string(buf[:n]) != "manual: retention never prunes it" {
		t.Errorf("user.chainfs.why of a manual snapshot: %q, %v", buf[:max(n, 0)], err)
	}
	if out, err := asUser("getfattr", "-n", "user.chainfs.why", d.snapDir("v", "s")); err == nil || !strings.Contains(out, "No such attribute") {
		t.Errorf("uid %d reads user.chainfs.why: %v %s", user, err, out)
	}

	if out := e.ok("policy", "prune", "v"); !named(out, "deleted v/"+autos[1]) {
		t.Errorf("policy prune: %s", out)
	}
	if list := e.ok("snapshot", "list", "v"); named(list, autos[1]) || !named(list, autos[2]) {
		t.Errorf("after policy prune:\n%s", list)
	}

	// The policy's last run on v (its newest automatic snapshot) and its
	// next, at 03:00 local time; the volume's policy.
	snaps := e.ok("snapshot", "list", "v")
	newest := regexp.MustCompile(`auto-\d{8}-\d{6}(-\d+)?`).FindAllString(snaps, -1)
	policies := e.ok("policy", "list")
	if len(newest) == 0 || !regexp.MustCompile(`nightly\s+at 03:00 every day; keep the newest 2\s+v\s+`+newest[len(newest)-1]+`\s+\d{4}-\d\d-\d\d 03:00:00`).MatchString(policies) {
		t.Errorf("policy list:\n%s", policies)
	}
	if vols := e.ok("volume", "list"); !regexp.MustCompile(`POLICY`).MatchString(vols) || !strings.Contains(vols, " nightly ") {
		t.Errorf("volume list does not show the policy:\n%s", vols)
	}
}

// named reports whether text holds name as a whole word, or before a
// colon as messages put it: two automatic snapshots of one second are
// auto-…-N and auto-…-N-2, and the first is a prefix of the second.
func named(text, name string) bool {
	return regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(name) + `(:|\s|$)`).MatchString(text)
}
