package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTrash: a deleted snapshot goes to the trash (by snapshot delete and
// by rmdir in the mount), leaves the listings and its name, shows
// read-only and exact at volumes/v/.trash/NAME, counts in usage, comes
// back by trash restore (under another name when its own is taken), and
// goes for good by trash empty, by gc once its days are up, or at once
// with no trash kept.
func TestTrash(t *testing.T) {
	e, d := servedToOthers(t)
	src := filepath.Join(e.dir, "src")
	e.snapshot("v", "--name", "s2")

	if out := e.ok("snapshot", "delete", "v/s"); !strings.Contains(out, "moved snapshot v/s to the trash until") ||
		!strings.Contains(out, "chainfs trash restore v/s") {
		t.Fatalf("delete into the trash: %s", out)
	}
	if list := e.ok("snapshot", "list", "v"); strings.Contains(list, "v       s ") || !strings.Contains(list, "s2") {
		t.Errorf("snapshot list after the delete:\n%s", list)
	}
	if list := e.ok("trash", "list"); !strings.Contains(list, "v       s ") || !strings.Contains(list, "root") {
		t.Errorf("trash list:\n%s", list)
	}
	if js := e.ok("trash", "list", "v", "--json"); !strings.Contains(js, `"name": "s"`) || !strings.Contains(js, `"by": "manual"`) ||
		!strings.Contains(js, `"expires"`) {
		t.Errorf("trash list --json:\n%s", js)
	}
	if usage := e.ok("usage"); !strings.Contains(usage, "s (trash)") || !strings.Contains(usage, "in the trash: 1 snapshot") {
		t.Errorf("usage does not count the trash:\n%s", usage)
	}

	// In the mount: gone from the volume, browsable in .trash, unlisted.
	trashed := filepath.Join(d.mount, "volumes", "v", ".trash", "s")
	if _, err := os.Stat(d.snapDir("v", "s")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deleted snapshot's directory: %v", err)
	}
	rsyncSame(t, src, trashed)
	if names, _ := os.ReadDir(filepath.Join(d.mount, "volumes", "v")); len(names) != 2 {
		t.Errorf("volumes/v lists %v; want s2 and latest", names)
	}
	buf := make([]byte, 256)
	if n, err := unix.Getxattr(trashed, "user.chainfs.why", buf); err != nil || !strings.HasPrefix(string(buf[:n]), "in the trash: deleted (manual)") {
		t.Errorf("user.chainfs.why in the trash: %q, %v", buf[:max(n, 0)], err)
	}
	if err := os.WriteFile(filepath.Join(trashed, "data"), []byte("x"), 0o600); err == nil {
		t.Error("a file in the trash was written")
	}

	// rmdir in the mount deletes into the trash too.
	if err := unix.Rmdir(d.snapDir("v", "s2")); err != nil {
		t.Fatalf("rmdir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.mount, "volumes", "v", ".trash", "s2")); err != nil {
		t.Errorf("rmdir's snapshot in the trash: %v", err)
	}

	// Restore; a name taken meanwhile wants --as.
	if out := e.ok("trash", "restore", "v/s"); !strings.Contains(out, "snapshot v/s restored from the trash") {
		t.Errorf("restore: %s", out)
	}
	rsyncSame(t, src, d.snapDir("v", "s"))
	e.snapshot("v", "--name", "s2")
	e.fails(1, "snapshot v/s2 exists; restore it under another name with --as", "trash", "restore", "v/s2")
	e.ok("trash", "restore", "v/s2", "--as", "s2-old")
	rsyncSame(t, src, d.snapDir("v", "s2-old"))
	e.fails(1, "snapshot v/nosuch is not in the trash", "trash", "restore", "v/nosuch")

	// Emptying.
	e.fails(2, "name a volume or a snapshot, or pass --all", "trash", "empty")
	e.ok("snapshot", "delete", "v/s2")
	if out := e.ok("trash", "empty", "v/s2"); !strings.Contains(out, "deleted v/s2 for good") {
		t.Errorf("trash empty: %s", out)
	}
	if out := e.ok("trash", "list"); !strings.Contains(out, "the trash is empty (it keeps a deleted snapshot for 7 days)") {
		t.Errorf("trash list of an empty trash: %s", out)
	}
	e.fails(2, "give a number of days from 0", "trash", "days", "seven")
	e.ok("trash", "days", "1")
	e.ok("snapshot", "delete", "v/s2-old")
	if out := e.ok("gc"); strings.Contains(out, "deleted for good") || !strings.Contains(out, "1 snapshot in the trash keep") {
		t.Errorf("gc before the trash days are up: %s", out)
	}
	// Setting the days applies to what is in the trash already.
	if out := e.ok("trash", "days", "0"); !strings.Contains(out, "no time: deletions are for good") {
		t.Errorf("trash days 0: %s", out)
	}
	if out := e.ok("gc"); !strings.Contains(out, "deleted for good 1 snapshot whose time in the trash was up: v/s2-old") {
		t.Errorf("gc after the trash days: %s", out)
	}
	if out := e.ok("snapshot", "delete", "v/s"); !strings.Contains(out, "deleted snapshot v/s for good") {
		t.Errorf("delete with no trash: %s", out)
	}
	if n := e.snapshotCount("v"); n != 0 {
		t.Errorf("%d snapshots left", n)
	}
	e.ok("check")
}

// TestTrashedSnapshotIsNotTheLast: the source is compared with the newest
// snapshot not in the trash, so deleting an empty snapshot taken by
// mistake (--allow-empty) does not let the next one of an empty source
// through.
func TestTrashedSnapshotIsNotTheLast(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	os.Remove(filepath.Join(src, "f"))
	e.snapshot("v", "--name", "oops", "--allow-empty")
	e.ok("snapshot", "delete", "v/oops")
	e.fails(1, "holds no files where the previous snapshot s1 held 1 file", "snapshot", "create", "v")
}
