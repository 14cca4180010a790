package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRootRefusesRepositoriesOthersCanChange: root opens no repository
// whose folders, or the folders above it, another user can change.
func TestRootRefusesRepositoriesOthersCanChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := t.TempDir()
	cases := []struct {
		name   string
		spoil  func(parent, repo string) error
		refuse bool
	}{
		{"root's, in a root folder", func(p, r string) error { return nil }, false},
		{"repository a user's", func(p, r string) error { return os.Chown(r, 1001, 1001) }, true},
		{"repository writable by all", func(p, r string) error { return os.Chmod(r, 0o777) }, true},
		{"packs a user's", func(p, r string) error { return os.Chown(filepath.Join(r, packsDir), 1001, 1001) }, true},
		{"metadata writable by its group", func(p, r string) error { return os.Chmod(filepath.Join(r, metaDir), 0o770) }, true},
		{"parent a user's", func(p, r string) error { return os.Chown(p, 1001, 1001) }, true},
		{"parent writable by all", func(p, r string) error { return os.Chmod(p, 0o777) }, true},
		{"parent writable by all but sticky, like /tmp", func(p, r string) error { return os.Chmod(p, os.ModeSticky|0o777) }, false},
		{"lock a user's symlink in root's folders", func(p, r string) error {
			os.Remove(filepath.Join(r, lockFile))
			if err := os.Symlink(filepath.Join(p, "victim"), filepath.Join(r, lockFile)); err != nil {
				return err
			}
			return os.Lchown(filepath.Join(r, lockFile), 1001, 1001)
		}, true},
		{"a table a user left in root's folders", func(p, r string) error {
			names, _ := filepath.Glob(filepath.Join(r, metaDir, "*"))
			return os.Chown(names[0], 1001, 1001)
		}, true},
		{"repository reached by a user's symlink", nil, true},
		{"repository reached by root's symlink into a user's folder", nil, true},
		{"repository reached by root's symlink", nil, false},
	}
	for i, tc := range cases {
		parent := filepath.Join(base, string(rune('a'+i)))
		repo := filepath.Join(parent, "repo")
		if err := os.Mkdir(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Init(context.Background(), Options{Dir: repo}); err != nil {
			t.Fatalf("%s: init: %v", tc.name, err)
		}
		if tc.spoil != nil {
			if err := tc.spoil(parent, repo); err != nil {
				t.Fatal(err)
			}
		} else {
			link := filepath.Join(base, fmt.Sprintf("link%d", i))
			if err := os.Symlink(repo, link); err != nil {
				t.Fatal(err)
			}
			var err error
			switch {
			case strings.Contains(tc.name, "a user's symlink"):
				err = os.Lchown(link, 1001, 1001)
			case strings.Contains(tc.name, "a user's folder"):
				err = os.Chown(parent, 1001, 1001)
			}
			if err != nil {
				t.Fatal(err)
			}
			repo = link
		}
		r, err := Open(context.Background(), Options{Dir: repo})
		if err == nil {
			r.Close()
		}
		if got := errors.Is(err, ErrUntrusted); got != tc.refuse {
			t.Errorf("%s: open: %v; refused %v, want %v", tc.name, err, got, tc.refuse)
		}
	}
}

// TestLockFollowsNothing: the lock, truncated and written at every open,
// is never a symlink's or a fifo's (whoever could write the folder once
// may have left one).
func TestLockFollowsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := Init(context.Background(), Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)
	lock := filepath.Join(dir, lockFile)
	for _, plant := range []func() error{
		func() error { return os.Symlink(victim, lock) },
		func() error { return os.Link(victim, lock) },
		func() error { return unix.Mkfifo(lock, 0o600) },
	} {
		os.Remove(lock)
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		if r, err := Open(context.Background(), Options{Dir: dir}); err == nil {
			r.Close()
			t.Errorf("opened with %s planted as the lock", lock)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the file a symlink pointed at became %q", b)
	}
}
