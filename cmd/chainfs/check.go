package main

import (
	"fmt"
	"sync/atomic"

	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "verify the repository: every snapshot's trees and blocks, reference counts, packs",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-data", Usage: "also re-read every block and check it against its BLAKE3 hash"},
			jsonFlag,
		},
		Action: repoAction(0, 0, func(c *cli.Context, r *store.Repo) error {
			var done, total atomic.Uint64
			bar := startProgress(c, "check", func() (uint64, uint64) { return done.Load(), total.Load() })
			rep, err := r.Check(c.Context, store.CheckOptions{ReadData: c.Bool("read-data"), Progress: func(d, t int) {
				done.Store(uint64(d))
				total.Store(uint64(t))
			}})
			bar.finish()
			if err != nil {
				return err
			}
			err = output(c, rep, func() {
				for _, p := range rep.Problems {
					fmt.Fprintln(c.App.ErrWriter, "problem:", p)
				}
				what := "metadata"
				if c.Bool("read-data") {
					what = "metadata and " + size(rep.BytesRead) + " of data"
				}
				fmt.Fprintf(c.App.Writer, "checked %s: %s, %s, %s\n", what, count(rep.Snapshots, "snapshot"),
					count(rep.Trees, "directory"), count(rep.Blocks, "block"))
			})
			if err == nil && len(rep.Problems) > 0 {
				err = fmt.Errorf("%d problem%s found (listed above)", len(rep.Problems), plural(len(rep.Problems), "", "s"))
			}
			return err
		}),
	}
}
