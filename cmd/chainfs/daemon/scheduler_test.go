//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the DST test's zone, whatever the machine has

	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/policy"
	"github.com/chainfs/chainfs/store/storetest"
)

// schedEnv is a repository with one volume and a scheduler driven by hand.
type schedEnv struct {
	t    *testing.T
	ctx  context.Context
	repo *store.Repo
	jobs *runner
	s    *scheduler
}

func newSchedEnv(t *testing.T, loc *time.Location, p policy.Policy) *schedEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	repo := storetest.Repo(t, store.Volume{Name: "v", Source: src})
	p.Name = "p"
	if _, err := policy.Create(ctx, repo, p); err != nil {
		t.Fatal(err)
	}
	if err := policy.Apply(ctx, repo, "p", "v"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	jobs := newRunner(ctx, repo, "", log)
	return &schedEnv{t: t, ctx: ctx, repo: repo, jobs: jobs, s: newScheduler(repo, jobs, realClock{}, loc, "", log)}
}

// tick runs the scheduler at now and waits for what it started.
func (e *schedEnv) tick(now time.Time) {
	e.s.tick(e.ctx, now)
	e.jobs.wait()
}

func (e *schedEnv) autos() []string {
	snaps, err := e.repo.Snapshots(e.ctx, "v")
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, s := range snaps {
		if s.Auto {
			names = append(names, s.Name)
		}
	}
	return names
}

// day is a date in the future (policies apply from now on) at hh:mm.
func day(loc *time.Location, plusDays, hh, mm int) time.Time {
	y, m, d := time.Now().In(loc).AddDate(0, 0, plusDays).Date()
	return time.Date(y, m, d, hh, mm, 30, 0, loc)
}

func (e *schedEnv) manual(name string) {
	e.t.Helper()
	if _, err := source.Snapshot(e.ctx, e.repo, "v", store.SnapshotOptions{Name: name}, source.Options{}); err != nil {
		e.t.Fatal(err)
	}
}

// TestSchedulerRunsAndKeeps: runs at the policy's times, named after them,
// marked automatic; keep 2 prunes automatic snapshots only.
func TestSchedulerRunsAndKeeps(t *testing.T) {
	loc := time.UTC
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"14:00", "02:00"}, Keep: 2})
	e.s.seen["v"] = day(loc, 1, 0, 0) // the scheduler last looked at midnight
	e.manual("by-hand")
	e.tick(day(loc, 1, 1, 59))
	if got := e.autos(); len(got) != 0 {
		t.Fatalf("snapshots before the first time: %v", got)
	}
	e.tick(day(loc, 1, 2, 0))
	e.tick(day(loc, 1, 2, 1))
	e.tick(day(loc, 1, 14, 0))
	e.tick(day(loc, 2, 2, 0))
	want := []string{"auto-" + day(loc, 1, 0, 0).Format("20060102") + "-1400", "auto-" + day(loc, 2, 0, 0).Format("20060102") + "-0200"}
	if got := e.autos(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("automatic snapshots %v, want %v (the oldest pruned by keep 2)", got, want)
	}
	if _, err := e.repo.Snapshot(e.ctx, "v", "by-hand"); err != nil {
		t.Errorf("retention touched a manual snapshot: %v", err)
	}
}

// TestSchedulerRetainDays: snapshots older than the retention go, the
// newest stays whatever its age.
func TestSchedulerRetainDays(t *testing.T) {
	loc := time.UTC
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"03:00"}, RetainDays: 2})
	e.s.seen["v"] = day(loc, 1, 0, 0)
	for d := 1; d <= 5; d++ {
		e.tick(day(loc, d, 3, 0))
	}
	// Retention runs with the real clock (now); these snapshots were all
	// made now, so none is past two days: all five stay.
	if got := e.autos(); len(got) != 5 {
		t.Errorf("automatic snapshots %v", got)
	}
	e.s.clock = fixedClock(day(loc, 10, 0, 0))
	e.tick(day(loc, 6, 3, 0))
	if got := e.autos(); len(got) != 1 || !strings.HasSuffix(got[0], "-0300") {
		t.Errorf("after ten days with retain 2: %v, want only the newest", got)
	}
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time                         { return time.Time(c) }
func (c fixedClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// TestSchedulerSkipsBusyVolume: a run due while the volume's previous
// snapshot is still running is skipped, recorded, and not run later.
func TestSchedulerSkipsBusyVolume(t *testing.T) {
	loc := time.UTC
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"06:00"}, Forever: true})
	var skipped []string
	e.s.skipped = func(v string) { skipped = append(skipped, v) }
	e.s.seen["v"] = day(loc, 1, 0, 0)
	e.tick(day(loc, 1, 5, 0))
	w, err := e.repo.BeginSnapshot(e.ctx, "v", store.SnapshotOptions{Name: "long-running"})
	if err != nil {
		t.Fatal(err)
	}
	e.tick(day(loc, 1, 6, 0))
	w.Abort()
	e.tick(day(loc, 1, 6, 1))
	if got := e.autos(); len(got) != 0 {
		t.Errorf("a skipped run was taken later: %v", got)
	}
	if st := string(e.jobs.Status(0)); !strings.Contains(st, `"state":"skipped"`) || !strings.Contains(st, "long-running") {
		t.Errorf("status does not record the skip:\n%s", st)
	}
	if len(skipped) != 1 || skipped[0] != "v" {
		t.Errorf("skips counted for metrics: %v, want [v]", skipped)
	}
}

// TestSchedulerCatchUp: runs missed while the daemon was down are caught
// up by one snapshot, named after the newest missed run.
func TestSchedulerCatchUp(t *testing.T) {
	loc := time.UTC
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"04:00"}, Forever: true})
	e.tick(day(loc, 3, 12, 0)) // first look, three days after the policy was applied
	want := "auto-" + day(loc, 3, 0, 0).Format("20060102") + "-0400"
	if got := e.autos(); len(got) != 1 || got[0] != want {
		t.Errorf("catch-up: %v, want [%s]", got, want)
	}
	// A restarted daemon (a new scheduler) does not take it again.
	e.s = newScheduler(e.repo, e.jobs, realClock{}, loc, "", slog.New(slog.DiscardHandler))
	e.tick(day(loc, 3, 12, 5))
	if got := e.autos(); len(got) != 1 {
		t.Errorf("after a restart: %v", got)
	}
}

// TestSchedulerAcrossDST: in New York, 02:30 does not exist on the day
// clocks go forward (it runs once, just after the gap) and 01:30 happens
// twice on the day they go back (it runs once).
func TestSchedulerAcrossDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	p := &policy.Policy{At: []string{"02:30"}, Forever: true}
	from := time.Date(2027, 3, 14, 1, 0, 0, 0, ny) // 2027-03-14: 02:00 EST → 03:00 EDT
	if _, due := newestOccurrence(p, from, time.Date(2027, 3, 14, 1, 59, 0, 0, ny), ny); due {
		t.Error("02:30 ran before the gap it falls in")
	}
	label, due := newestOccurrence(p, from, time.Date(2027, 3, 14, 3, 1, 0, 0, ny), ny)
	if !due || label != "20270314-0230" {
		t.Errorf("spring forward: %q %v, want 20270314-0230", label, due)
	}

	e := newSchedEnv(t, ny, policy.Policy{At: []string{"01:30"}, Forever: true})
	// 2027-11-07: 02:00 EDT → 01:00 EST; 01:30 happens at 05:30 and 06:30 UTC.
	e.s.seen["v"] = time.Date(2027, 11, 7, 4, 0, 0, 0, time.UTC)
	for _, utc := range []int{5, 6, 7} {
		e.tick(time.Date(2027, 11, 7, utc, 45, 0, 0, time.UTC))
	}
	if got := e.autos(); len(got) != 1 || got[0] != "auto-20271107-0130" {
		t.Errorf("fall back: %v, want one auto-20271107-0130", got)
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, p := range []policy.Policy{
		{Name: "p", At: []string{"24:00"}, Keep: 1},
		{Name: "p", At: []string{"7:00"}, Keep: 1},
		{Name: "p", At: []string{"07:00"}},
		{Name: "p", At: []string{"07:00"}, Keep: 1, Forever: true},
		{Name: "p", At: []string{"07:00"}, Keep: 1, Weekdays: []string{"funday"}},
		{Name: "p", Keep: 1},
		{Name: "p", At: []string{"07:00"}, RetainDays: -1},
		{Name: "p", At: []string{"07:00"}, RetainDays: policy.MaxRetainDays + 1},
		{Name: "p", At: []string{"07:00"}, RetainDays: 106752}, // past int64 nanoseconds
		{Name: "p", At: []string{"07:00"}, RetainDays: 1 << 40},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("policy %+v accepted", p)
		}
	}
	for _, days := range []int{policy.MinRetainDays, 30, policy.MaxRetainDays} {
		p := policy.Policy{Name: "p", At: []string{"07:00"}, RetainDays: days}
		if err := p.Validate(); err != nil {
			t.Errorf("--retain-days %d refused: %v", days, err)
		}
	}
}

// TestRetentionStoredOutOfRange: a policy stored by an older version with
// --retain-days past the range (106,752 days overflowed to a cut-off in
// the future) prunes nothing.
func TestRetentionStoredOutOfRange(t *testing.T) {
	loc := time.UTC
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"03:00"}, Forever: true})
	e.s.seen["v"] = day(loc, 1, 0, 0)
	for d := 1; d <= 3; d++ {
		e.tick(day(loc, d, 3, 0))
	}
	for _, days := range []int{106752, policy.MaxRetainDays + 1, 1 << 40, -5} {
		if deleted, err := policy.Prune(e.ctx, e.s.repo, &policy.Policy{Name: "p", RetainDays: days}, "v", day(loc, 3, 4, 0)); err != nil || len(deleted) != 0 {
			t.Errorf("stored --retain-days %d pruned %v, %v", days, deleted, err)
		}
	}
	if got := e.autos(); len(got) != 3 {
		t.Errorf("automatic snapshots after pruning by out-of-range policies: %v, want all 3", got)
	}
}

// TestSchedulerWeekdays: a Monday-and-Thursday policy runs on those days
// only, over two weeks of ticks every hour.
func TestSchedulerWeekdays(t *testing.T) {
	loc := time.UTC
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"08:00"}, Weekdays: []string{"mon", "thu"}, Forever: true})
	start := day(loc, 1, 0, 0)
	e.s.seen["v"] = start
	for h := 1; h <= 14*24; h++ {
		// Wait for each run: a run still going at the next one makes it skip.
		e.tick(start.Add(time.Duration(h) * time.Hour))
	}
	got := e.autos()
	if len(got) != 4 {
		t.Fatalf("two weeks of mon+thu at 08:00: %v, want 4 runs", got)
	}
	for _, name := range got {
		d, err := time.ParseInLocation("20060102-1504", strings.TrimPrefix(name, "auto-"), loc)
		if err != nil || (d.Weekday() != time.Monday && d.Weekday() != time.Thursday) || d.Hour() != 8 {
			t.Errorf("%s: not a Monday or Thursday at 08:00", name)
		}
	}
}

// TestSchedulerClockBackwards: a clock set back an hour after a run does
// not take that run again.
func TestSchedulerClockBackwards(t *testing.T) {
	loc := time.UTC
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"10:00"}, Forever: true})
	e.s.seen["v"] = day(loc, 1, 9, 0)
	e.tick(day(loc, 1, 10, 0))
	e.tick(day(loc, 1, 9, 30)) // the clock jumps back
	e.tick(day(loc, 1, 10, 0))
	e.tick(day(loc, 1, 10, 30))
	if got := e.autos(); len(got) != 1 {
		t.Errorf("after the clock went back: %v, want one run", got)
	}
}

func TestNextRun(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip(err)
	}
	p := &policy.Policy{At: []string{"02:30", "18:00"}, Weekdays: []string{"sat", "sun"}}
	for _, c := range []struct{ now, want time.Time }{
		// Thursday: the next run is Saturday's first.
		{time.Date(2027, 3, 11, 9, 0, 0, 0, ny), time.Date(2027, 3, 13, 2, 30, 0, 0, ny)},
		// Saturday between the two.
		{time.Date(2027, 3, 13, 2, 30, 0, 0, ny), time.Date(2027, 3, 13, 18, 0, 0, 0, ny)},
		// Sunday 14 March 2027: 02:30 does not exist; the run is at 03:00.
		{time.Date(2027, 3, 13, 19, 0, 0, 0, ny), time.Date(2027, 3, 14, 3, 0, 0, 0, ny)},
		// Sunday evening: next Saturday.
		{time.Date(2027, 3, 14, 18, 0, 0, 0, ny), time.Date(2027, 3, 20, 2, 30, 0, 0, ny)},
	} {
		got, ok := NextRun(p, c.now, ny)
		if !ok || !got.Equal(c.want) {
			t.Errorf("NextRun(%v) = %v, %v; want %v", c.now, got, ok, c.want)
		}
	}
}

// TestSchedulerRefusedSnapshotDoesNotPrune: an automatic snapshot of a
// source that was emptied (a disk not mounted) fails, and retention does
// not run: keep 1 still has the good snapshot.
func TestSchedulerRefusedSnapshotDoesNotPrune(t *testing.T) {
	loc := time.UTC
	// By age: with the clock at day 10 both good runs (made now) are past
	// their 2 days, and only the newest is kept whatever its age, so a
	// retention that ran after the refusal would prune the other.
	e := newSchedEnv(t, loc, policy.Policy{At: []string{"03:00"}, RetainDays: 2})
	e.s.seen["v"] = day(loc, 1, 0, 0)
	e.tick(day(loc, 1, 3, 0))
	e.tick(day(loc, 2, 3, 0))
	good := e.autos()
	if len(good) != 2 {
		t.Fatalf("two runs: %v", good)
	}
	v, err := e.repo.Volume(e.ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(v.Source, "f")); err != nil {
		t.Fatal(err)
	}
	e.s.clock = fixedClock(day(loc, 10, 0, 0))
	e.tick(day(loc, 10, 3, 0))
	if got := e.autos(); strings.Join(got, " ") != strings.Join(good, " ") {
		t.Errorf("after a run on the emptied source: %v, want %v kept and nothing added", got, good)
	}
	if st := string(e.jobs.Status(0)); !strings.Contains(st, `"state":"failed"`) || !strings.Contains(st, "holds no files") {
		t.Errorf("status does not show the refused run:\n%s", st)
	}
}
