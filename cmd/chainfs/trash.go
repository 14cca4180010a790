package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/report"
	"github.com/urfave/cli/v2"
)

func trashCommand() *cli.Command {
	return &cli.Command{
		Name:  "trash",
		Usage: "deleted snapshots, kept for some days before their space is given back",
		Description: "A snapshot deleted by hand or by retention goes to the trash, where it keeps its data\n" +
			"for the repository's trash days (7 unless set) before it is deleted for good; with 0 days,\n" +
			"deletions are for good at once. The mount shows it read-only at volumes/VOLUME/.trash/NAME.",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list the snapshots in the trash, when each goes for good, and what it would free",
				ArgsUsage: "[VOLUME]",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &trashList{Volume: c.Args().First()}, wantArgs(c, 0, 1)
				}),
			},
			{
				Name:      "restore",
				Usage:     "take a snapshot out of the trash",
				ArgsUsage: "VOLUME/SNAPSHOT",
				Description: "SNAPSHOT is its name in 'trash list' (NAME~SEQ where two in the trash share a name).\n" +
					"A snapshot that retention deleted may be deleted again at its next run: hold it\n" +
					"(chainfs snapshot hold) to keep it.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "as", Usage: "restore it under this name (when its own is taken)"},
					jsonFlag,
				},
				Action: request(func(c *cli.Context) (operation, error) {
					if err := wantArgs(c, 1, 1); err != nil {
						return nil, err
					}
					ref, err := parseSnapshotRef(c.Args().First())
					return &trashRestore{snapshotRef: ref, As: c.String("as")}, err
				}),
			},
			{
				Name:      "empty",
				Usage:     "delete for good what the trash holds, giving its space back at the next gc",
				ArgsUsage: "VOLUME[/SNAPSHOT] | --all | --expired",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "all", Usage: "empty the trash of every volume"},
					&cli.BoolFlag{Name: "expired", Usage: "only what has been there longer than the trash days"},
					jsonFlag,
				},
				Action: request(parseTrashEmpty),
			},
			{
				Name:      "days",
				Usage:     "show, or set, how many days the trash keeps a deleted snapshot (0: no trash)",
				ArgsUsage: "[DAYS]",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					if err := wantArgs(c, 0, 1); err != nil {
						return nil, err
					}
					o := &trashDays{}
					if c.NArg() == 1 {
						n, err := strconv.Atoi(c.Args().First())
						if err != nil || n < 0 || n > store.MaxTrashDays {
							return nil, usagef("%q: give a number of days from 0 (no trash) to %d", c.Args().First(), store.MaxTrashDays)
						}
						o.Set = &n
					}
					return o, nil
				}),
			},
		},
	}
}

// trashEntry is a snapshot in the trash, as trash list and snapshot
// delete report it.
type trashEntry struct {
	Volume string `json:"volume"`
	// Name is what it goes by in the trash (store.TrashNames).
	Name    string        `json:"name"`
	Trashed store.Trashed `json:"trashed"`
	Expires time.Time     `json:"expires"`
	// Exclusive is what emptying it alone would free. Blocks shared only
	// by snapshots in the trash are in none's.
	Exclusive uint64 `json:"exclusive_bytes"`
	Logical   uint64 `json:"logical_bytes"`
}

// trashList lists the snapshots in the trash.
type trashList struct {
	Volume string `json:"volume,omitempty"`
}

func (o *trashList) run(ctx context.Context, e *env) error {
	vols := []string{o.Volume}
	if o.Volume == "" {
		all, err := e.repo.Volumes(ctx)
		if err != nil {
			return err
		}
		vols = vols[:0]
		for _, v := range all {
			vols = append(vols, v.Name)
		}
	}
	days, err := e.repo.TrashDays(ctx)
	if err != nil {
		return err
	}
	out := []trashEntry{}
	for _, vol := range vols {
		_, trash, err := report.VolumeUsage(ctx, e.repo, vol, report.UsageOptions{TrashOnly: true})
		if err != nil {
			return err
		}
		for _, su := range trash {
			s := store.Snapshot{Trashed: su.Trashed}
			out = append(out, trashEntry{Volume: vol, Name: su.Snapshot, Trashed: *su.Trashed,
				Expires: s.Expires(days), Exclusive: su.Exclusive, Logical: su.Logical})
		}
	}
	return e.output(out, func() {
		if len(out) == 0 {
			fmt.Fprintf(e.stdout, "the trash is empty (it keeps a deleted snapshot %s)\n", trashKeeps(days))
			return
		}
		t := newTable(e.stdout, "VOLUME", "SNAPSHOT", "DELETED", "BY", "GOES", "FREES")
		var frees uint64
		for _, en := range out {
			by := en.Trashed.By
			if by == "manual" {
				by = userName(en.Trashed.UID)
			}
			t.row(en.Volume, en.Name, en.Trashed.Time.Local().Format("2006-01-02 15:04"), by,
				en.Expires.Local().Format("2006-01-02 15:04"), size(en.Exclusive))
			frees += en.Exclusive
		}
		t.flush()
		fmt.Fprintf(e.stdout, "\n%s in the trash; emptying it frees at least %s at the next gc (chainfs trash empty)\n",
			count(uint64(len(out)), "snapshot"), size(frees))
	})
}

// trashKeeps says how long the trash keeps a snapshot.
func trashKeeps(days int) string {
	switch days {
	case 0:
		return "no time: deletions are for good"
	case 1:
		return "for 1 day"
	}
	return fmt.Sprintf("for %d days", days)
}

// trashRestore takes a snapshot out of the trash.
type trashRestore struct {
	snapshotRef
	As string `json:"as,omitempty"`
}

func (o *trashRestore) run(ctx context.Context, e *env) error {
	if err := o.check(); err != nil {
		return err
	}
	s, err := e.repo.RestoreTrash(ctx, o.Volume, o.Snapshot, o.As)
	if err != nil {
		return err
	}
	return e.output(s, func() {
		fmt.Fprintf(e.stdout, "snapshot %s/%s restored from the trash\n", s.Volume, s.Name)
		if s.Auto {
			fmt.Fprintf(e.stdout, "retention may delete it again: chainfs snapshot hold %s/%s --reason TEXT keeps it\n", s.Volume, s.Name)
		}
	})
}

// trashEmpty deletes for good what the trash holds.
type trashEmpty struct {
	Volume   string `json:"volume,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Expired  bool   `json:"expired,omitempty"`
}

func parseTrashEmpty(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 0, 1); err != nil {
		return nil, err
	}
	o := &trashEmpty{Expired: c.Bool("expired")}
	if arg := c.Args().First(); arg != "" {
		if c.Bool("all") {
			return nil, usagef("--all empties every volume's trash: name no volume with it")
		}
		vol, snap, _ := strings.Cut(arg, "/")
		if vol == "" || strings.Contains(snap, "/") {
			return nil, usagef("%q: want VOLUME or VOLUME/SNAPSHOT", arg)
		}
		o.Volume, o.Snapshot = vol, snap
	} else if !c.Bool("all") && !o.Expired {
		return nil, usagef("name a volume or a snapshot, or pass --all (every volume) or --expired")
	}
	return o, nil
}

func (o *trashEmpty) run(ctx context.Context, e *env) error {
	if o.Snapshot != "" && o.Volume == "" {
		return usagef("a snapshot needs its volume: VOLUME/SNAPSHOT")
	}
	gone, err := e.repo.EmptyTrash(ctx, o.Volume, o.Snapshot, o.Expired, time.Now())
	names := []string{}
	for _, s := range gone {
		names = append(names, s.Volume+"/"+s.Name)
	}
	if outErr := e.output(map[string][]string{"deleted": names}, func() {
		for _, n := range names {
			fmt.Fprintf(e.stdout, "deleted %s for good\n", n)
		}
		if len(names) == 0 && err == nil {
			fmt.Fprintln(e.stdout, "nothing to empty")
		} else if len(names) > 0 {
			fmt.Fprintln(e.stdout, "its space is given back at the next gc (chainfs gc)")
		}
	}); outErr != nil {
		return outErr
	}
	return err
}

// trashDays shows, or sets, how long the trash keeps a snapshot.
type trashDays struct {
	Set *int `json:"set,omitempty"`
}

func (o *trashDays) run(ctx context.Context, e *env) error {
	if o.Set != nil {
		if err := e.repo.SetTrashDays(ctx, *o.Set); err != nil {
			return err
		}
	}
	days, err := e.repo.TrashDays(ctx)
	if err != nil {
		return err
	}
	// What the new setting lets go goes at the next emptying: say so.
	due := 0
	if trash, err := e.repo.AllTrash(ctx); err == nil {
		now := time.Now()
		for _, s := range trash {
			if !now.Before(s.Expires(days)) {
				due++
			}
		}
	}
	return e.output(map[string]int{"days": days, "due": due}, func() {
		fmt.Fprintf(e.stdout, "the trash keeps a deleted snapshot %s\n", trashKeeps(days))
		if due > 0 {
			fmt.Fprintf(e.stdout, "%s in the trash %s past that: deleted for good by the daemon within a minute, or by the next gc\n",
				count(uint64(due), "snapshot"), plural(due, "is", "are"))
		}
	})
}
