//go:build linux

package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store/imagefile"
)

// TestMountPoint: a mount answers its probe and is listed; one made from
// outside, or a directory that is not empty, is refused; an unmount from
// outside closes Done and frees the directory for the next mount.
func TestMountPoint(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	fsys, mnt, repo, _ := mountSnapshotFS(t, src, 4096)
	if err := (&MountPoint{dir: mnt}).Probe(5 * time.Second); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, err := Mount(mnt, fsys, MountOptions{}); err == nil || !strings.Contains(err.Error(), "already mounted") {
		t.Errorf("a second mount at %s: %v", mnt, err)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	if _, err := Mount(full, fsys, MountOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a mount on a directory that is not empty: %v", err)
	}
	if _, err := Mount(filepath.Join(full, "nowhere"), fsys, MountOptions{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a mount on a missing directory: %v", err)
	}

	other := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(other, 0o755)
	m, err := Mount(other, New(Options{Repo: repo, Images: &imagefile.Library{Repo: repo}, Controller: &fakeController{}}), MountOptions{Source: "test-source"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	found := false
	for _, e := range Mounts() {
		found = found || e.Dir == other && e.Source == "test-source"
	}
	if !found {
		t.Errorf("%s is not in the chainfs mounts: %+v", other, Mounts())
	}
	if stale, err := Stale(other); stale || err != nil {
		t.Errorf("a live mount: stale %v, %v", stale, err)
	}
	if err := Unmount(other, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed by an unmount from outside")
	}
	m2, err := Mount(other, New(Options{Repo: repo, Images: &imagefile.Library{Repo: repo}, Controller: &fakeController{}}), MountOptions{})
	if err != nil {
		t.Fatalf("mount again after an unmount: %v", err)
	}
	if err := m2.Unmount(); err != nil {
		t.Errorf("unmount: %v", err)
	}
	<-m2.Done()
}
