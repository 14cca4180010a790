package main

import (
	"context"
	"os"
	"path/filepath"
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
		{"chainfs --config a volume list --config b", "chainfs --config a --config b volume list"},
		{"chainfs volume list --repo /r", "chainfs --repo /r volume list"},
		// Unknown commands, and a line already reordered (the daemon
		// reorders what the CLI sends it), keep one "--".
		{"chainfs snapshto list", "chainfs -- snapshto list"},
		{"chainfs -- snapshto list", "chainfs -- snapshto list"},
		{"chainfs snapshot -- lst", "chainfs snapshot -- lst"},
	} {
		got := strings.Join(flagsFirst(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("flagsFirst(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestRepoDirFromArgs(t *testing.T) {
	t.Setenv("CHAINFS_REPO", "/env/repo")
	for in, want := range map[string]string{
		"chainfs snapshot list":                          "/env/repo",
		"chainfs --repo /a snapshot list":                "/a",
		"chainfs --repo=/b volume add v s":               "/b",
		"chainfs --log-level info --repo /c restore v/s": "/c",
		"chainfs serve --mount /m":                       "/env/repo",
	} {
		if got := repoDirFromArgs(strings.Fields(in)); got != want {
			t.Errorf("repoDirFromArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSizeAndCount(t *testing.T) {
	for in, want := range map[string]uint64{"262144": 262144, "256K": 256 << 10, "256KB": 256 << 10, "256KiB": 256 << 10,
		"1M": 1 << 20, "1mib": 1 << 20, "2G": 2 << 30, "1.5G": 3 << 29, "1T": 1 << 40, "2 GiB": 2 << 30, "0": 0, "12B": 12} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "K", "-1", "-1K", "12X", "1KK", "1.5.1M", "abc"} {
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

func TestRepoDirFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("repository = \"/from/config\"\n"), 0o644)
	t.Setenv("CHAINFS_REPO", "")
	t.Setenv("CHAINFS_CONFIG", cfg)
	for in, want := range map[string]string{
		"chainfs snapshot list":                         "/from/config",
		"chainfs --repo /flag snapshot list":            "/flag",
		"chainfs --config /nonexistent snapshot list":   defaultRepoDir(),
		"chainfs --catalog /c --repo /x image list":     "/x",
		"chainfs --log-level info --config " + cfg + "": "/from/config",
	} {
		if got := repoDirFromArgs(strings.Fields(in)); got != want {
			t.Errorf("repoDirFromArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMountArgs(t *testing.T) {
	app := newApp()
	for in, want := range map[string]string{
		"/r /m":                      "--repo /r serve --mount /m",
		"/r/ /m -o rw,allow_other":   "--repo /r serve --mount /m --allow-other",
		"/r /m -o allow_other=false": "--repo /r serve --mount /m --allow-other=false",
		"/r /m -o metrics=localhost:9721,log_level=info,nofail,x-systemd.automount,_netdev": "--repo /r --log-level=info serve --mount /m --metrics=localhost:9721",
		"/r /m -o metrics=":                                          "--repo /r serve --mount /m --metrics=",
		"-n /r -s /m -obogus,read_ahead=2":                           "--repo /r serve --mount /m --read-ahead=2",
		"/r /m -o config=/etc/c.toml,catalog=/srv/cat,tree_cache=10": "--repo /r --config=/etc/c.toml --catalog=/srv/cat serve --mount /m --tree-cache=10",
	} {
		req, err := parseMountArgs(strings.Fields(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		args, err := req.serveArgs(app)
		if got := strings.Join(args, " "); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"/r":                  "usage",
		"/r /m -o":            "-o needs a value",
		"/r /m -N 1234":       "not supported",
		"/r /m -x":            "unknown flag -x",
		"/r /m -o bogus":      `unknown option "bogus"`,
		"/r /m -o mount=/x":   `unknown option "mount=/x"`,
		"/r /m -o repo=/x":    `unknown option "repo=/x"`,
		"/r /m -o log_level=": "needs a value",
		"/r /m -o catalog":    "needs a value",
		"chainfs /m":          "absolute path",
		"relative /m":         "absolute path",
		"/r /m -o debug_fuse": `unknown option "debug_fuse"`,
	} {
		req, err := parseMountArgs(strings.Fields(in))
		if err == nil {
			_, err = req.serveArgs(app)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// runLine runs one command line here, as the CLI would without a daemon,
// and returns its exit status, stdout and stderr.
func runLine(t *testing.T, line string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	code := runIn(context.Background(), strings.Fields(line), &out, &errb)
	return code, out.String(), errb.String()
}

// TestUnknownCommand: a mistyped command or subcommand is named, with the
// nearest one when there is a near one, and is a usage error (status 2),
// whether given alone or after "help"; help itself still works.
func TestUnknownCommand(t *testing.T) {
	t.Setenv("CHAINFS_CONFIG", "")
	t.Setenv("CHAINFS_REPO", t.TempDir())
	for line, want := range map[string]string{
		"chainfs snapshto list":        `chainfs: unknown command "snapshto" (did you mean "snapshot"?)`,
		"chainfs snapshot lst":         `chainfs: unknown command "snapshot lst" (did you mean "snapshot list"?)`,
		"chainfs snapshot lst v":       `chainfs: unknown command "snapshot lst" (did you mean "snapshot list"?)`,
		"chainfs --repo /r voluem add": `chainfs: unknown command "voluem" (did you mean "volume"?)`,
		"chainfs xyzzyq":               `chainfs: unknown command "xyzzyq"` + "\n",
		"chainfs snapshot zzzz":        `chainfs: unknown command "snapshot zzzz"` + "\n",
		"chainfs help snapshto":        `chainfs: unknown command "snapshto" (did you mean "snapshot"?)`,
		"chainfs snapshot help lst":    `chainfs: unknown command "snapshot lst" (did you mean "snapshot list"?)`,
		"chainfs -- snapshto list":     `chainfs: unknown command "snapshto" (did you mean "snapshot"?)`,
		"chainfs snapshto --help":      `chainfs: unknown command "snapshto" (did you mean "snapshot"?)`,
		"chainfs snapshot lst --help":  `chainfs: unknown command "snapshot lst" (did you mean "snapshot list"?)`,
	} {
		code, _, stderr := runLine(t, line)
		if code != exitUsage || !strings.HasPrefix(stderr, want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 and %q", line, code, stderr, want)
		}
	}
	for line, want := range map[string]string{
		"chainfs":                      "COMMANDS:",
		"chainfs snapshot":             "snapshot a volume now",
		"chainfs snapshot help":        "snapshot a volume now",
		"chainfs help":                 "COMMANDS:",
		"chainfs help snapshot":        "snapshot a volume now",
		"chainfs help snapshot create": "--full",
		// --help after arguments: the command's help, whatever they are.
		"chainfs snapshot create v --help":  "--full",
		"chainfs restore v/s /tmp/x --help": "--overwrite",
	} {
		code, stdout, stderr := runLine(t, line)
		if code != exitOK || !strings.Contains(stdout, want) || stderr != "" {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want help with %q", line, code, stderr, stdout, want)
		}
	}
}

func TestNearestCommand(t *testing.T) {
	cmds := newApp().Commands
	for typed, want := range map[string]string{
		"snapshto": "snapshot", "snapshott": "snapshot", "snapsht": "snapshot", "imgae": "image",
		"restroe": "restore", "voluem": "volume", "g": "", "xyzzyq": "", "foo": "", "snapshot": "snapshot", "": "",
	} {
		if got := nearestCommand(cmds, typed); got != want {
			t.Errorf("nearestCommand(%q) = %q, want %q", typed, got, want)
		}
	}
	snapshot := findCommand(cmds, "snapshot").Subcommands
	for typed, want := range map[string]string{"lst": "list", "delte": "delete", "crate": "create", "ls": "", "zzzz": ""} {
		if got := nearestCommand(snapshot, typed); got != want {
			t.Errorf("nearestCommand(snapshot %q) = %q, want %q", typed, got, want)
		}
	}
}

// TestDeleteLatestRefused: snapshot delete VOLUME/latest deletes nothing,
// is a usage error, and names the snapshot latest meant and the command
// that deletes it.
func TestDeleteLatestRefused(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	t.Setenv("CHAINFS_CONFIG", "")
	t.Setenv("CHAINFS_REPO", filepath.Join(dir, "repo"))
	for _, line := range []string{"chainfs init", "chainfs volume add v " + src, "chainfs snapshot create v --name s1", "chainfs snapshot create v --name s2"} {
		if code, _, stderr := runLine(t, line); code != exitOK {
			t.Fatalf("%s: exit %d %s", line, code, stderr)
		}
	}
	code, _, stderr := runLine(t, "chainfs snapshot delete v/latest")
	want := `chainfs: refusing to delete "latest": name the snapshot; latest is now "s2" (chainfs snapshot delete v/s2)` + "\n"
	if code != exitUsage || !strings.HasPrefix(stderr, want) {
		t.Errorf("snapshot delete v/latest: exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
	if _, stdout, _ := runLine(t, "chainfs snapshot list v"); !strings.Contains(stdout, "s1") || !strings.Contains(stdout, "s2") {
		t.Errorf("after the refusal:\n%s", stdout)
	}
	if code, stdout, stderr := runLine(t, "chainfs snapshot delete v/s2"); code != exitOK || !strings.HasPrefix(stdout, "moved snapshot v/s2 to the trash until ") {
		t.Errorf("snapshot delete v/s2: exit %d %q %q", code, stdout, stderr)
	}
}
