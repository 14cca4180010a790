package main

import (
	"strings"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	app := newApp()
	for _, c := range []struct{ in, want string }{
		{"chainfs snapshot create home --name x", "chainfs snapshot create --name x -- home"},
		{"chainfs snapshot create --name x home", "chainfs snapshot create --name x -- home"},
		{"chainfs volume add v /src --exclude *.tmp --one-file-system --exclude b/", "chainfs volume add --exclude *.tmp --one-file-system --exclude b/ -- v /src"},
		{"chainfs serve --mount /m --log-level info", "chainfs --log-level info serve --mount /m"},
		{"chainfs --repo /r snapshot list v --json", "chainfs --repo /r snapshot list --json -- v"},
		{"chainfs restore v/s -- --odd-target", "chainfs restore -- v/s -- --odd-target"},
		{"chainfs volume list", "chainfs volume list"},
	} {
		got := strings.Join(flagsFirst(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("flagsFirst(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestRepoDirAndForwarding(t *testing.T) {
	t.Setenv("CHAINFS_REPO", "/env/repo")
	for _, c := range []struct {
		in      string
		repo    string
		forward bool
	}{
		{"chainfs snapshot list", "/env/repo", true},
		{"chainfs --repo /a snapshot list", "/a", true},
		{"chainfs --repo=/b volume add v s", "/b", true},
		{"chainfs --log-level info --repo /c restore v/s t", "/c", true},
		{"chainfs serve --mount /m", "/env/repo", false},
		{"chainfs init", "/env/repo", false},
		{"chainfs umount /m", "/env/repo", false},
		{"chainfs snapshot create --help", "/env/repo", false},
		{"chainfs --help", "/env/repo", false},
		{"chainfs", "/env/repo", false},
	} {
		args := strings.Fields(c.in)
		if got := repoDirFromArgs(args); got != c.repo {
			t.Errorf("repoDirFromArgs(%q) = %q, want %q", c.in, got, c.repo)
		}
		if got := forwardable(args); got != c.forward {
			t.Errorf("forwardable(%q) = %v, want %v", c.in, got, c.forward)
		}
	}
}

func TestParseSizeAndCount(t *testing.T) {
	for in, want := range map[string]uint64{"262144": 262144, "256K": 256 << 10, "256KiB": 256 << 10, "1M": 1 << 20, "1mib": 1 << 20, "2G": 2 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "K", "0", "-1", "1.5M", "12X"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	if count(1, "file") != "1 file" || count(2, "directory") != "2 directories" || count(0, "symlink") != "0 symlinks" {
		t.Error("count")
	}
	if size(0) != "0 B" || size(1536) != "1.5 KiB" || size(256<<10) != "256.0 KiB" {
		t.Errorf("size: %q %q %q", size(0), size(1536), size(256<<10))
	}
}
