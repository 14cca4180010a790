package main

import (
	"fmt"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/report"
	"github.com/urfave/cli/v2"
)

func usageCommand() *cli.Command {
	return &cli.Command{
		Name:      "usage",
		Usage:     "what each snapshot shows, holds and would free, and the repository's totals",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag},
		Action: repoAction(0, 0, func(c *cli.Context, r *store.Repo) error {
			u, err := report.Usage(c.Context, r, report.UsageOptions{Shared: true})
			if err != nil {
				return err
			}
			return output(c, u, func() {
				t := newTable(c, "VOLUME", "SNAPSHOT", "LOGICAL", "ADDED", "EXCLUSIVE", "SHARED")
				for _, s := range u.Snapshots {
					t.row(s.Volume, s.Snapshot, size(s.Logical), size(s.Added), size(s.Exclusive), size(s.Shared))
				}
				for _, s := range u.Images {
					t.row("(image)", s.Snapshot, size(s.Logical), "-", size(s.Exclusive), size(s.Shared))
				}
				t.flush()
				dedup := 0.0
				if u.StoredBytes > 0 {
					dedup = float64(u.LogicalBytes) / float64(u.StoredBytes)
				}
				fmt.Fprintf(c.App.Writer, "\n%s in %s referenced; %s logical in all snapshots (deduplication %.1f×); %s garbage for gc; %s on disk\n",
					size(u.StoredBytes), count(u.Blocks, "block"), size(u.LogicalBytes), dedup, size(u.GarbageBytes), size(uint64(u.SpaceUsed)))
			})
		}),
	}
}
