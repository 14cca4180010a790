package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImagesFromSnapshots: images made with the CLI and through
// .control/export show in images/ exactly as their snapshot, outlive it,
// and go with image rm.
func TestImagesFromSnapshots(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	makeCraftedTree(t, src)
	treeState(t, src)
	want := treeState(t, src)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	e.ok("image", "create", "golden", "--from", "v/s1", "--description", "prepared")
	e.ok("snapshot", "delete", "v/s1")
	d := e.serve(filepath.Join(e.dir, "mnt"))
	compareTrees(t, want, treeState(t, filepath.Join(d.mount, "images/golden")), "images/golden")

	os.WriteFile(filepath.Join(src, "small.txt"), []byte("changed\n"), 0o644)
	e.snapshot("v", "--name", "s2")
	ctl := filepath.Join(d.mount, ".control/export")
	sh(t, fmt.Sprintf("echo v/s2 second > %s && cat %s/images/second/small.txt", ctl, d.mount))
	out, _ := exec.Command("bash", "-c", fmt.Sprintf("echo v/s2 second > %s", ctl)).CombinedOutput()
	if !strings.Contains(string(out), "File exists") {
		t.Errorf("export to a taken name: %s", out)
	}
	out, _ = exec.Command("bash", "-c", fmt.Sprintf("echo v/nosuch third > %s", ctl)).CombinedOutput()
	if !strings.Contains(string(out), "No such file or directory") {
		t.Errorf("export of a missing snapshot: %s", out)
	}
	list := e.ok("image", "list")
	if !strings.Contains(list, "golden") || !strings.Contains(list, "second") || !strings.Contains(list, "prepared") {
		t.Errorf("image list:\n%s", list)
	}
	e.ok("image", "rm", "golden")
	if _, err := os.Stat(filepath.Join(d.mount, "images/golden")); !os.IsNotExist(err) {
		t.Errorf("removed image still visible: %v", err)
	}
	e.fails(1, "image golden: not found", "image", "rm", "golden")
	if got := e.ok("volume", "list"); strings.Contains(got, "image") {
		t.Errorf("images show among volumes:\n%s", got)
	}
}
