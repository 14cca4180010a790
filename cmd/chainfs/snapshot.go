package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/report"
	"github.com/urfave/cli/v2"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "create and list snapshots",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "snapshot a volume now",
				ArgsUsage: "VOLUME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "snapshot name (default: the time, 20060102-150405)"},
					&cli.StringFlag{Name: "description", Usage: "free text kept with the snapshot"},
					&cli.StringSliceFlag{Name: "tag", Usage: "KEY=VALUE kept with the snapshot (repeatable)"},
					&cli.BoolFlag{Name: "full", Usage: "re-read every file, even those that look unchanged"},
					&cli.BoolFlag{Name: "allow-empty", Usage: "snapshot the source even if it is empty where the previous snapshot was not, or on another file system than when the volume was added"},
					jsonFlag,
				},
				Action: snapshotCreate,
			},
			{
				Name:      "delete",
				Usage:     "delete a snapshot; blocks later snapshots link to pass to the next one",
				ArgsUsage: "VOLUME/SNAPSHOT",
				Description: "SNAPSHOT is the snapshot's name: 'latest' is refused, as a snapshot made meanwhile\n" +
					"(an automatic one) would change which snapshot it means.",
				Action: snapshotDelete,
			},
			{
				Name:      "diff",
				Usage:     "what differs between two snapshots: files added, removed, changed (and which byte ranges)",
				ArgsUsage: "VOLUME/SNAP_A VOLUME/SNAP_B",
				Flags:     []cli.Flag{jsonFlag},
				Action:    snapshotDiff,
			},
			{
				Name:      "list",
				Usage:     "list snapshots, of one volume or of all",
				ArgsUsage: "[VOLUME]",
				Flags:     []cli.Flag{jsonFlag},
				Action:    snapshotList,
			},
		},
	}
}

// createResult is what snapshot create reports.
type createResult struct {
	*store.Snapshot
	Warnings []string `json:"warnings"`
}

func snapshotCreate(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	volume := c.Args().First()
	so := store.SnapshotOptions{Name: c.String("name"), Description: c.String("description")}
	for _, kv := range c.StringSlice("tag") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usagef("--tag %q: want KEY=VALUE", kv)
		}
		if so.Tags == nil {
			so.Tags = map[string]string{}
		}
		so.Tags[k] = v
	}
	return withRepo(c, func(r *store.Repo) error {
		prog := new(source.Progress)
		bar := startProgress(c, "snapshot "+volume, func() (uint64, uint64) {
			return prog.ReadBytes.Load() + prog.CarriedBytes.Load(), prog.Expected.Load()
		})
		var skip []string
		if m, _ := c.App.Metadata[metaMount].(string); m != "" {
			skip = append(skip, m)
		}
		res, err := source.Snapshot(c.Context, r, volume, so, source.Options{
			Full: c.Bool("full"), AllowEmpty: c.Bool("allow-empty"), Progress: prog, Logger: logger(c), Skip: skip})
		bar.finish()
		if err != nil {
			return err
		}
		out := createResult{Snapshot: res.Snapshot, Warnings: []string{}}
		for _, w := range res.Warnings {
			out.Warnings = append(out.Warnings, w.String())
		}
		err = output(c, out, func() {
			s := res.Snapshot
			for _, w := range out.Warnings {
				fmt.Fprintln(c.App.ErrWriter, "warning:", w)
			}
			st := s.Stats
			fmt.Fprintf(c.App.Writer, "snapshot %s/%s created\n", s.Volume, s.Name)
			fmt.Fprintf(c.App.Writer, "  %s, %s, %s, %d other; %s\n", count(st.Files, "file"), count(st.Dirs, "directory"),
				count(st.Symlinks, "symlink"), st.Others, size(st.LogicalBytes))
			fmt.Fprintf(c.App.Writer, "  read %s; stored %s new, %s already in the repository; holds %s itself\n",
				size(st.ReadBytes), size(st.StoredBytes), size(st.LinkedBytes), size(st.AddedBytes))
			fmt.Fprintf(c.App.Writer, "  took %s\n", st.Duration.Round(time.Millisecond))
		})
		if err == nil && len(res.Warnings) > 0 {
			err = partialError{n: len(res.Warnings)}
		}
		return err
	})
}

func snapshotDelete(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	volume, name, _, err := parseSnapshotPath(c.Args().First(), false)
	if err != nil {
		return err
	}
	return withRepo(c, func(r *store.Repo) error {
		if err := r.DeleteSnapshot(c.Context, volume, name); err != nil {
			var refused *store.LatestRefusedError
			if errors.As(err, &refused) && refused.Latest != "" {
				return usagef("%w (chainfs snapshot delete %s/%s)", err, volume, refused.Latest)
			}
			return err
		}
		fmt.Fprintf(c.App.Writer, "deleted snapshot %s/%s\n", volume, name)
		return nil
	})
}

func snapshotDiff(c *cli.Context) error {
	if err := wantArgs(c, 2, 2); err != nil {
		return err
	}
	var ends [2][2]string
	for i := range ends {
		vol, snap, _, err := parseSnapshotPath(c.Args().Get(i), false)
		if err != nil {
			return err
		}
		ends[i] = [2]string{vol, snap}
	}
	return withRepo(c, func(r *store.Repo) error {
		var snaps [2]*store.Snapshot
		for i, e := range ends {
			s, err := r.Snapshot(c.Context, e[0], e[1])
			if err != nil {
				return err
			}
			snaps[i] = s
		}
		changes := []report.Change{}
		human := !c.Bool("json")
		err := report.Diff(c.Context, r, snaps[0], snaps[1], func(ch report.Change) error {
			if human {
				// Print as found: a diff of a large change streams.
				fmt.Fprintln(c.App.Writer, formatChange(&ch))
				return nil
			}
			changes = append(changes, ch)
			return nil
		})
		if err != nil || human {
			return err
		}
		return output(c, changes, func() {})
	})
}

// formatChange is one line of snapshot diff: + added, - removed, M content
// changed, m metadata only.
func formatChange(ch *report.Change) string {
	switch ch.Kind {
	case "added":
		return "+ " + ch.Path
	case "removed":
		return "- " + ch.Path
	}
	if !ch.Content {
		return "m " + ch.Path
	}
	line := "M " + ch.Path
	if len(ch.Ranges) > 0 {
		var n uint64
		for _, r := range ch.Ranges {
			n += r.Len
		}
		line += fmt.Sprintf("  (%d range%s, %s)", len(ch.Ranges), plural(len(ch.Ranges), "", "s"), size(n))
	}
	if ch.Meta {
		line += "  +metadata"
	}
	return line
}

func snapshotList(c *cli.Context) error {
	if err := wantArgs(c, 0, 1); err != nil {
		return err
	}
	return withRepo(c, func(r *store.Repo) error {
		var names []string
		if c.NArg() == 1 {
			names = []string{c.Args().First()}
		} else {
			vols, err := r.Volumes(c.Context)
			if err != nil {
				return err
			}
			for _, v := range vols {
				names = append(names, v.Name)
			}
		}
		u, err := report.Usage(c.Context, r, report.UsageOptions{})
		if err != nil {
			return err
		}
		// Sizes come from the chain as it is now (a deletion moves what a
		// snapshot holds), not from the figures of its commit.
		usage := map[[2]string]report.SnapshotUsage{}
		for _, s := range u.Snapshots {
			usage[[2]string{s.Volume, s.Snapshot}] = s
		}
		type listed struct {
			store.Snapshot
			Exclusive uint64 `json:"exclusive_bytes"`
		}
		all := []listed{}
		for _, n := range names {
			snaps, err := r.Snapshots(c.Context, n)
			if err != nil {
				return err
			}
			for _, s := range snaps {
				su := usage[[2]string{s.Volume, s.Name}]
				s.Stats.AddedBytes, s.Stats.AddedBlocks = su.Added, su.AddedBlocks
				all = append(all, listed{s, su.Exclusive})
			}
		}
		return output(c, all, func() {
			t := newTable(c, "VOLUME", "SNAPSHOT", "ID", "TIME", "KIND", "FILES", "SIZE", "ADDED", "EXCLUSIVE", "DESCRIPTION")
			for _, s := range all {
				t.row(s.Volume, s.Name, fmt.Sprint(s.Seq), formatTime(s.Time), s.Kind(), fmt.Sprint(s.Stats.Files),
					size(s.Stats.LogicalBytes), size(s.Stats.AddedBytes), size(s.Exclusive), dash(s.Description))
			}
			t.flush()
		})
	})
}

// parseSnapshotPath splits VOLUME/SNAPSHOT[/PATH].
func parseSnapshotPath(s string, allowPath bool) (volume, snap, path string, err error) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" || (!allowPath && len(parts) == 3 && parts[2] != "") {
		if allowPath {
			return "", "", "", usagef("%q: want VOLUME/SNAPSHOT[/PATH]", s)
		}
		return "", "", "", usagef("%q: want VOLUME/SNAPSHOT", s)
	}
	if len(parts) == 3 {
		path = parts[2]
	}
	return parts[0], parts[1], path, nil
}
