package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"

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

// gcResult is what gc reports: the snapshots whose time in the trash was
// up, deleted for good first, and what is in the trash still.
type gcResult struct {
	*store.GCStats
	Emptied []string `json:"emptied_from_trash"`
	InTrash int      `json:"in_trash"`
}

func (gcOp) run(ctx context.Context, e *env) error {
	res := gcResult{Emptied: []string{}}
	gone, err := e.repo.EmptyTrash(ctx, "", "", true, time.Now())
	for _, s := range gone {
		res.Emptied = append(res.Emptied, s.Volume+"/"+s.Name)
	}
	if err != nil {
		e.log.Warn("gc: empty what expired from the trash", "err", err)
	}
	st, err := e.repo.GC(ctx)
	if err != nil {
		return err
	}
	res.GCStats = st
	if trash, err := e.repo.AllTrash(ctx); err == nil {
		res.InTrash = len(trash)
	}
	return e.output(res, func() {
		if len(res.Emptied) > 0 {
			fmt.Fprintf(e.stdout, "deleted for good %s whose time in the trash was up: %s\n", count(uint64(len(res.Emptied)), "snapshot"), strings.Join(res.Emptied, ", "))
		}
		fmt.Fprintf(e.stdout, "freed %s in %s; removed %d packs, rewrote %d (%s moved); %d trees freed\n",
			size(st.BytesFreed), count(st.BlocksFreed, "block"), st.PacksRemoved, st.PacksRepacked, size(st.BytesMoved), st.TreesFreed)
		if st.PacksKept > 0 {
			fmt.Fprintf(e.stdout, "left %d packs in place: they hold damaged blocks (chainfs check --read-data names them)\n", st.PacksKept)
		}
		fmt.Fprintf(e.stdout, "repository: %s before, %s after\n", size(uint64(st.SizeBefore)), size(uint64(st.SizeAfter)))
		if res.InTrash > 0 {
			fmt.Fprintf(e.stdout, "%s in the trash keep their data (chainfs trash list; chainfs trash empty frees it)\n", count(uint64(res.InTrash), "snapshot"))
		}
	})
}
