package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDaemonLogRefusesPlantedFiles: the repository may belong to a user,
// who must not make a root daemon append to a file of their choosing.
func TestDaemonLogRefusesPlantedFiles(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plants := map[string]func(string) error{
		"symlink":   func(p string) error { return os.Symlink(other, p) },
		"hard link": func(p string) error { return os.Link(other, p) },
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o600) },
	}
	for name, plant := range plants {
		log := filepath.Join(dir, "daemon.log")
		os.Remove(log)
		if err := plant(log); err != nil {
			t.Fatal(err)
		}
		if f, err := openDaemonLog(log); err == nil {
			f.Close()
			t.Errorf("%s as daemon.log: opened", name)
		}
	}
	if b, _ := os.ReadFile(other); string(b) != "precious\n" {
		t.Errorf("the other file became %q", b)
	}
	log := filepath.Join(dir, "fresh.log")
	f, err := openDaemonLog(log)
	if err != nil {
		t.Fatalf("a new log: %v", err)
	}
	f.Close()
	if st, _ := os.Stat(log); st.Mode().Perm() != 0o600 {
		t.Errorf("a new log is %v, want 0600", st.Mode().Perm())
	}
}
