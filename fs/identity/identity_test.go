package identity

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDoActsAsTheCaller checks, as root, that work done for uid 1001 is
// judged by the kernel as that user's: no creating in root's directory, no
// chown to root, no file capabilities, and what it makes is its own.
func TestDoActsAsTheCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// t.TempDir's folders are 0700: uid 1001 could not reach into them.
	dir, err := os.MkdirTemp("", "identity")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	rootOnly := filepath.Join(dir, "root-only")
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(rootOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	id := &Identity{UID: 1001, GID: 1001}

	err = id.Do(func() error {
		_, err := os.Create(filepath.Join(rootOnly, "f"))
		return err
	})
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("create in a root-only directory as uid 1001: %v, want permission denied", err)
	}

	mine := filepath.Join(open, "mine")
	err = id.Do(func() error {
		f, err := os.Create(mine)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Chown(0, 0); !errors.Is(err, unix.EPERM) {
			t.Errorf("chown to root as uid 1001: %v, want EPERM", err)
		}
		capability := []byte{0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		if err := unix.Fsetxattr(int(f.Fd()), "security.capability", capability, 0); err == nil {
			t.Error("setting security.capability as uid 1001 succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(mine, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1001 || st.Gid != 1001 {
		t.Errorf("made by uid 1001: owned by %d:%d", st.Uid, st.Gid)
	}

	// The work of the process itself is untouched afterwards.
	for range 50 {
		if err := (*Identity)(nil).Do(func() error {
			f, err := os.Create(filepath.Join(rootOnly, "g"))
			if err == nil {
				f.Close()
			}
			return err
		}); err != nil {
			t.Fatalf("the process's own work after acting as uid 1001: %v", err)
		}
	}
}

func TestOfProcessReadsGroups(t *testing.T) {
	id := OfProcess(uint32(os.Getpid()), uint32(os.Getuid()), uint32(os.Getgid()))
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Groups) != len(groups) {
		t.Errorf("groups %v, want %v", id.Groups, groups)
	}
}
