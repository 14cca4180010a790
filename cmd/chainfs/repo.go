package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

// repoDir is --repo, else $CHAINFS_REPO (urfave reads it), else the
// default for the user.
func repoDir(c *cli.Context) string {
	if d := c.String("repo"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/chainfs"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "chainfs")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "chainfs")
}

// logger is the process's slog logger at the --log-level.
func logger(c *cli.Context) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// openRepo opens the repository for a command.
func openRepo(c *cli.Context) (*store.Repo, error) {
	purpose := "chainfs " + strings.Join(os.Args[1:], " ")
	return store.Open(c.Context, store.Options{Dir: repoDir(c), Logger: logger(c), Purpose: purpose})
}

// withRepo runs fn on the open repository and closes it.
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
			info, err := store.Init(store.Options{Dir: dir, Region: c.String("region")})
			if err != nil {
				return err
			}
			return output(c, struct {
				Dir string `json:"dir"`
				store.Info
			}{dir, *info}, func() {
				fmt.Printf("initialised repository %s (region %s)\n", dir, info.Region)
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
