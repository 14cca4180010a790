package main

import (
	"fmt"

	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:      "gc",
		Usage:     "give back the space of deleted snapshots' data (waits for running snapshots)",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag},
		Action: repoAction(0, 0, func(c *cli.Context, r *store.Repo) error {
			st, err := r.GC(c.Context)
			if err != nil {
				return err
			}
			return output(c, st, func() {
				fmt.Fprintf(c.App.Writer, "freed %s in %s; removed %d packs, rewrote %d (%s moved); %d trees freed\n",
					size(st.BytesFreed), count(st.BlocksFreed, "block"), st.PacksRemoved, st.PacksRepacked, size(st.BytesMoved), st.TreesFreed)
				if st.PacksKept > 0 {
					fmt.Fprintf(c.App.Writer, "left %d packs in place: they hold damaged blocks (chainfs check --read-data names them)\n", st.PacksKept)
				}
				fmt.Fprintf(c.App.Writer, "repository: %s before, %s after\n", size(uint64(st.SizeBefore)), size(uint64(st.SizeAfter)))
			})
		}),
	}
}
