// Command chainfs keeps incremental snapshot chains of directory trees and
// restores them. See docs/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if path := os.Getenv("CHAINFS_CPUPROFILE"); path != "" {
		// For tuning: go tool pprof bin/chainfs $CHAINFS_CPUPROFILE
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	app := newApp()
	err := app.RunContext(ctx, flagsFirst(app, os.Args))
	stop()
	code := report(err)
	pprof.StopCPUProfile()
	os.Exit(code)
}

func newApp() *cli.App {
	app := &cli.App{
		Name:                 "chainfs",
		Usage:                "incremental snapshots of directory trees, browsable and restorable",
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "repository directory (default: /var/lib/chainfs for root, ~/.local/share/chainfs otherwise)", EnvVars: []string{"CHAINFS_REPO"}},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
		},
		Commands: []*cli.Command{
			initCommand(),
			volumeCommand(),
			snapshotCommand(),
			restoreCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main reports and exits
		OnUsageError:   onUsageError,
	}
	var setUsage func([]*cli.Command)
	setUsage = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.OnUsageError = onUsageError
			setUsage(c.Subcommands)
		}
	}
	setUsage(app.Commands)
	return app
}

// onUsageError marks flag errors as usage errors, for their exit status.
func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }
