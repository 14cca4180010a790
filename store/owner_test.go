package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		if _, err := Init(Options{Dir: repo}); err != nil {
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
