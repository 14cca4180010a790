package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the README's first command's script as make demo does and
// stops the daemon it leaves serving.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	mnt := filepath.Join(dir, "mnt")
	t.Cleanup(func() {
		if mounted(mnt) {
			exec.Command(chainfsBin, "umount", mnt).Run()
		}
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	cmd := exec.Command("bash", "demo.sh")
	cmd.Env = append(os.Environ(), "CHAINFS="+chainfsBin, "DEMO_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"first snapshot says: first version", "second snapshot says: second version", "serves every snapshot at " + mnt} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// rsync found nothing between "identical):" and the next line of ours.
	after := strings.SplitN(string(out), "(no output = identical):\n", 2)
	if len(after) != 2 || !strings.HasPrefix(after[1], "first snapshot says") {
		t.Errorf("rsync reported differences:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "volumes/demo/second/docs/notes.txt")); err != nil || string(b) != "second version\n" {
		t.Errorf("the demo's mount: %q %v", b, err)
	}
}
