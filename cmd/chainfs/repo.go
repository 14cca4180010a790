package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	"github.com/chainfs/chainfs/cmd/chainfs/journal"
	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// repoDir is --repo, else $CHAINFS_REPO (urfave reads it), else the
// default for the user; absolute, so that messages name it wherever they
// are read.
func repoDir(c *cli.Context) string {
	d := c.String("repo")
	if d == "" {
		return defaultRepoDir()
	}
	if abs, err := absPath(c, d); err == nil {
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

// Keys of app.Metadata.
const (
	metaRepo    = "repo"    // *store.Repo: the daemon's open repository, or nil
	metaCwd     = "cwd"     // string: the calling CLI's directory, or ""
	metaCaller  = "caller"  // *daemon.Caller: who sent the command to the daemon, or nil
	metaCatalog = "catalog" // *imagefile.Catalog: the daemon's catalog, or nil
	// error: an unknown command met by --help, which urfave/cli's hook
	// cannot return (see commandNotFound)
	metaUnknownCommand = "unknownCommand"
)

// caller is who runs the command: the CLI's user and its standard input
// and output, whether the command runs here or in the daemon.
func caller(c *cli.Context) daemon.Caller {
	if cl, _ := c.App.Metadata[metaCaller].(*daemon.Caller); cl != nil {
		return *cl
	}
	return daemon.Caller{UID: uint32(os.Geteuid()), Stdin: os.Stdin, Stdout: os.Stdout, StderrTTY: term.IsTerminal(int(os.Stderr.Fd()))}
}

// logger is the command's slog logger at the --log-level: to the journal
// when systemd runs chainfs with its standard error there, else as text
// to the command's standard error (the calling CLI's, when the daemon
// runs the command).
func logger(c *cli.Context) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		level = slog.LevelWarn
	}
	if c.App.ErrWriter == os.Stderr && journal.Wanted() {
		return slog.New(journal.NewHandler(level))
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
}

// absPath resolves a path argument against the caller's directory (the
// CLI's, when the daemon runs the command).
func absPath(c *cli.Context, p string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	if cwd, _ := c.App.Metadata[metaCwd].(string); cwd != "" {
		return filepath.Join(cwd, p), nil
	}
	return filepath.Abs(p)
}

// localCommands run in the calling process, never in the daemon: they
// serve, unmount, make a repository, or tell about this process and this
// machine.
var localCommands = map[string]bool{"serve": true, "umount": true, "init": true, "help": true, "h": true,
	"version": true, "doctor": true, "config": true, "completion": true, "man": true}

// leadingGlobals reads the global flags before the command, before the
// command line is parsed: their values by name, and the index of the
// command (len(args) if none). It stops at -h, --help and the like.
func leadingGlobals(args []string) (map[string]string, int) {
	vals := map[string]string{}
	i := eachLeadingGlobal(args, func(name, val string, _ int, _ bool) { vals[name] = val })
	return vals, i
}

// repoDirFromArgs finds the repository a command line names, before the
// command line is parsed: --repo, else $CHAINFS_REPO, else the
// configuration file's, else the default.
func repoDirFromArgs(args []string) string {
	globals, _ := leadingGlobals(args)
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

// forwardable reports whether a command line may run in the daemon: all
// but the local commands, help, and completion requests.
func forwardable(args []string) bool {
	globals, i := leadingGlobals(args)
	if i == len(args) || localCommands[args[i]] {
		return false
	}
	for name := range globals {
		if name == "h" || name == "help" || name == "v" || name == "version" {
			return false
		}
	}
	for _, a := range args[i:] {
		if a == "--help" || a == "-h" || a == "--generate-bash-completion" {
			return false
		}
	}
	// A configuration file that does not load is reported here, not by
	// the daemon, which has its own.
	if _, err := loadConfig(configPathFromArgs(globals)); err != nil {
		return false
	}
	return true
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

// withRepo runs fn on the repository: the daemon's, when the daemon runs
// the command, else one opened here and closed after.
func withRepo(c *cli.Context, fn func(*store.Repo) error) error {
	if r, _ := c.App.Metadata[metaRepo].(*store.Repo); r != nil {
		if !sameDir(repoDir(c), r.Info().Dir) {
			return fmt.Errorf("the daemon that got this command serves %s, not %s", r.Info().Dir, repoDir(c))
		}
		return fn(r)
	}
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
			info, err := store.Init(store.Options{Dir: dir, Region: c.String("region")})
			if err != nil {
				return err
			}
			return output(c, struct {
				Dir string `json:"dir"`
				store.Info
			}{dir, *info}, func() {
				fmt.Fprintf(c.App.Writer, "initialised repository %s (region %s)\n", dir, info.Region)
			})
		},
	}
}

// repoAction makes a command's action: check the number of arguments,
// then run fn on the repository (the daemon's or one opened here).
func repoAction(min, max int, fn func(c *cli.Context, r *store.Repo) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := wantArgs(c, min, max); err != nil {
			return err
		}
		return withRepo(c, func(r *store.Repo) error { return fn(c, r) })
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
