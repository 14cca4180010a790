package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

// repoDir is --repo, else $CHAINFS_REPO (urfave reads it), else the
// default for the user; absolute, so that messages name it wherever they
// are read.
func repoDir(c *cli.Context) string {
	d := c.String("repo")
	if d == "" {
		return defaultRepoDir()
	}
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}

func defaultRepoDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/chainfs"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "chainfs")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "chainfs")
}

// leadingGlobals reads the global flags before the command, before the
// command line is parsed: their values by name.
func leadingGlobals(args []string) map[string]string {
	flags := newApp().Flags
	vals := map[string]string{}
	for i := 1; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		name, val, inline := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !inline && takesValue(flags, args[i]) && i+1 < len(args) {
			i++
			val = args[i]
		}
		vals[name] = val
	}
	return vals
}

// repoDirFromArgs finds the repository a command line names, before the
// command line is parsed: --repo, else $CHAINFS_REPO, else the
// configuration file's, else the default.
func repoDirFromArgs(args []string) string {
	globals := leadingGlobals(args)
	if d := globals["repo"]; d != "" {
		return d
	}
	if d := os.Getenv("CHAINFS_REPO"); d != "" {
		return d
	}
	if f, err := loadConfig(configPathFromArgs(globals)); err == nil {
		if v, ok := f.Get("repository"); ok {
			return v.Text
		}
	}
	return defaultRepoDir()
}

// configPathFromArgs is --config among the leading global flags, else
// $CHAINFS_CONFIG; "" for the default.
func configPathFromArgs(globals map[string]string) string {
	if p := globals["config"]; p != "" {
		return p
	}
	return os.Getenv("CHAINFS_CONFIG")
}

// openRepo opens the repository for a command.
func openRepo(c *cli.Context) (*store.Repo, error) {
	purpose := "chainfs " + strings.Join(os.Args[1:], " ")
	opts := store.Options{Dir: repoDir(c), Logger: logger(c), Purpose: purpose}
	if c.Command.Name == "serve" {
		// A daemon started as the last one unmounts waits for it to go.
		opts.LockWait = 10 * time.Second
	}
	if v := c.String("metadata-cache"); v != "" { // serve's
		n, err := parseSize(v)
		if err == nil && n == 0 {
			err = errors.New("at least one byte")
		}
		if err != nil {
			return nil, usageError{fmt.Errorf("--metadata-cache: %w", err)}
		}
		opts.MetadataCache = int64(n)
	}
	return store.Open(c.Context, opts)
}

// withRepo runs fn on the repository, opened here and closed after.
func withRepo(c *cli.Context, fn func(*store.Repo) error) error {
	r, err := openRepo(c)
	if err != nil {
		return err
	}
	err = fn(r)
	if cerr := r.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close repository: %w", cerr)
	}
	return err
}

// sameDir reports whether two paths name the same directory.
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a repository",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "region", Value: store.DefaultRegion, Usage: "region label of the repository"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0); err != nil {
				return err
			}
			dir := repoDir(c)
			info, err := store.Init(c.Context, store.Options{Dir: dir, Region: c.String("region")})
			if err != nil {
				return err
			}
			return cliEnv(c).output(struct {
				Dir string `json:"dir"`
				store.Info
			}{dir, *info}, func() {
				fmt.Fprintf(c.App.Writer, "initialised repository %s (region %s)\n", dir, info.Region)
			})
		},
	}
}

// wantArgs checks the number of positional arguments.
func wantArgs(c *cli.Context, min, max int) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		if c.Command.ArgsUsage != "" && c.Command.ArgsUsage != " " {
			return usagef("usage: chainfs %s %s", commandName(c), c.Command.ArgsUsage)
		}
		return usagef("%s takes no arguments", commandName(c))
	}
	return nil
}
