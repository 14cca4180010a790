package main

import (
	"fmt"
	"strings"
	"time"

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
				Action: repoAction(1, 1, policyCreate),
			},
			{
				Name:      "apply",
				Usage:     "schedule volumes by a policy (replacing any they had)",
				ArgsUsage: "NAME VOLUME...",
				Action: repoAction(2, -1, func(c *cli.Context, r *store.Repo) error {
					return applyPolicy(c, r, c.Args().First(), c.Args().Slice()[1:])
				}),
			},
			{
				Name:      "unapply",
				Usage:     "stop scheduling volumes",
				ArgsUsage: "VOLUME...",
				Action: repoAction(1, -1, func(c *cli.Context, r *store.Repo) error {
					return applyPolicy(c, r, "", c.Args().Slice())
				}),
			},
			{
				Name:      "list",
				Usage:     "list policies and the volumes they schedule",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag},
				Action:    repoAction(0, 0, policyList),
			},
			{
				Name:      "rm",
				Usage:     "remove a policy (its volumes are no longer scheduled)",
				ArgsUsage: "NAME",
				Action: repoAction(1, 1, func(c *cli.Context, r *store.Repo) error {
					detached, err := policy.Remove(c.Context, r, c.Args().First())
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed policy %s", c.Args().First())
					if len(detached) > 0 {
						fmt.Fprintf(c.App.Writer, "; no longer scheduled: %s", strings.Join(detached, ", "))
					}
					fmt.Fprintln(c.App.Writer)
					return nil
				}),
			},
		},
	}
}

func policyCreate(c *cli.Context, r *store.Repo) error {
	p := policy.Policy{Name: c.Args().First(), At: strings.Split(c.String("at"), ","),
		RetainDays: c.Int("retain-days"), Keep: c.Int("keep"), Forever: c.Bool("forever")}
	if w := c.String("weekdays"); w != "" {
		p.Weekdays = strings.Split(w, ",")
	}
	created, err := policy.Create(c.Context, r, p)
	if err != nil {
		return err
	}
	return output(c, created, func() {
		fmt.Fprintf(c.App.Writer, "created policy %s: %s\n", created.Name, describePolicy(created))
	})
}

func applyPolicy(c *cli.Context, r *store.Repo, name string, volumes []string) error {
	for _, v := range volumes {
		if err := policy.Apply(c.Context, r, name, v); err != nil {
			return err
		}
		if name == "" {
			fmt.Fprintf(c.App.Writer, "volume %s: no policy\n", v)
		} else {
			fmt.Fprintf(c.App.Writer, "volume %s: policy %s\n", v, name)
		}
	}
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

func policyList(c *cli.Context, r *store.Repo) error {
	policies, err := policy.List(c.Context, r)
	if err != nil {
		return err
	}
	vols, err := r.Volumes(c.Context)
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
	return output(c, infos, func() {
		t := newTable(c, "NAME", "SCHEDULE", "VOLUMES")
		for _, p := range infos {
			t.row(p.Name, describePolicy(&p.Policy), dash(strings.Join(p.Volumes, ",")))
		}
		t.flush()
	})
}
