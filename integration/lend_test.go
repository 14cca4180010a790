package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadWhileACommandHoldsTheRepository: without a daemon, a command
// that holds the repository (an import waiting for its input here, as a
// long snapshot would) answers other commands that only read it, and
// refuses the others naming itself (status 4); once it ends, commands
// open the repository themselves again.
func TestReadWhileACommandHoldsTheRepository(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")

	holder := exec.Command(chainfsBin, "image", "import", "img", "-")
	holder.Env = append(os.Environ(), "CHAINFS_REPO="+e.repo)
	in, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		holder.Process.Kill()
		holder.Wait()
	}()
	sock := filepath.Join(e.repo, "daemon.sock")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the import holding the repository did not open its socket")
		}
	}

	if out := e.ok("snapshot", "list", "v"); !strings.Contains(out, "s1") {
		t.Errorf("snapshot list while the import runs:\n%s", out)
	}
	if out := e.ok("volume", "list", "--json"); !strings.Contains(out, `"name": "v"`) {
		t.Errorf("volume list while the import runs:\n%s", out)
	}
	e.fails(4, "held by process ", "snapshot", "create", "v")

	in.Close() // an empty stream: the import fails and lets go
	holder.Wait()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket outlived the command: %v", err)
	}
	e.snapshot("v", "--name", "s2")
	if out := e.ok("snapshot", "list", "v"); !strings.Contains(out, "s2") {
		t.Errorf("snapshot list after:\n%s", out)
	}
}
