// Command chainfs keeps incremental snapshot chains of directory trees and
// restores them. See docs/cli.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if path := os.Getenv("CHAINFS_CPUPROFILE"); path != "" {
		// For tuning: go tool pprof bin/chainfs $CHAINFS_CPUPROFILE
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
		}
	}
	if path := os.Getenv("CHAINFS_MEMPROFILE"); path != "" {
		// For tuning: the live heap at each SIGUSR1 (a daemon's, while it
		// serves), and as the command ends.
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				writeHeapProfile(path)
			}
		}()
	}
	var code int
	if slices.Contains(mountHelperNames, filepath.Base(os.Args[0])) {
		code = mountHelper(ctx, os.Args[1:], os.Stderr)
	} else {
		code = run(ctx, os.Args)
	}
	stop()
	pprof.StopCPUProfile()
	if path := os.Getenv("CHAINFS_MEMPROFILE"); path != "" {
		writeHeapProfile(path)
	}
	os.Exit(code)
}

// writeHeapProfile writes what is live on the heap, after a collection,
// for go tool pprof -sample_index=inuse_space.
func writeHeapProfile(path string) {
	runtime.GC()
	if f, err := os.Create(path); err == nil {
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
}

// run runs a command line. A command that is an operation on the
// repository runs in the daemon serving it, if one does (submit).
func run(ctx context.Context, args []string) int {
	return runIn(ctx, args, os.Stdout, os.Stderr)
}

// runIn runs a command line with the given output.
func runIn(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app, ss := newCLI()
	app.Writer, app.ErrWriter = stdout, stderr
	if len(args) > 0 && args[len(args)-1] != completionFlag {
		// A completion request is answered as typed so far.
		args = flagsFirst(app, args)
	}
	err := app.RunContext(ctx, args)
	if err == nil && ss.unknown != nil {
		err = ss.unknown
	}
	return reportError(requiredFlagIsUsage(err), stderr)
}

// newApp is the command line's definition.
func newApp() *cli.App {
	app, _ := newCLI()
	return app
}

// newCLI is the command line's definition and the session a run of it
// fills.
func newCLI() (*cli.App, *session) {
	ss := &session{}
	app := &cli.App{
		Name:  "chainfs",
		Usage: "incremental snapshots of directory trees, browsable and restorable",
		Description: "chainfs takes incremental snapshots of directory trees and disk images: the first is full,\n" +
			"each later one stores only the blocks that changed. chainfs serve mounts every snapshot and\n" +
			"image read-only; writing to .control/ in the mount makes a snapshot or an image.\n\n" +
			"Files: /etc/chainfs/config.toml (root's configuration file; ~/.config/chainfs/config.toml for\n" +
			"other users), /var/lib/chainfs (root's repository; ~/.local/share/chainfs for other users),\n" +
			"REPOSITORY/daemon.sock (the daemon's socket), REPOSITORY/daemon.log (the log of a daemon\n" +
			"that mount -t fuse.chainfs started).\n\n" +
			"Environment: CHAINFS_REPO, CHAINFS_CONFIG and CHAINFS_CATALOG stand for --repo, --config and\n" +
			"--catalog. Exit status: 0 done, 1 failed, 2 wrong usage or configuration, 3 done with entries\n" +
			"left out (each named), 4 busy.",
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Version:              versionString(),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration file (default: /etc/chainfs/config.toml for root, ~/.config/chainfs/config.toml otherwise)", EnvVars: []string{"CHAINFS_CONFIG"}},
			&cli.StringFlag{Name: "repo", Usage: "repository: a directory (default: /var/lib/chainfs for root, ~/.local/share/chainfs otherwise) or s3://BUCKET[/PREFIX]", EnvVars: []string{"CHAINFS_REPO"}},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "catalog", Usage: "directory of native image files served as public images", EnvVars: []string{"CHAINFS_CATALOG"}},
			&cli.StringFlag{Name: "cache", Usage: "where this host keeps its replicas of repositories in buckets (default: /var/cache/chainfs for root, ~/.cache/chainfs otherwise)", EnvVars: []string{"CHAINFS_CACHE"}},
			&cli.StringFlag{Name: "cache-size", Usage: "the most of a bucket's packs this host keeps on its disk, per repository, to read them again without a request (0: none)", Value: "4GiB"},
			&cli.StringFlag{Name: "s3-endpoint", Usage: "object store of s3:// repositories and imports, http(s)://HOST[:PORT] (default: AWS S3)", EnvVars: []string{"AWS_ENDPOINT_URL"}},
			&cli.StringFlag{Name: "s3-region", Usage: "region of the object store's buckets", EnvVars: []string{"AWS_REGION"}},
			&cli.StringFlag{Name: "s3-profile", Usage: "profile of ~/.aws/credentials to use when the environment holds no keys", EnvVars: []string{"AWS_PROFILE"}},
			&cli.StringFlag{Name: "s3-timeout", Usage: "bound of each request's wait for a connection and an answer (default 1m)", EnvVars: []string{"CHAINFS_S3_TIMEOUT"}},
			passwordFlags[0], passwordFlags[1],
		},
		Commands: []*cli.Command{
			initCommand(),
			volumeCommand(),
			snapshotCommand(),
			trashCommand(),
			keyCommand(),
			compressionCommand(),
			versionsCommand(),
			restoreCommand(),
			imageCommand(),
			marketCommand(),
			gcCommand(),
			usageCommand(),
			chainCommand(),
			policyCommand(),
			checkCommand(),
			serveCommand(ss),
			umountCommand(),
			configCommand(ss),
			versionCommand(),
			doctorCommand(ss),
			completionCommand(),
			manCommand(),
		},
		ExitErrHandler:  func(*cli.Context, error) {}, // main reports and exits
		OnUsageError:    onUsageError,
		Action:          groupAction(true),
		CommandNotFound: ss.commandNotFound,
		Before:          ss.applyConfig(""),
	}
	for _, c := range app.Commands {
		for _, s := range settings {
			if s.Command == c.Name {
				c.Before = ss.applyConfig(c.Name)
				break
			}
		}
	}
	var setUsage func([]*cli.Command)
	setUsage = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.OnUsageError = onUsageError
			c.HideHelpCommand = true
			if len(c.Subcommands) > 0 && c.Action == nil {
				c.Action = groupAction(false)
			}
			setUsage(c.Subcommands)
		}
	}
	setUsage(app.Commands)
	return app, ss
}

// groupAction is the action of the app, and of each command made of
// subcommands, when the word after it names none of them. Nothing there
// shows the help; "help [COMMAND...]" shows the named command's help; any
// other word is an unknown command, a usage error naming the nearest.
// urfave/cli would take the word for a help topic and fail with "No help
// topic for 'snapshto'" and status 1.
func groupAction(root bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		args := c.Args().Slice()
		if len(args) == 0 {
			if root {
				return cli.ShowAppHelp(c)
			}
			return cli.ShowSubcommandHelp(c)
		}
		path := strings.Fields(commandName(c))
		words, cmds := args[:1], c.Command.Subcommands
		if args[0] == "help" {
			words = args[1:]
		}
		// The command path the words name, each word among the previous
		// one's subcommands.
		for _, w := range words {
			cmd := findCommand(cmds, w)
			if cmd == nil {
				return unknownCommand(path, w, cmds)
			}
			path, cmds = append(path, w), cmd.Subcommands
		}
		// "help PATH": the help PATH --help shows.
		return c.App.RunContext(c.Context, append(append([]string{c.App.Name}, path...), "--help"))
	}
}

// unknownCommand is the usage error for word, typed after the command
// path where cmds are the commands there, naming the nearest of them.
func unknownCommand(path []string, word string, cmds []*cli.Command) error {
	msg := fmt.Sprintf("unknown command %q", strings.Join(append(slices.Clip(path), word), " "))
	if near := nearestCommand(cmds, word); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", strings.Join(append(slices.Clip(path), near), " "))
	}
	return usageError{errors.New(msg)}
}

// commandNotFound is where urfave/cli's --help goes when the first
// argument is not a subcommand: after a command made of subcommands
// (`chainfs snapshot lst --help`) it is an unknown command, kept for
// runIn to report (the hook returns nothing); after a command that takes
// arguments (`chainfs restore v/s /tmp/x --help`) it is that command's
// help.
func (ss *session) commandNotFound(c *cli.Context, word string) {
	if len(c.Command.Subcommands) == 0 {
		cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
		return
	}
	ss.unknown = unknownCommand(strings.Fields(commandName(c)), word, c.Command.Subcommands)
}

// onUsageError marks flag errors as usage errors, for their exit status.
func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }
