//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/policy"
)

// Clock is the time the scheduler runs by; tests bring their own.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// scheduler takes the automatic snapshots of the volumes' policies.
//
// The rules (docs/policies.md): a policy's times are local wall-clock
// times. Each minute the scheduler looks at the occurrences since it last
// looked and takes the newest one, once, named auto-YYYYMMDD-HHMM after its
// wall-clock time: a time that a DST change skips runs just after the gap,
// a time it repeats runs once (the name is taken the second time). At
// start, what it "last looked" at is the volume's newest automatic
// snapshot, or when the policy was applied if later: runs missed while the
// daemon was down are caught up by one snapshot. A volume whose previous
// snapshot is still running skips the run, and the skip is recorded.
type scheduler struct {
	repo  *store.Repo
	jobs  *runner
	clock Clock
	loc   *time.Location
	mount string
	log   *slog.Logger

	seen map[string]time.Time // volume → the time up to which it was looked at
	// emptying is held while expired snapshots are deleted from the trash.
	emptying sync.Mutex
	// skipped, if set, is told of each run that did not start.
	skipped func(volume string)
}

func newScheduler(repo *store.Repo, jobs *runner, clock Clock, loc *time.Location, mount string, log *slog.Logger) *scheduler {
	return &scheduler{repo: repo, jobs: jobs, clock: clock, loc: loc, mount: mount, log: log, seen: map[string]time.Time{}}
}

// run ticks at every minute until ctx is done, and returns once the
// trash's emptying has stopped too.
func (s *scheduler) run(ctx context.Context) {
	defer func() { s.emptying.Lock(); s.emptying.Unlock() }()
	s.tick(ctx, s.clock.Now())
	for {
		now := s.clock.Now()
		next := now.Truncate(time.Minute).Add(time.Minute)
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(next.Sub(now)):
		}
		s.tick(ctx, s.clock.Now())
	}
}

// tick starts the runs due between each volume's last look and now.
func (s *scheduler) tick(ctx context.Context, now time.Time) {
	vols, err := s.repo.Volumes(ctx)
	if err != nil {
		s.log.Error("scheduler: list volumes", "err", err)
		return
	}
	for _, v := range vols {
		if v.Policy == "" || s.repo.OwnedElsewhere(&v) {
			// Another host's volume is snapshotted there, from its source.
			delete(s.seen, v.Name)
			continue
		}
		p, err := policy.Get(ctx, s.repo, v.Policy)
		if err != nil {
			s.log.Error("scheduler: policy", "volume", v.Name, "policy", v.Policy, "err", err)
			continue
		}
		from, ok := s.seen[v.Name]
		if !ok {
			if from, err = s.lastAuto(ctx, &v); err != nil {
				s.log.Error("scheduler: snapshots", "volume", v.Name, "err", err)
				continue
			}
		}
		s.seen[v.Name] = now
		if label, due := newestOccurrence(p, from, now, s.loc); due {
			s.fire(ctx, v.Name, p, label)
		}
	}
	s.emptyTrash(ctx, now)
}

// emptyTrash deletes for good the snapshots that have been in the trash
// longer than the repository keeps them, in the background: a long
// deletion holds up no volume's schedule. It runs after the tick's
// snapshots have begun, so that it finds their volumes busy and leaves
// them for a later tick, rather than making them skip a run. A volume
// another host snapshots is emptied there. The trash's index costs one
// seek per volume when it is empty.
func (s *scheduler) emptyTrash(ctx context.Context, now time.Time) {
	if !s.emptying.TryLock() {
		return // the last one still runs
	}
	vols, err := s.repo.Volumes(ctx)
	if err != nil {
		s.emptying.Unlock()
		s.log.Error("trash: list volumes", "err", err)
		return
	}
	go func() {
		defer s.emptying.Unlock()
		for _, v := range vols {
			if s.repo.OwnedElsewhere(&v) {
				continue
			}
			gone, err := s.repo.EmptyTrash(ctx, v.Name, "", true, now)
			for _, sn := range gone {
				s.log.Info("trash: deleted for good", "volume", sn.Volume, "snapshot", sn.Name, "trashed", sn.Trashed.Time)
			}
			switch {
			case err == nil || ctx.Err() != nil || errors.Is(err, store.ErrNotFound):
			case errors.Is(err, store.ErrBusy):
				s.log.Debug("trash: empty what expired, at a later tick", "volume", v.Name, "err", err)
			default:
				s.log.Warn("trash: empty what expired", "volume", v.Name, "err", err)
			}
		}
	}()
}

// nextRuns is when each volume with a policy has its next run, by volume
// and policy name.
func (s *scheduler) nextRuns(ctx context.Context) map[[2]string]time.Time {
	vols, err := s.repo.Volumes(ctx)
	if err != nil {
		return nil
	}
	out := map[[2]string]time.Time{}
	for _, v := range vols {
		if v.Policy == "" || s.repo.OwnedElsewhere(&v) {
			continue
		}
		if p, err := policy.Get(ctx, s.repo, v.Policy); err == nil {
			if at, ok := NextRun(p, s.clock.Now(), s.loc); ok {
				out[[2]string{v.Name, v.Policy}] = at
			}
		}
	}
	return out
}

// lastAuto is the time of the volume's newest automatic snapshot, or when
// its policy was applied if that is later.
func (s *scheduler) lastAuto(ctx context.Context, v *store.Volume) (time.Time, error) {
	snaps, err := s.repo.Snapshots(ctx, v.Name)
	if err != nil {
		return time.Time{}, err
	}
	last := v.PolicyApplied
	for _, sn := range snaps {
		if sn.Auto && sn.Time.After(last) {
			last = sn.Time
		}
	}
	return last, nil
}

// newestOccurrence returns the wall-clock label (20060102-1504) of the
// newest run of p in (from, to], if any.
func newestOccurrence(p *policy.Policy, from, to time.Time, loc *time.Location) (string, bool) {
	if !to.After(from) {
		return "", false
	}
	// A week holds every weekday, so eight days back always suffice.
	for i := 0; i < 8; i++ {
		runs := runsOnDate(p, to.In(loc).AddDate(0, 0, -i), loc)
		if len(runs) > 0 && runs[len(runs)-1].at.AddDate(0, 0, 1).Before(from) {
			break
		}
		for j := len(runs) - 1; j >= 0; j-- {
			if at := runs[j].at; at.After(from) && !at.After(to) {
				return runs[j].label, true
			}
		}
	}
	return "", false
}

// NextRun is the first run of p after now, its times read in loc.
func NextRun(p *policy.Policy, now time.Time, loc *time.Location) (time.Time, bool) {
	for i := 0; i < 8; i++ {
		for _, r := range runsOnDate(p, now.In(loc).AddDate(0, 0, i), loc) {
			if r.at.After(now) {
				return r.at, true
			}
		}
	}
	return time.Time{}, false
}

// run is one planned run of a policy.
type run struct {
	label string // the wall-clock time, 20060102-1504
	at    time.Time
}

// runsOnDate lists p's runs on day's date, earliest first.
func runsOnDate(p *policy.Policy, day time.Time, loc *time.Location) []run {
	y, m, d := day.Date()
	if !p.RunsOn(time.Date(y, m, d, 12, 0, 0, 0, loc).Weekday()) {
		return nil
	}
	var runs []run
	for _, at := range p.At {
		hh, mm, _ := policy.ParseClock(at)
		runs = append(runs, run{fmt.Sprintf("%04d%02d%02d-%02d%02d", y, m, d, hh, mm), wallTime(y, m, d, hh, mm, loc)})
	}
	return runs
}

// wallTime is the instant a local wall-clock time happens. A time that a
// DST change skips (02:30 when clocks jump from 02:00 to 03:00) becomes the
// first minute after the gap; time.Date alone would move it an hour back.
func wallTime(y int, m time.Month, d, hh, mm int, loc *time.Location) time.Time {
	for k := 0; k <= 24*60; k++ {
		t := time.Date(y, m, d, hh, mm+k, 0, 0, loc)
		want := time.Date(y, m, d, hh, mm+k, 0, 0, time.UTC) // the wall time, normalised
		if t.Hour() == want.Hour() && t.Minute() == want.Minute() && t.Day() == want.Day() {
			return t
		}
	}
	return time.Date(y, m, d, hh, mm, 0, 0, loc)
}

// fire starts an automatic snapshot, or records why it did not.
func (s *scheduler) fire(ctx context.Context, volume string, p *policy.Policy, label string) {
	name := "auto-" + label
	if _, err := s.repo.Snapshot(ctx, volume, name); err == nil {
		return // already taken: a repeated wall-clock time, or a restart
	}
	if v, err := s.repo.Volume(ctx, volume); err == nil && v.Running != "" {
		s.jobs.skip("auto", volume+" "+name, "skipped: "+v.Running)
		if s.skipped != nil {
			s.skipped(volume)
		}
		s.log.Warn("automatic snapshot skipped: the volume is busy", "volume", volume, "snapshot", name, "running", v.Running)
		return
	}
	_, err := s.jobs.start(ctx, "auto", volume, name, volume+" "+name, func(ctx context.Context, begun func()) (any, error) {
		run, err := RunPolicy(ctx, s.repo, p, volume, name, PolicyRun{Skip: []string{s.mount}, Logger: s.log,
			Started: begun, Now: func() time.Time { return s.clock.Now().In(s.loc) }})
		if err != nil {
			return nil, err
		}
		return map[string]any{"snapshot": run.Snapshot.Name, "pruned": run.Pruned}, nil
	})
	if err != nil {
		s.log.Warn("automatic snapshot failed", "volume", volume, "snapshot", name, "err", err)
	}
}

// PolicyRun is how RunPolicy runs.
type PolicyRun struct {
	// Skip, Logger and Started are source.Options's.
	Skip    []string
	Logger  *slog.Logger
	Started func()
	// Now is the time retention judges by, in the policy's location.
	Now func() time.Time
}

// PolicyResult is what a run of a policy made and deleted.
type PolicyResult struct {
	Snapshot *store.Snapshot `json:"snapshot"`
	Warnings []string        `json:"warnings,omitempty"`
	Pruned   []string        `json:"pruned"`
	// PruneError says why retention deleted less than it meant to.
	PruneError string `json:"prune_error,omitempty"`
}

// RunPolicy runs a policy on a volume once, as the scheduler does at each
// of its times: an automatic snapshot named name, then retention
// (policy.Prune). Retention runs only after a snapshot is made, so that a
// refused one (a source that looks unmounted or wiped) never prunes the
// good snapshots before it.
func RunPolicy(ctx context.Context, repo *store.Repo, p *policy.Policy, volume, name string, o PolicyRun) (*PolicyResult, error) {
	log := o.Logger
	res, err := source.Snapshot(ctx, repo, volume, store.SnapshotOptions{Name: name, Auto: true},
		source.Options{Skip: o.Skip, Logger: log, Started: func(string) {
			if o.Started != nil {
				o.Started()
			}
		}})
	if errors.Is(err, source.ErrSourceReplaced) {
		log.Error("automatic snapshot refused: the source looks unmounted or wiped; retention not run",
			"volume", volume, "snapshot", name, "err", err)
	}
	if err != nil {
		return nil, err
	}
	out := &PolicyResult{Snapshot: res.Snapshot, Pruned: []string{}}
	for _, w := range res.Warnings {
		out.Warnings = append(out.Warnings, w.String())
	}
	now := o.Now()
	if p.Keep == 0 && p.RetainDays != 0 && !p.Forever {
		if _, ok := p.RetentionCutoff(now); !ok {
			log.Warn("retention: the policy's --retain-days is out of range (from an older version); nothing pruned: recreate the policy",
				"policy", p.Name, "volume", volume, "retain_days", p.RetainDays, "min", policy.MinRetainDays, "max", policy.MaxRetainDays)
		}
	}
	deleted, err := policy.Prune(ctx, repo, p, volume, now)
	for _, name := range deleted {
		log.Info("retention: deleted", "volume", volume, "snapshot", name)
	}
	out.Pruned = append(out.Pruned, deleted...)
	if err != nil {
		log.Warn("retention", "volume", volume, "err", err)
		out.PruneError = err.Error()
	}
	return out, nil
}

// explainRetention says why retention keeps a snapshot of a volume, or
// when it deletes it (policy.Explain).
func explainRetention(ctx context.Context, repo *store.Repo, volume, snapshot string, now time.Time) (string, error) {
	v, err := repo.Volume(ctx, volume)
	if err != nil {
		return "", err
	}
	snaps, err := repo.Snapshots(ctx, volume)
	if err != nil {
		return "", err
	}
	verdicts, err := policy.ExplainVolume(ctx, repo, v, snaps, now)
	if err != nil {
		return "", err
	}
	for i, s := range snaps {
		if s.Name == snapshot {
			return verdicts[i].Why, nil
		}
	}
	return "", fmt.Errorf("snapshot %s/%s: %w", volume, snapshot, store.ErrNotFound)
}
