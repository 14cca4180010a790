package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/policy"
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
				Action: request(parseSnapshotCreate),
			},
			{
				Name:      "delete",
				Usage:     "delete a snapshot: into the trash, then for good; blocks later snapshots link to pass to the next one",
				ArgsUsage: "VOLUME/SNAPSHOT",
				Description: "SNAPSHOT is the snapshot's name: 'latest' is refused, as a snapshot made meanwhile\n" +
					"(an automatic one) would change which snapshot it means. The snapshot goes to the trash\n" +
					"for the repository's trash days ('chainfs trash'), or is deleted for good at once when\n" +
					"the trash keeps none.",
				Flags:  []cli.Flag{jsonFlag},
				Action: request(parseSnapshotDelete),
			},
			{
				Name:      "diff",
				Usage:     "what differs between two snapshots: files added, removed, changed (and which byte ranges)",
				ArgsUsage: "VOLUME/SNAP_A VOLUME/SNAP_B",
				Flags:     []cli.Flag{jsonFlag},
				Action:    request(parseSnapshotDiff),
			},
			{
				Name:      "hold",
				Usage:     "keep a snapshot from deletion, by hand or by retention, until it is released",
				ArgsUsage: "VOLUME/SNAPSHOT",
				Description: "A held snapshot is not deleted: 'snapshot delete' and 'volume rm' are refused with the\n" +
					"reason, and retention passes it over. Holding it again replaces the hold.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why it is kept: one line, shown by 'snapshot list' and in refusals"},
					jsonFlag,
				},
				Action: request(parseSnapshotHold),
			},
			{
				Name:      "release",
				Usage:     "remove a snapshot's hold",
				ArgsUsage: "VOLUME/SNAPSHOT",
				Flags:     []cli.Flag{jsonFlag},
				Action:    request(parseSnapshotRelease),
			},
			{
				Name:      "list",
				Usage:     "list snapshots, of one volume or of all",
				ArgsUsage: "[VOLUME]",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "why", Usage: "say why each snapshot is kept, or when retention deletes it"},
					jsonFlag,
				},
				Action: request(parseSnapshotList),
			},
		},
	}
}

// createResult is what snapshot create reports.
type createResult struct {
	*store.Snapshot
	Warnings []string `json:"warnings"`
}

// snapshotCreate snapshots a volume now.
type snapshotCreate struct {
	Volume      string            `json:"volume"`
	Name        string            `json:"name,omitempty"` // "": the time
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Full re-reads every file; AllowEmpty takes a source that looks
	// lost (source.Options).
	Full       bool `json:"full,omitempty"`
	AllowEmpty bool `json:"allow_empty,omitempty"`
}

func parseSnapshotCreate(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	o := &snapshotCreate{Volume: c.Args().First(), Name: c.String("name"), Description: c.String("description"),
		Full: c.Bool("full"), AllowEmpty: c.Bool("allow-empty")}
	for _, kv := range c.StringSlice("tag") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--tag %q: want KEY=VALUE", kv)
		}
		if o.Tags == nil {
			o.Tags = map[string]string{}
		}
		o.Tags[k] = v
	}
	return o, nil
}

func (o *snapshotCreate) run(ctx context.Context, e *env) error {
	prog := new(source.Progress)
	bar := e.progress("snapshot "+o.Volume, func() (uint64, uint64) {
		return prog.ReadBytes.Load() + prog.CarriedBytes.Load(), prog.Expected.Load()
	})
	var skip []string
	if e.mount != "" {
		skip = append(skip, e.mount)
	}
	so := store.SnapshotOptions{Name: o.Name, Description: o.Description, Tags: o.Tags}
	res, err := source.Snapshot(ctx, e.repo, o.Volume, so, source.Options{
		Full: o.Full, AllowEmpty: o.AllowEmpty, Progress: prog, Logger: e.log, Skip: skip})
	bar.finish()
	if err != nil {
		return err
	}
	out := createResult{Snapshot: res.Snapshot, Warnings: []string{}}
	for _, w := range res.Warnings {
		out.Warnings = append(out.Warnings, w.String())
	}
	err = e.output(out, func() {
		s := res.Snapshot
		for _, w := range out.Warnings {
			fmt.Fprintln(e.stderr, "warning:", w)
		}
		st := s.Stats
		fmt.Fprintf(e.stdout, "snapshot %s/%s created\n", s.Volume, s.Name)
		fmt.Fprintf(e.stdout, "  %s, %s, %s, %d other; %s\n", count(st.Files, "file"), count(st.Dirs, "directory"),
			count(st.Symlinks, "symlink"), st.Others, size(st.LogicalBytes))
		fmt.Fprintf(e.stdout, "  read %s; stored %s new, %s already in the repository; holds %s itself\n",
			size(st.ReadBytes), size(st.StoredBytes), size(st.LinkedBytes), size(st.AddedBytes))
		fmt.Fprintf(e.stdout, "  took %s\n", st.Duration.Round(time.Millisecond))
	})
	if err == nil && len(res.Warnings) > 0 {
		err = partialError{n: len(res.Warnings)}
	}
	return err
}

// snapshotRef names a snapshot of a volume.
type snapshotRef struct {
	Volume   string `json:"volume"`
	Snapshot string `json:"snapshot"`
}

func (s snapshotRef) String() string { return s.Volume + "/" + s.Snapshot }

// check refuses a reference that names no snapshot, as the command
// line's VOLUME/SNAPSHOT does.
func (s snapshotRef) check() error {
	if s.Volume == "" || s.Snapshot == "" {
		return usagef("%q: want VOLUME/SNAPSHOT", s.String())
	}
	return nil
}

// parseSnapshotRef reads VOLUME/SNAPSHOT.
func parseSnapshotRef(arg string) (snapshotRef, error) {
	volume, snap, _, err := parseSnapshotPath(arg, false)
	return snapshotRef{volume, snap}, err
}

// snapshotDelete deletes a snapshot.
type snapshotDelete struct {
	snapshotRef
}

func parseSnapshotDelete(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	ref, err := parseSnapshotRef(c.Args().First())
	return &snapshotDelete{ref}, err
}

func (o *snapshotDelete) run(ctx context.Context, e *env) error {
	if err := o.check(); err != nil {
		return err
	}
	s, err := e.repo.DiscardSnapshot(ctx, o.Volume, o.Snapshot, store.Trashed{UID: e.caller.UID, By: "manual"})
	if err != nil {
		var refused *store.LatestRefusedError
		if errors.As(err, &refused) && refused.Latest != "" {
			return usagef("%w (chainfs snapshot delete %s/%s)", err, o.Volume, refused.Latest)
		}
		return err
	}
	return e.output(s, func() {
		if s.Trashed == nil {
			fmt.Fprintf(e.stdout, "deleted snapshot %s for good\n", o.snapshotRef)
			return
		}
		until := ""
		if days, err := e.repo.TrashDays(ctx); err == nil {
			until = " until " + s.Expires(days).Local().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(e.stdout, "moved snapshot %s to the trash%s: chainfs trash restore %s brings it back, chainfs trash empty %s frees its space now\n",
			o.snapshotRef, until, o.snapshotRef, o.snapshotRef)
	})
}

// snapshotHold places a hold on a snapshot.
type snapshotHold struct {
	snapshotRef
	Reason string `json:"reason"`
}

// snapshotRelease removes a snapshot's hold.
type snapshotRelease struct {
	snapshotRef
}

func parseSnapshotHold(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	ref, err := parseSnapshotRef(c.Args().First())
	if err == nil && c.String("reason") == "" {
		err = usagef("--reason: say why the snapshot is kept")
	}
	return &snapshotHold{ref, c.String("reason")}, err
}

func parseSnapshotRelease(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	ref, err := parseSnapshotRef(c.Args().First())
	return &snapshotRelease{ref}, err
}

func (o *snapshotHold) run(ctx context.Context, e *env) error {
	if err := o.check(); err != nil {
		return err
	}
	s, err := e.repo.HoldSnapshot(ctx, o.Volume, o.Snapshot, o.Reason, e.caller.UID)
	if err != nil {
		return err
	}
	return e.output(s, func() { fmt.Fprintf(e.stdout, "snapshot %s/%s held: %s\n", s.Volume, s.Name, s.Hold.Reason) })
}

func (o *snapshotRelease) run(ctx context.Context, e *env) error {
	if err := o.check(); err != nil {
		return err
	}
	s, err := e.repo.ReleaseSnapshot(ctx, o.Volume, o.Snapshot)
	if err != nil {
		return err
	}
	return e.output(s, func() { fmt.Fprintf(e.stdout, "snapshot %s/%s released\n", s.Volume, s.Name) })
}

// snapshotDiff says what differs between two snapshots.
type snapshotDiff struct {
	From snapshotRef `json:"from"`
	To   snapshotRef `json:"to"`
}

func parseSnapshotDiff(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 2, 2); err != nil {
		return nil, err
	}
	from, err := parseSnapshotRef(c.Args().Get(0))
	if err != nil {
		return nil, err
	}
	to, err := parseSnapshotRef(c.Args().Get(1))
	return &snapshotDiff{From: from, To: to}, err
}

func (o *snapshotDiff) run(ctx context.Context, e *env) error {
	var snaps [2]*store.Snapshot
	for i, ref := range []snapshotRef{o.From, o.To} {
		if err := ref.check(); err != nil {
			return err
		}
		s, err := e.repo.Snapshot(ctx, ref.Volume, ref.Snapshot)
		if err != nil {
			return err
		}
		snaps[i] = s
	}
	changes := []report.Change{}
	err := report.Diff(ctx, e.repo, snaps[0], snaps[1], func(ch report.Change) error {
		if !e.json {
			// Print as found: a diff of a large change streams.
			fmt.Fprintln(e.stdout, formatChange(&ch))
			return nil
		}
		changes = append(changes, ch)
		return nil
	})
	if err != nil || !e.json {
		return err
	}
	return e.output(changes, func() {})
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

// snapshotList lists the snapshots of a volume, or of every one when
// Volume is "".
type snapshotList struct {
	Volume string `json:"volume,omitempty"`
	// Why adds what retention makes of each snapshot.
	Why bool `json:"why,omitempty"`
}

func parseSnapshotList(c *cli.Context) (operation, error) {
	return &snapshotList{Volume: c.Args().First(), Why: c.Bool("why")}, wantArgs(c, 0, 1)
}

func (o *snapshotList) run(ctx context.Context, e *env) error {
	names := []string{o.Volume}
	if o.Volume == "" {
		vols, err := e.repo.Volumes(ctx)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, v := range vols {
			names = append(names, v.Name)
		}
	}
	u, err := report.Usage(ctx, e.repo, report.UsageOptions{})
	if err != nil {
		return err
	}
	// Sizes come from the chain as it is now (a deletion moves what a
	// snapshot holds), not from the figures of its commit.
	usage := map[snapshotRef]report.SnapshotUsage{}
	for _, s := range u.Snapshots {
		usage[snapshotRef{s.Volume, s.Snapshot}] = s
	}
	type listed struct {
		store.Snapshot
		Exclusive uint64          `json:"exclusive_bytes"`
		Retention *policy.Verdict `json:"retention,omitempty"`
	}
	all := []listed{}
	now := time.Now()
	for _, n := range names {
		snaps, err := e.repo.Snapshots(ctx, n)
		if err != nil {
			return err
		}
		var verdicts []policy.Verdict
		if o.Why {
			v, err := e.repo.Volume(ctx, n)
			if err != nil {
				return err
			}
			if verdicts, err = policy.ExplainVolume(ctx, e.repo, v, snaps, now); err != nil {
				return err
			}
		}
		for i, s := range snaps {
			su := usage[snapshotRef{s.Volume, s.Name}]
			s.Stats.AddedBytes, s.Stats.AddedBlocks = su.Added, su.AddedBlocks
			l := listed{Snapshot: s, Exclusive: su.Exclusive}
			if verdicts != nil {
				l.Retention = &verdicts[i]
			}
			all = append(all, l)
		}
	}
	return e.output(all, func() {
		cols := []string{"VOLUME", "SNAPSHOT", "ID", "TIME", "KIND", "FILES", "SIZE", "ADDED", "EXCLUSIVE", "HELD", "DESCRIPTION"}
		if o.Why {
			cols = append(cols, "WHY")
		}
		t := newTable(e.stdout, cols...)
		for _, s := range all {
			held := ""
			if s.Hold != nil {
				held = s.Hold.Reason
			}
			row := []string{s.Volume, s.Name, fmt.Sprint(s.Seq), formatTime(s.Time), s.Kind(), fmt.Sprint(s.Stats.Files),
				size(s.Stats.LogicalBytes), size(s.Stats.AddedBytes), size(s.Exclusive), dash(held), dash(s.Description)}
			if s.Retention != nil {
				row = append(row, s.Retention.Why)
			}
			t.row(row...)
		}
		t.flush()
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
