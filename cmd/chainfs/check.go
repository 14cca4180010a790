package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/check"
	"github.com/urfave/cli/v2"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "verify the repository: every snapshot's trees and blocks, reference counts, packs",
		ArgsUsage: " ",
		Description: "With --repair, reference counts are recounted from the chain runs, every damaged or\n" +
			"missing block whose bytes a volume's source still holds at the same place is stored\n" +
			"again, snapshots and images whose top tree is lost are removed, and what stays lost is\n" +
			"listed file by file (the status is then 1).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-data", Usage: "also re-read every block and check it against its BLAKE3 hash"},
			&cli.BoolFlag{Name: "repair", Usage: "mend what can be mended (implies --read-data) and list what is lost"},
			jsonFlag,
		},
		Action: withMetadataAdvice(request(func(c *cli.Context) (operation, error) {
			return &checkOp{ReadData: c.Bool("read-data"), Repair: c.Bool("repair")}, wantArgs(c, 0, 0)
		})),
	}
}

// checkOp verifies the repository, and with Repair mends what it can.
type checkOp struct {
	ReadData bool `json:"read_data,omitempty"`
	Repair   bool `json:"repair,omitempty"`
}

func (o *checkOp) run(ctx context.Context, e *env) error {
	if o.Repair {
		return repair(ctx, e)
	}
	var done, total atomic.Uint64
	bar := e.progress("check", func() (uint64, uint64) { return done.Load(), total.Load() })
	rep, err := check.Check(ctx, e.repo, check.Options{ReadData: o.ReadData, Progress: func(d, t int) {
		done.Store(uint64(d))
		total.Store(uint64(t))
	}})
	bar.finish()
	if err != nil {
		return err
	}
	err = e.output(rep, func() {
		for _, p := range rep.Problems {
			fmt.Fprintln(e.stderr, "problem:", p)
		}
		what := "metadata"
		if o.ReadData {
			what = "metadata and " + size(rep.BytesRead) + " of data"
		}
		fmt.Fprintf(e.stdout, "checked %s: %s, %s, %s, %s\n", what, count(rep.Snapshots, "snapshot"),
			count(rep.Images, "image"), count(rep.Trees, "directory"), count(rep.Blocks, "block"))
	})
	if err == nil && len(rep.Problems) > 0 {
		err = fmt.Errorf("%d problem%s found (listed above)", len(rep.Problems), plural(len(rep.Problems), "", "s"))
	}
	return err
}

// withMetadataAdvice adds to a damaged-metadata error (the repository
// does not even open) what check --repair can and cannot do about it.
func withMetadataAdvice(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		err := action(c)
		if errors.Is(err, store.ErrDamagedMetadata) {
			return adviceError{err: err, advice: check.MetadataRepairNote + "."}
		}
		return err
	}
}

func repair(ctx context.Context, e *env) error {
	rep, err := check.Repair(ctx, e.repo, source.Blocks{})
	if err != nil {
		return err
	}
	err = e.output(rep, func() {
		w := e.stdout
		for _, h := range rep.Healed {
			fmt.Fprintf(w, "healed: block %s, read again from %s\n", h.Block[:12], h.From)
		}
		for _, d := range rep.Dropped {
			fmt.Fprintf(w, "dropped: %s (its top directory is lost)\n", d)
		}
		for _, p := range rep.Lost {
			fmt.Fprintln(e.stderr, "lost:", p)
		}
		fmt.Fprintf(w, "repaired: %s recounted, %s healed, %s dropped; %s\n", count(rep.RefsFixed, "reference count"),
			count(uint64(len(rep.Healed)), "block"), count(uint64(len(rep.Dropped)), "snapshot"),
			map[bool]string{true: "nothing else is lost", false: fmt.Sprint(len(rep.Lost), " problems remain (listed above)")}[len(rep.Lost) == 0])
	})
	if err == nil && len(rep.Lost) > 0 {
		err = fmt.Errorf("%d problem%s remain after repair (listed above)", len(rep.Lost), plural(len(rep.Lost), "", "s"))
	}
	return err
}
