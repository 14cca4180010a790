package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClearTargetFollowsNothing: a volume from an image that fails takes
// back what it wrote through the directory it checked, not by its path,
// which whoever can write the parent may have swapped for a symlink.
func TestClearTargetFollowsNothing(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	os.Mkdir(victim, 0o700)
	os.WriteFile(filepath.Join(victim, "precious"), []byte("keep"), 0o600)
	for _, existed := range []bool{true, false} {
		target := filepath.Join(base, "site")
		if existed {
			os.Mkdir(target, 0o755)
		}
		dir, made, err := prepareTarget(target)
		if err != nil {
			t.Fatal(err)
		}
		if made == existed {
			t.Errorf("made %v for a target that existed %v", made, existed)
		}
		os.MkdirAll(filepath.Join(target, "written", "deeper"), 0o755)
		os.WriteFile(filepath.Join(target, "written", "deeper", "f"), []byte("x"), 0o644)
		moved := filepath.Join(base, "site.real")
		if err := os.Rename(target, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, target); err != nil {
			t.Fatal(err)
		}
		clearTarget(dir, made)
		dir.Close()
		if b, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(b) != "keep" {
			t.Errorf("existed %v: the symlink's target lost its file: %q %v", existed, b, err)
		}
		if names, _ := os.ReadDir(moved); len(names) != 0 {
			t.Errorf("existed %v: what was written is still there: %v", existed, names)
		}
		os.Remove(target)
		os.RemoveAll(moved)
	}
}
