package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store/report"
	"github.com/urfave/cli/v2"
)

func versionsCommand() *cli.Command {
	return &cli.Command{
		Name:      "versions",
		Usage:     "list the distinct versions of one file across a volume's snapshots",
		ArgsUsage: "VOLUME/PATH",
		Description: "Each version is listed once, named after the earliest snapshot that holds it, with what\n" +
			"changed from the version before (added, content, metadata, type). Restore one with\n" +
			"'chainfs restore VOLUME/SNAPSHOT/PATH TARGET'; the mount shows them under\n" +
			"volumes/VOLUME/.versions/PATH/.",
		Flags: []cli.Flag{jsonFlag},
		Action: request(func(c *cli.Context) (operation, error) {
			if err := wantArgs(c, 1, 1); err != nil {
				return nil, err
			}
			volume, path, ok := cutVolumePath(c.Args().First())
			if !ok {
				return nil, usagef("%q: want VOLUME/PATH", c.Args().First())
			}
			return &versionsOp{Volume: volume, Path: path}, nil
		}),
	}
}

// cutVolumePath splits VOLUME/PATH.
func cutVolumePath(s string) (volume, path string, ok bool) {
	volume, path, _ = strings.Cut(s, "/")
	return volume, path, volume != "" && strings.Trim(path, "/.") != ""
}

// versionsOp lists the versions of a file.
type versionsOp struct {
	Volume string `json:"volume"`
	Path   string `json:"path"`
}

func (o *versionsOp) run(ctx context.Context, e *env) error {
	snaps, err := e.repo.Snapshots(ctx, o.Volume)
	if err != nil {
		return err
	}
	vs, err := report.Versions(ctx, e.repo, snaps, o.Path)
	if err != nil {
		return fmt.Errorf("versions of %s/%s: %w", o.Volume, o.Path, err)
	}
	return e.output(vs, func() {
		t := newTable(e.stdout, "SNAPSHOT", "TIME", "SIZE", "MODIFIED", "CHANGE", "SNAPSHOTS")
		for _, v := range vs {
			t.row(v.Snapshot, formatTime(v.Time), size(v.Entry.Size), formatTime(time.Unix(v.Entry.Mtime.Sec, int64(v.Entry.Mtime.Nsec))), v.Change,
				fmt.Sprint(v.Snapshots))
		}
		t.flush()
	})
}
