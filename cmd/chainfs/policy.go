package main

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	return s + fmt.Sprintf("; keep %d days", p.RetainDays)
}

// policyInfo is a policy with the volumes it schedules, as listed.
type policyInfo struct {
	policy.Policy
	Volumes []string `json:"volumes"`
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
	infos := []policyInfo{}
	for _, p := range policies {
		info := policyInfo{Policy: p, Volumes: []string{}}
		for _, v := range vols {
			if v.Policy == p.Name {
				info.Volumes = append(info.Volumes, v.Name)
			}
		}
		infos = append(infos, info)
	}
	return e.output(infos, func() {
		t := newTable(e.stdout, "NAME", "SCHEDULE", "VOLUMES")
		for _, p := range infos {
			t.row(p.Name, describePolicy(&p.Policy), dash(strings.Join(p.Volumes, ",")))
		}
		t.flush()
	})
}
