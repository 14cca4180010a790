package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/policy"
	"github.com/urfave/cli/v2"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "automatic snapshot schedules, run by the daemon (chainfs serve)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "make a policy: local times of day, optional weekdays, and retention",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "at", Required: true, Usage: "local times, HH:MM[,HH:MM...]"},
					&cli.StringFlag{Name: "weekdays", Usage: "mon,tue,... (default: every day)"},
					&cli.IntFlag{Name: "retain-days", Usage: fmt.Sprintf("delete automatic snapshots older than N calendar days (%d to %d)", policy.MinRetainDays, policy.MaxRetainDays)},
					&cli.IntFlag{Name: "keep", Usage: "keep the newest N automatic snapshots"},
					&cli.BoolFlag{Name: "forever", Usage: "keep automatic snapshots until deleted (no age limit)"},
					jsonFlag,
				},
				Action: request(parsePolicyCreate),
			},
			{
				Name:      "apply",
				Usage:     "schedule volumes by a policy (replacing any they had)",
				ArgsUsage: "NAME VOLUME...",
				Action: request(func(c *cli.Context) (operation, error) {
					if err := wantArgs(c, 2, -1); err != nil {
						return nil, err
					}
					return &policyApply{Policy: c.Args().First(), Volumes: c.Args().Slice()[1:]}, nil
				}),
			},
			{
				Name:      "unapply",
				Usage:     "stop scheduling volumes",
				ArgsUsage: "VOLUME...",
				Action: request(func(c *cli.Context) (operation, error) {
					if err := wantArgs(c, 1, -1); err != nil {
						return nil, err
					}
					return &policyApply{Volumes: c.Args().Slice()}, nil
				}),
			},
			{
				Name:      "list",
				Usage:     "list policies and the volumes they schedule",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &policyList{}, wantArgs(c, 0, 0)
				}),
			},
			{
				Name:      "run",
				Usage:     "run a policy now, as the daemon does at its times: an automatic snapshot, then retention",
				ArgsUsage: "NAME [VOLUME]",
				Description: "Runs on VOLUME, which must have the policy, or on every volume that has it. The\n" +
					"snapshot is automatic, named auto-YYYYMMDD-HHMMSS (the scheduler's own are\n" +
					"auto-YYYYMMDD-HHMM), and retention judges it as it judges the scheduler's.",
				Flags: []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &policyRun{Policy: c.Args().Get(0), Volume: c.Args().Get(1)}, wantArgs(c, 1, 2)
				}),
			},
			{
				Name:      "prune",
				Usage:     "run retention now: delete the automatic snapshots the volumes' policies let go",
				ArgsUsage: "[VOLUME]",
				Description: "Retention runs after each automatic snapshot; this runs it now, on one volume or on every\n" +
					"volume with a policy. Manual and held snapshots are never deleted. --dry-run says what\n" +
					"would go, and why, and deletes nothing.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "dry-run", Usage: "say what would be deleted, and why; delete nothing"},
					jsonFlag,
				},
				Action: request(func(c *cli.Context) (operation, error) {
					return &policyPrune{Volume: c.Args().First(), DryRun: c.Bool("dry-run")}, wantArgs(c, 0, 1)
				}),
			},
			{
				Name:      "rm",
				Usage:     "remove a policy (its volumes are no longer scheduled)",
				ArgsUsage: "NAME",
				Action: request(func(c *cli.Context) (operation, error) {
					return &policyRemove{Name: c.Args().First()}, wantArgs(c, 1, 1)
				}),
			},
		},
	}
}

// policyCreate makes a policy: times of day, weekdays, and one of
// RetainDays, Keep and Forever (policy.Policy).
type policyCreate struct {
	Name       string   `json:"name"`
	At         []string `json:"at"`
	Weekdays   []string `json:"weekdays,omitempty"`
	RetainDays int      `json:"retain_days,omitempty"`
	Keep       int      `json:"keep,omitempty"`
	Forever    bool     `json:"forever,omitempty"`
}

func parsePolicyCreate(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	o := &policyCreate{Name: c.Args().First(), At: strings.Split(c.String("at"), ","),
		RetainDays: c.Int("retain-days"), Keep: c.Int("keep"), Forever: c.Bool("forever")}
	if w := c.String("weekdays"); w != "" {
		o.Weekdays = strings.Split(w, ",")
	}
	return o, nil
}

func (o *policyCreate) run(ctx context.Context, e *env) error {
	created, err := policy.Create(ctx, e.repo, policy.Policy{Name: o.Name, At: o.At, Weekdays: o.Weekdays,
		RetainDays: o.RetainDays, Keep: o.Keep, Forever: o.Forever})
	if err != nil {
		return err
	}
	return e.output(created, func() {
		fmt.Fprintf(e.stdout, "created policy %s: %s\n", created.Name, describePolicy(created))
	})
}

// policyApply schedules volumes by a policy, or by none when Policy is
// "" (policy unapply).
type policyApply struct {
	Policy  string   `json:"policy,omitempty"`
	Volumes []string `json:"volumes"`
}

func (o *policyApply) run(ctx context.Context, e *env) error {
	if len(o.Volumes) == 0 {
		return usagef("name at least one volume")
	}
	for _, v := range o.Volumes {
		if err := policy.Apply(ctx, e.repo, o.Policy, v); err != nil {
			return err
		}
		if o.Policy == "" {
			fmt.Fprintf(e.stdout, "volume %s: no policy\n", v)
		} else {
			fmt.Fprintf(e.stdout, "volume %s: policy %s\n", v, o.Policy)
		}
	}
	return nil
}

// policyRemove removes a policy; its volumes are no longer scheduled.
type policyRemove struct {
	Name string `json:"name"`
}

func (o *policyRemove) run(ctx context.Context, e *env) error {
	detached, err := policy.Remove(ctx, e.repo, o.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed policy %s", o.Name)
	if len(detached) > 0 {
		fmt.Fprintf(e.stdout, "; no longer scheduled: %s", strings.Join(detached, ", "))
	}
	fmt.Fprintln(e.stdout)
	return nil
}

// describePolicy says a policy in words: "at 02:00, 14:00 on mon, fri; keep 7".
func describePolicy(p *policy.Policy) string {
	s := "at " + strings.Join(p.At, ", ")
	if len(p.Weekdays) > 0 {
		s += " on " + strings.Join(p.Weekdays, ", ")
	} else {
		s += " every day"
	}
	switch {
	case p.Forever:
		return s + "; kept until deleted"
	case p.Keep > 0:
		return s + fmt.Sprintf("; keep the newest %d", p.Keep)
	}
	if _, ok := p.RetentionCutoff(time.Now()); !ok {
		return s + fmt.Sprintf("; keep %d days: out of range, nothing is pruned (recreate the policy)", p.RetainDays)
	}
	return s + "; keep " + count(uint64(p.RetainDays), "day")
}

// policyInfo is a policy with the volumes it schedules, as listed.
type policyInfo struct {
	policy.Policy
	Volumes []string `json:"volumes"`
	// Runs are the last and next run on each volume.
	Runs []policyRuns `json:"runs"`
}

// policyRuns is a policy's last run on a volume (its newest automatic
// snapshot) and its next.
type policyRuns struct {
	Volume   string    `json:"volume"`
	Last     string    `json:"last,omitempty"`
	LastTime time.Time `json:"last_time,omitzero"`
	Next     time.Time `json:"next,omitzero"`
}

// policyList lists policies and the volumes they schedule.
type policyList struct{}

func (policyList) run(ctx context.Context, e *env) error {
	policies, err := policy.List(ctx, e.repo)
	if err != nil {
		return err
	}
	vols, err := e.repo.Volumes(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	infos := []policyInfo{}
	for _, p := range policies {
		info := policyInfo{Policy: p, Volumes: []string{}, Runs: []policyRuns{}}
		for _, v := range vols {
			if v.Policy != p.Name {
				continue
			}
			info.Volumes = append(info.Volumes, v.Name)
			runs := policyRuns{Volume: v.Name}
			snaps, err := e.repo.Snapshots(ctx, v.Name)
			if err != nil {
				return err
			}
			for _, s := range slices.Backward(snaps) {
				if s.Auto {
					runs.Last, runs.LastTime = s.Name, s.Time
					break
				}
			}
			if !e.repo.OwnedElsewhere(&v) {
				runs.Next, _ = daemon.NextRun(&p, now, time.Local)
			}
			info.Runs = append(info.Runs, runs)
		}
		infos = append(infos, info)
	}
	return e.output(infos, func() {
		t := newTable(e.stdout, "NAME", "SCHEDULE", "VOLUME", "LAST RUN", "NEXT RUN")
		for _, p := range infos {
			if len(p.Runs) == 0 {
				t.row(p.Name, describePolicy(&p.Policy), "-", "-", "-")
			}
			for _, r := range p.Runs {
				last, next := "-", "-"
				if r.Last != "" {
					last = r.Last
				}
				if !r.Next.IsZero() {
					next = formatTime(r.Next)
				}
				t.row(p.Name, describePolicy(&p.Policy), r.Volume, last, next)
			}
		}
		t.flush()
	})
}

// policyPrune runs retention now on one volume, or on every volume with a
// policy (DryRun: says what it would delete).
type policyPrune struct {
	Volume string `json:"volume,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// pruned is a snapshot retention deletes, or would.
type pruned struct {
	Volume   string `json:"volume"`
	Snapshot string `json:"snapshot"`
	Why      string `json:"why"`
	Deleted  bool   `json:"deleted"`
}

func (o *policyPrune) run(ctx context.Context, e *env) error {
	vols, err := e.repo.Volumes(ctx)
	if err != nil {
		return err
	}
	if o.Volume != "" {
		v, err := e.repo.Volume(ctx, o.Volume)
		if err != nil {
			return err
		}
		if v.Policy == "" {
			return usagef("volume %s has no policy: nothing to prune by (chainfs policy apply POLICY %s)", v.Name, v.Name)
		}
		vols = []store.Volume{*v}
	}
	now := time.Now()
	out := []pruned{}
	var errs []error
	for _, v := range vols {
		if v.Policy == "" || e.repo.OwnedElsewhere(&v) {
			continue // another host's volume is pruned there, after its snapshots
		}
		p, err := policy.Get(ctx, e.repo, v.Policy)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snaps, err := e.repo.Snapshots(ctx, v.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		goes := map[string]string{}
		for i, verdict := range policy.Explain(p, snaps, now) {
			if verdict.Pruned {
				goes[snaps[i].Name] = verdict.Why
			}
		}
		if o.DryRun {
			for _, s := range snaps {
				if why, ok := goes[s.Name]; ok {
					out = append(out, pruned{v.Name, s.Name, why, false})
				}
			}
			continue
		}
		deleted, err := policy.Prune(ctx, e.repo, p, v.Name, now)
		for _, name := range deleted {
			out = append(out, pruned{v.Name, name, goes[name], true})
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	err = e.output(out, func() {
		for _, p := range out {
			verb := "would delete"
			if p.Deleted {
				verb = "deleted"
			}
			fmt.Fprintf(e.stdout, "%s %s/%s: %s\n", verb, p.Volume, p.Snapshot, p.Why)
		}
		if len(out) == 0 {
			fmt.Fprintln(e.stdout, "nothing to prune")
		}
	})
	return cmp.Or(errors.Join(errs...), err)
}

// policyRun runs a policy now on one of its volumes, or on all of them.
type policyRun struct {
	Policy string `json:"policy"`
	Volume string `json:"volume,omitempty"`
}

func (o *policyRun) run(ctx context.Context, e *env) error {
	p, err := policy.Get(ctx, e.repo, o.Policy)
	if err != nil {
		return err
	}
	var vols []string
	if o.Volume != "" {
		v, err := e.repo.Volume(ctx, o.Volume)
		if err != nil {
			return err
		}
		if v.Policy != p.Name {
			return usagef("volume %s does not have policy %s (chainfs policy apply %s %s)", v.Name, p.Name, p.Name, v.Name)
		}
		vols = []string{v.Name}
	} else {
		all, err := e.repo.Volumes(ctx)
		if err != nil {
			return err
		}
		for _, v := range all {
			if v.Policy == p.Name && !e.repo.OwnedElsewhere(&v) {
				vols = append(vols, v.Name)
			}
		}
		if len(vols) == 0 {
			return usagef("policy %s schedules no volume of this host (chainfs policy apply %s VOLUME)", p.Name, p.Name)
		}
	}
	var skip []string
	if e.mount != "" {
		skip = append(skip, e.mount)
	}
	type ran struct {
		Volume string `json:"volume"`
		*daemon.PolicyResult
	}
	out := []ran{}
	var errs []error
	for _, vol := range vols {
		// Two runs in one second take -2, -3, ... as default names do.
		base := "auto-" + time.Now().Format("20060102-150405")
		name := base
		for i := 2; ; i++ {
			if _, err := e.repo.Snapshot(ctx, vol, name); errors.Is(err, store.ErrNotFound) {
				break
			} else if err != nil {
				return err
			}
			name = fmt.Sprintf("%s-%d", base, i)
		}
		res, err := daemon.RunPolicy(ctx, e.repo, p, vol, name, daemon.PolicyRun{Skip: skip, Logger: e.log, Now: time.Now})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ran{vol, res})
		if res.PruneError != "" {
			errs = append(errs, fmt.Errorf("volume %s: retention: %s", vol, res.PruneError))
		}
	}
	err = e.output(out, func() {
		for _, r := range out {
			for _, w := range r.Warnings {
				fmt.Fprintln(e.stderr, "warning:", w)
			}
			fmt.Fprintf(e.stdout, "snapshot %s/%s created", r.Volume, r.Snapshot.Name)
			if len(r.Pruned) > 0 {
				fmt.Fprintf(e.stdout, "; retention deleted %s", strings.Join(r.Pruned, ", "))
			}
			fmt.Fprintln(e.stdout)
		}
	})
	return cmp.Or(errors.Join(errs...), err)
}
