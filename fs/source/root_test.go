package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/store"
)

// TestSourceThroughAUsersSymlink: run as root, a volume's source that
// uid 1001 swapped for a symlink of theirs (to a folder only root may
// read) is refused, not snapshotted into the mount; a symlink of root's
// own as the source is followed.
func TestSourceThroughAUsersSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := t.TempDir()
	private := filepath.Join(base, "private", "sub")
	os.MkdirAll(private, 0o755)
	os.Chmod(filepath.Dir(private), 0o700)
	os.WriteFile(filepath.Join(private, "note"), []byte("root's"), 0o644)
	home := filepath.Join(base, "home")
	os.Mkdir(home, 0o755)
	os.Chown(home, 1001, 1001)
	plain := filepath.Join(home, "plain")
	os.Mkdir(plain, 0o755)
	r := testRepo(t, plain)
	ctx := context.Background()
	if _, err := Snapshot(ctx, r, "v", store.SnapshotOptions{}, Options{}); err != nil {
		t.Fatal(err)
	}
	os.Rename(plain, plain+".old")
	os.Symlink(private, plain)
	os.Lchown(plain, 1001, 1001)
	if _, err := Snapshot(ctx, r, "v", store.SnapshotOptions{}, Options{AllowEmpty: true}); err == nil ||
		!strings.Contains(err.Error(), "a symlink of uid 1001") {
		t.Errorf("source swapped for uid 1001's symlink: %v, want refused", err)
	}
	os.Lchown(plain, 0, 0)
	res, err := Snapshot(ctx, r, "v", store.SnapshotOptions{}, Options{AllowEmpty: true})
	if err != nil {
		t.Fatalf("through root's own symlink: %v", err)
	}
	if got := string(readBack(t, r, res.Snapshot, "note")); got != "root's" {
		t.Errorf("through root's own symlink: note %q", got)
	}
}

// TestSeedNeedsTheOwner: a file another user put where an image was
// written, with the image's size, time and mode, does not take the
// image's blocks unread.
func TestSeedNeedsTheOwner(t *testing.T) {
	seed := &store.Entry{Type: store.TypeRegular, Size: 5, Mode: 0o600, UID: 0, GID: 0}
	cur := *seed
	if !sameAsSeed(seed, &cur) {
		t.Error("the image's own file not taken")
	}
	cur.UID, cur.GID = 1001, 1001
	if os.Geteuid() != 1001 && sameAsSeed(seed, &cur) {
		t.Error("uid 1001's file of the same size, time and mode takes the image's blocks")
	}
}
