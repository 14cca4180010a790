package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	chainfs "github.com/chainfs/chainfs/fs"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func serveCommand(ss *session) *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "mount every snapshot read-only and serve the CLI (the daemon; runs in the foreground)",
		ArgsUsage: " ",
		Description: "With the global --catalog DIR (chainfs serve --mount M --catalog DIR), the native image\n" +
			"files in DIR show as public images under images/ and in every command the daemon runs.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mount", Usage: "an empty directory to mount the repository on (config: [serve] mount)"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users in; the snapshots' own modes and owners apply"},
			&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics"},
			&cli.IntFlag{Name: "tree-cache", Value: chainfs.DefaultTreeCache, Usage: "directory entries kept decoded in memory"},
			&cli.IntFlag{Name: "read-ahead", Value: chainfs.DefaultReadAhead, Usage: "blocks a sequential reader has fetched ahead of it (0: none)"},
			&cli.StringFlag{Name: "metadata-cache", Value: "64MiB", Usage: "memory for metadata read from disk"},
			&cli.StringFlag{Name: "memory-limit", Value: "192MiB", Usage: "the memory the daemon's garbage collector keeps it under, if it can (0: no limit; $GOMEMLIMIT wins)"},
			&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request"},
		},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0); err != nil {
				return err
			}
			if c.String("mount") == "" {
				return usagef("serve: no mount point: give --mount DIR, or set mount under [serve] in %s", ss.configPath(c))
			}
			mnt, err := filepath.Abs(c.String("mount"))
			if err != nil {
				return err
			}
			if c.Int("tree-cache") < 1 || c.Int("read-ahead") < 0 {
				return usagef("serve: --tree-cache must be at least 1 and --read-ahead at least 0")
			}
			limit, err := parseSize(c.String("memory-limit"))
			if err != nil {
				return usagef("serve: --memory-limit: %v", err)
			}
			readAhead := c.Int("read-ahead")
			if readAhead == 0 {
				readAhead = -1 // chainfs.Options: none
			}
			log := logger(c)
			// Go collects garbage when the heap has doubled since the last
			// collection; a daemon that walked a big tree would keep that
			// much resident. A soft limit makes it collect sooner.
			if limit > 0 && os.Getenv("GOMEMLIMIT") == "" {
				go softMemoryLimit(c.Context, int64(limit), log)
			}
			var catalog *imagefile.Catalog
			if dir := c.String("catalog"); dir != "" {
				if dir, err = filepath.Abs(dir); err != nil {
					return err
				}
				if st, err := os.Stat(dir); err != nil || !st.IsDir() {
					return fmt.Errorf("catalog %s: not a directory", dir)
				}
				catalog = imagefile.OpenCatalog(dir, log)
			}
			return withRepo(c, func(r *store.Repo) error {
				return daemon.Run(c.Context, daemon.Options{
					Repo: r, Catalog: catalog, Mount: mnt, AllowOther: c.Bool("allow-other"), Debug: c.Bool("debug-fuse"), Logger: log,
					TreeCache: c.Int("tree-cache"), ReadAhead: readAhead, Metrics: c.String("metrics"), Version: versionString(),
					Serve: (&served{repo: r, mount: mnt, allowOther: c.Bool("allow-other"), catalog: catalog, cache: cacheDir(c), repoName: repoName(c)}).serve,
					Ready: func(metricsAddr string) {
						hint := ""
						if c.App.Writer == os.Stdout && term.IsTerminal(int(os.Stdout.Fd())) {
							hint = fmt.Sprintf(" (stop with Ctrl-C or 'chainfs umount %s')", mnt)
						}
						fmt.Fprintf(c.App.Writer, "serving %s at %s%s\n", repoName(c), mnt, hint)
						if metricsAddr != "" {
							fmt.Fprintf(c.App.Writer, "metrics at http://%s/metrics\n", metricsAddr)
						}
					},
				})
			})
		},
	}
}

// requiredFlagIsUsage makes urfave/cli's error for a missing required flag
// a usage error (exit status 2). Its type is unexported; its text is the
// one thing that tells it.
func requiredFlagIsUsage(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "Required flag") {
		return usageError{err}
	}
	return err
}

func umountCommand() *cli.Command {
	return &cli.Command{
		Name:      "umount",
		Usage:     "unmount a chainfs mount (the daemon then exits)",
		ArgsUsage: "DIR",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 1, 1); err != nil {
				return err
			}
			dir, err := filepath.Abs(c.Args().First())
			if err != nil {
				return err
			}
			if real, err := filepath.EvalSymlinks(dir); err == nil {
				dir = real
			}
			// Only chainfs's own: umount(8) is for anything else.
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s does not exist", dir)
			}
			switch m, ok := chainfs.MountAt(dir); {
			case !ok:
				return fmt.Errorf("%s is not a mount point", dir)
			case m.Type != "fuse.chainfs":
				return fmt.Errorf("%s is not a chainfs mount (it is %s): use umount(8)", dir, m.Type)
			}
			return chainfs.Unmount(dir, false)
		},
	}
}
