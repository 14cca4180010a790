package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:      "gc",
		Usage:     "give back the space of deleted snapshots' data (waits for running snapshots)",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag},
		Action: request(func(c *cli.Context) (operation, error) {
			return &gcOp{}, wantArgs(c, 0, 0)
		}),
	}
}

// gcOp gives back the space of deleted snapshots' data.
type gcOp struct{}

func (gcOp) run(ctx context.Context, e *env) error {
	st, err := e.repo.GC(ctx)
	if err != nil {
		return err
	}
	return e.output(st, func() {
		fmt.Fprintf(e.stdout, "freed %s in %s; removed %d packs, rewrote %d (%s moved); %d trees freed\n",
			size(st.BytesFreed), count(st.BlocksFreed, "block"), st.PacksRemoved, st.PacksRepacked, size(st.BytesMoved), st.TreesFreed)
		if st.PacksKept > 0 {
			fmt.Fprintf(e.stdout, "left %d packs in place: they hold damaged blocks (chainfs check --read-data names them)\n", st.PacksKept)
		}
		fmt.Fprintf(e.stdout, "repository: %s before, %s after\n", size(uint64(st.SizeBefore)), size(uint64(st.SizeAfter)))
	})
}
