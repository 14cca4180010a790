package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	chainfs "github.com/chainfs/chainfs/fs"
	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

// Outcomes of a check.
const (
	checkOK   = "ok"
	checkWarn = "warn" // works, but something a user may trip on
	checkFail = "FAIL" // chainfs cannot do its job until fixed
)

// finding is one check's outcome and, when not ok, how to fix it.
type finding struct {
	Check  string `json:"check"`
	Result string `json:"result"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func doctorCommand(ss *session) *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check what chainfs needs on this machine and say how to fix what is missing",
		ArgsUsage: " ",
		Description: "Checks /dev/fuse, fusermount3, the configuration file, the repository, the daemon, its mount\n" +
			"and stale mounts, and free space. Exit status 1 when a check fails.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0); err != nil {
				return err
			}
			findings := diagnose(c, ss)
			failed := 0
			for _, f := range findings {
				if f.Result == checkFail {
					failed++
				}
			}
			err := cliEnv(c).output(findings, func() {
				for _, f := range findings {
					fmt.Fprintf(c.App.Writer, "%-4s  %-12s %s\n", f.Result, f.Check, f.Detail)
					if f.Fix != "" {
						fmt.Fprintf(c.App.Writer, "      %-12s fix: %s\n", "", f.Fix)
					}
				}
			})
			if err == nil && failed > 0 {
				err = fmt.Errorf("%d check%s failed", failed, plural(failed, "", "s"))
			}
			return err
		},
	}
}

// diagnose runs every check.
func diagnose(c *cli.Context, ss *session) []finding {
	var out []finding
	add := func(check, result, detail, fix string) {
		out = append(out, finding{check, result, detail, fix})
	}
	root := os.Geteuid() == 0

	// The kernel's FUSE.
	if st, err := os.Stat("/dev/fuse"); err != nil {
		add("/dev/fuse", checkFail, "missing: the kernel's FUSE module is not loaded, or a container was started without the device",
			"modprobe fuse (in a container: start it with --device /dev/fuse)")
	} else if st.Mode()&os.ModeCharDevice == 0 {
		add("/dev/fuse", checkFail, "is not a character device", "rm /dev/fuse && modprobe -r fuse && modprobe fuse")
	} else if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		add("/dev/fuse", checkFail, fmt.Sprintf("cannot be opened: %v", err),
			"check its mode (crw-rw-rw-) and, in a container, the device cgroup")
	} else {
		f.Close()
		add("/dev/fuse", checkOK, "present and opens", "")
	}
	if p, err := exec.LookPath("fusermount3"); err != nil {
		result := checkFail
		if root {
			result = checkWarn // root mounts directly
		}
		add("fusermount3", result, "not found: users other than root cannot mount or unmount", "apt-get install fuse3")
	} else {
		add("fusermount3", checkOK, p, "")
	}

	// The configuration file.
	if err := ss.configErr; err != nil {
		add("config", checkFail, err.Error(), "correct that line; chainfs config show prints what is in effect")
	} else if f := ss.config; f != nil {
		add("config", checkOK, f.Path+" is valid", "")
	} else {
		add("config", checkOK, ss.configPath(c)+" absent: defaults apply", "")
	}

	// The repository.
	dir := repoDir(c)
	info, err := store.ReadInfo(dir)
	repoOK := err == nil
	loc, _ := remoteRepo(c)
	switch {
	case loc != nil && errors.Is(err, store.ErrNotRepository):
		// The bucket itself is not asked here.
		add("repository", checkWarn, fmt.Sprintf("%s: this host has no replica of it yet (%s); the first command makes it from the bucket", loc, dir), "")
	case loc != nil && err == nil:
		add("repository", checkOK, fmt.Sprintf("%s (replica %s, format %d, region %s)", loc, dir, info.Format, info.Region), "")
	case errors.Is(err, store.ErrNotRepository) && ss.configErr != nil:
		// The file that would name the repository did not load: the path
		// tried is only the default, and making one there would be wrong.
		add("repository", checkFail, fmt.Sprintf("%s: not initialised (the configuration file, which may name another, did not load)", dir),
			"correct the configuration file first")
	case errors.Is(err, store.ErrNotRepository):
		add("repository", checkFail, fmt.Sprintf("%s: not initialised", dir),
			fmt.Sprintf("chainfs --repo %s init (or set repository in %s)", dir, ss.configPath(c)))
	case err != nil:
		add("repository", checkFail, err.Error(), "check the path and its permissions; chainfs check tells more")
	default:
		add("repository", checkOK, fmt.Sprintf("%s (format %d, region %s)", dir, info.Format, info.Region), "")
	}

	// The daemon and its mount.
	mounts := chainfs.Mounts()
	var mine []chainfs.MountEntry
	for _, m := range mounts {
		if m.Source == dir {
			mine = append(mine, m)
		}
	}
	if repoOK {
		conn, err := net.Dial("unix", filepath.Join(dir, daemon.SocketName))
		switch {
		case err == nil:
			conn.Close()
			where := "its mount is not in this mount namespace"
			if len(mine) > 0 {
				where = "mounted at " + mine[0].Dir
			}
			add("daemon", checkOK, "serving "+dir+"; "+where, "")
		case errors.Is(err, syscall.EACCES):
			add("daemon", checkWarn, "running, but its socket is not yours: commands will open the repository themselves and find it locked",
				"run chainfs as the user that runs the daemon")
		default:
			add("daemon", checkWarn, "not running: nothing is mounted and no policy runs",
				"systemctl enable --now chainfs, or chainfs serve --mount DIR (see docs/operations.md)")
			if v, ok := ss.config.Get("serve.mount"); ok && !slices.ContainsFunc(mounts, func(m chainfs.MountEntry) bool { return m.Dir == v.Text }) {
				if st, err := os.Stat(v.Text); err != nil || !st.IsDir() {
					add("mount point", checkWarn, fmt.Sprintf("%s (%s:%d) is not a directory: serve will refuse it", v.Text, ss.config.Path, v.Line),
						"mkdir -p "+v.Text)
				}
			}
		}
	}
	for _, m := range mounts {
		stale, err := chainfs.Stale(m.Dir)
		switch {
		case errors.Is(err, fs.ErrPermission):
			// Another user's mount without allow_other: not ours to judge.
			add("mount", checkOK, fmt.Sprintf("%s (repository %s) belongs to another user", m.Dir, m.Source), "")
		case stale:
			add("mount", checkFail, fmt.Sprintf("%s (repository %s): stale, its daemon is gone", m.Dir, m.Source),
				fmt.Sprintf("umount -l %s (chainfs serve also clears it when it starts there)", m.Dir))
		case err != nil:
			add("mount", checkFail, fmt.Sprintf("%s (repository %s): %v", m.Dir, m.Source, err),
				"look at the daemon's log (journalctl -u chainfs); kill it and umount -l the mount if it stays hung")
		default:
			add("mount", checkOK, fmt.Sprintf("%s (repository %s) answers", m.Dir, m.Source), "")
		}
	}

	// Free space for the repository.
	if repoOK {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err == nil {
			free, total := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
			if free < total/20 {
				add("free space", checkWarn, fmt.Sprintf("%s free of %s on the repository's file system; snapshots stop short of full", size(free), size(total)),
					"delete old snapshots (chainfs snapshot delete) and run chainfs gc, or give the file system room")
			} else {
				add("free space", checkOK, fmt.Sprintf("%s free of %s", size(free), size(total)), "")
			}
		}
	}

	// allow_other for users other than root needs fuse.conf's consent.
	if !root {
		if conf, err := os.ReadFile("/etc/fuse.conf"); err == nil && !hasConfLine(string(conf), "user_allow_other") {
			add("fuse.conf", checkWarn, "user_allow_other is off: serve --allow-other fails for users other than root",
				"uncomment user_allow_other in /etc/fuse.conf")
		}
	}
	return out
}

// hasConfLine reports whether text has word on a line of its own, not
// commented out.
func hasConfLine(text, word string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == word {
			return true
		}
	}
	return false
}
