package main

import (
	"context"
	"fmt"

	"github.com/chainfs/chainfs/store/report"
	"github.com/urfave/cli/v2"
)

func usageCommand() *cli.Command {
	return &cli.Command{
		Name:      "usage",
		Usage:     "what each snapshot shows, holds and would free, and the repository's totals",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag},
		Action: request(func(c *cli.Context) (operation, error) {
			return &usageOp{}, wantArgs(c, 0, 0)
		}),
	}
}

// usageOp reports what each snapshot shows, holds and would free.
type usageOp struct{}

func (usageOp) run(ctx context.Context, e *env) error {
	u, err := report.Usage(ctx, e.repo, report.UsageOptions{Shared: true})
	if err != nil {
		return err
	}
	return e.output(u, func() {
		t := newTable(e.stdout, "VOLUME", "SNAPSHOT", "LOGICAL", "ADDED", "EXCLUSIVE", "SHARED")
		for _, s := range u.Snapshots {
			t.row(s.Volume, s.Snapshot, size(s.Logical), size(s.Added), size(s.Exclusive), size(s.Shared))
		}
		for _, s := range u.Images {
			t.row("(image)", s.Snapshot, size(s.Logical), "-", size(s.Exclusive), size(s.Shared))
		}
		for _, s := range u.Trash {
			t.row(s.Volume, s.Snapshot+" (trash)", size(s.Logical), size(s.Added), size(s.Exclusive), size(s.Shared))
		}
		t.flush()
		dedup := 0.0
		if u.StoredBytes > 0 {
			dedup = float64(u.LogicalBytes) / float64(u.StoredBytes)
		}
		where := "on disk"
		if e.repo.Remote() {
			where = "of packs in the bucket"
		}
		fmt.Fprintf(e.stdout, "\n%s in %s referenced; %s logical in all snapshots (%.1f× less, by deduplication and compression); %s garbage for gc; %s %s\n",
			size(u.StoredBytes), count(u.Blocks, "block"), size(u.LogicalBytes), dedup, size(u.GarbageBytes), size(uint64(u.SpaceUsed)), where)
		if len(u.Trash) > 0 {
			fmt.Fprintf(e.stdout, "in the trash: %s, holding at least %s that no snapshot outside it holds (chainfs trash empty gives it to gc)\n", count(uint64(len(u.Trash)), "snapshot"), size(u.TrashBytes))
		}
	})
}
