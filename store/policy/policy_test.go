package policy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/storetest"
)

// TestPolicies: a policy is created in canonical form, found, listed,
// applied to volumes (not to an image's), and removed with every volume
// detached; what the store keeps of a volume's chain does not move.
func TestPolicies(t *testing.T) {
	r := storetest.Repo(t, store.Volume{Name: "a", Source: "/nowhere"}, store.Volume{Name: "b", Source: "/nowhere"})
	ctx := context.Background()
	p, err := Create(ctx, r, Policy{Name: "nightly", At: []string{"23:00", "01:30", "23:00"}, Weekdays: []string{"MON", "Friday"}, Keep: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.At, []string{"01:30", "23:00"}) || !slices.Equal(p.Weekdays, []string{"mon", "fri"}) || p.Created.IsZero() {
		t.Errorf("created %+v", p)
	}
	if _, err := Create(ctx, r, Policy{Name: "nightly", At: []string{"01:00"}, Forever: true}); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second nightly: %v", err)
	}
	if _, err := Create(ctx, r, Policy{Name: "weekly", At: []string{"01:00"}, RetainDays: 30}); err != nil {
		t.Fatal(err)
	}
	got, err := Get(ctx, r, "nightly")
	if err != nil || !slices.Equal(got.At, p.At) || got.Keep != 7 {
		t.Errorf("get: %+v %v", got, err)
	}
	if _, err := Get(ctx, r, "hourly"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get a missing policy: %v", err)
	}
	all, err := List(ctx, r)
	if err != nil || len(all) != 2 || all[0].Name != "nightly" || all[1].Name != "weekly" {
		t.Errorf("list: %+v %v", all, err)
	}

	before, _ := r.Volume(ctx, "a")
	for _, v := range []string{"a", "b"} {
		if err := Apply(ctx, r, "nightly", v); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := r.Volume(ctx, "a")
	if after.Policy != "nightly" || after.PolicyApplied.IsZero() || after.ID != before.ID || after.NextSeq != before.NextSeq || after.Kind != before.Kind {
		t.Errorf("volume a after apply: %+v (before %+v)", after, before)
	}
	if err := Apply(ctx, r, "hourly", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("apply a missing policy: %v", err)
	}
	if err := Apply(ctx, r, "nightly", "nosuch"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("apply to a missing volume: %v", err)
	}

	detached, err := Remove(ctx, r, "nightly")
	if err != nil || !slices.Equal(detached, []string{"a", "b"}) {
		t.Errorf("remove: %v %v", detached, err)
	}
	if v, _ := r.Volume(ctx, "b"); v.Policy != "" {
		t.Errorf("volume b keeps the removed policy %q", v.Policy)
	}
	if all, _ := List(ctx, r); len(all) != 1 {
		t.Errorf("after remove: %+v", all)
	}
	if _, err := Remove(ctx, r, "nightly"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
}

// TestPolicyImageRefused: an image's volume takes no policy.
func TestPolicyImageRefused(t *testing.T) {
	r := storetest.Repo(t)
	ctx := context.Background()
	if _, err := Create(ctx, r, Policy{Name: "p", At: []string{"01:00"}, Forever: true}); err != nil {
		t.Fatal(err)
	}
	w, err := images.Begin(ctx, r, "img", images.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, storetest.PutRoot(t, w), store.SnapshotStats{}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, r, "p", ".image/img"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("policy applied to an image: %v", err)
	}
}

// TestValidate: what a policy must say, each refused with a reason.
func TestValidate(t *testing.T) {
	for _, p := range []Policy{
		{Name: "", At: []string{"01:00"}, Forever: true},
		{Name: "-x", At: []string{"01:00"}, Forever: true},
		{Name: "p", Forever: true},
		{Name: "p", At: []string{"24:00"}, Forever: true},
		{Name: "p", At: []string{"1:00"}, Forever: true},
		{Name: "p", At: []string{"01:00"}, Weekdays: []string{"someday"}, Forever: true},
		{Name: "p", At: []string{"01:00"}, Weekdays: []string{"mond"}, Forever: true},
		{Name: "p", At: []string{"01:00"}},
		{Name: "p", At: []string{"01:00"}, Keep: 3, Forever: true},
		{Name: "p", At: []string{"01:00"}, RetainDays: MaxRetainDays + 1},
		{Name: "p", At: []string{"01:00"}, Keep: -1},
	} {
		if err := p.Validate(); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%+v: %v", p, err)
		}
	}
	p := Policy{Name: "p", At: []string{"01:00"}, Keep: -3}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "--keep -3: give a positive number") {
		t.Errorf("--keep -3: %v", err)
	}
}

// TestRetentionCutoff: calendar days across a DST change; no age limit
// for keep, forever, or a day count out of range.
func TestRetentionCutoff(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip(err)
	}
	now := time.Date(2026, 3, 30, 12, 0, 0, 0, loc) // the day after DST began
	cut, ok := (&Policy{RetainDays: 2}).RetentionCutoff(now)
	if want := time.Date(2026, 3, 28, 12, 0, 0, 0, loc); !ok || !cut.Equal(want) {
		t.Errorf("cutoff %v %v, want %v", cut, ok, want)
	}
	for _, p := range []Policy{{Keep: 3}, {Forever: true}, {RetainDays: MaxRetainDays + 1}} {
		if _, ok := p.RetentionCutoff(now); ok {
			t.Errorf("%+v has an age limit", p)
		}
	}
}

// TestRetentionEveryDayCount: for every --retain-days accepted, at a fixed
// time (a DST day in New York, and in UTC), the cut-off is before now, a
// snapshot younger than that many days is kept and an older one goes, and
// the newest stays.
func TestRetentionEveryDayCount(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{time.Date(2027, 3, 14, 12, 0, 0, 0, ny), time.Date(2027, 11, 7, 0, 30, 0, 0, time.UTC)} {
		for days := MinRetainDays; days <= MaxRetainDays; days++ {
			p := &Policy{RetainDays: days}
			cutoff, ok := p.RetentionCutoff(now)
			if !ok || !cutoff.Before(now) {
				t.Fatalf("%d days at %v: cut-off %v, %v; want before now", days, now, cutoff, ok)
			}
			// A calendar day is 23 to 25 hours: two hours either side of
			// days*24h is inside or outside, whatever DST did meanwhile.
			span := time.Duration(days) * 24 * time.Hour
			old := store.Snapshot{Name: "old", Time: now.Add(-span - 2*time.Hour)}
			young := store.Snapshot{Name: "young", Time: now.Add(-span + 2*time.Hour)}
			newest := store.Snapshot{Name: "newest", Time: now.Add(-span - time.Hour)} // old, but the newest
			got := Expired(p, []store.Snapshot{old, young, newest}, now)
			if len(got) != 1 || got[0].Name != "old" {
				t.Fatalf("%d days at %v: pruned %v, want only the older one", days, now, got)
			}
		}
	}
}

// TestPrune: retention deletes the oldest automatic snapshots past the
// policy, never a manual or a held one, and says which it deleted.
func TestPrune(t *testing.T) {
	r := storetest.Repo(t, store.Volume{Name: "v", Source: "/nowhere"})
	ctx := context.Background()
	snap := func(name string, auto bool) {
		storetest.Commit(t, r, "v", store.SnapshotOptions{Name: name, Auto: auto}, func(storetest.Writer) []store.Entry { return nil })
	}
	snap("manual-1", false)
	snap("auto-1", true)
	snap("auto-2", true)
	snap("manual-2", false)
	snap("auto-held", true)
	snap("auto-3", true)
	if _, err := r.HoldSnapshot(ctx, "v", "auto-held", "audit", 0); err != nil {
		t.Fatal(err)
	}
	deleted, err := Prune(ctx, r, &Policy{Name: "p", Keep: 1}, "v", time.Now())
	if err != nil || !slices.Equal(deleted, []string{"auto-1", "auto-2"}) {
		t.Errorf("pruned %v, %v", deleted, err)
	}
	left, _ := r.Snapshots(ctx, "v")
	var names []string
	for _, s := range left {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"manual-1", "manual-2", "auto-held", "auto-3"}) {
		t.Errorf("left %v", names)
	}
	if deleted, err := Prune(ctx, r, &Policy{Name: "p", Forever: true}, "v", time.Now()); err != nil || len(deleted) != 0 {
		t.Errorf("forever pruned %v, %v", deleted, err)
	}
	if _, err := Prune(ctx, r, &Policy{Name: "p", Keep: 1}, "nosuch", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("prune of a missing volume: %v", err)
	}
}

// FuzzParseClock: policy times parse only as valid HH:MM.
func FuzzParseClock(f *testing.F) {
	for _, s := range []string{"00:00", "23:59", "24:00", "7:00", "12:5x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, m, err := ParseClock(s)
		if err != nil {
			return
		}
		if h < 0 || h > 23 || m < 0 || m > 59 || len(s) != 5 {
			t.Fatalf("%q parsed as %d:%d", s, h, m)
		}
	})
}

// TestExplain: every snapshot gets the reason retention keeps it, or when
// it goes; those it says go are those Expired names, held ones excepted.
func TestExplain(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	day := func(d int) time.Time { return now.AddDate(0, 0, -d) }
	snaps := []store.Snapshot{
		{Seq: 1, Name: "manual", Time: day(50)},
		{Seq: 2, Name: "a1", Auto: true, Time: day(40)},
		{Seq: 3, Name: "a2", Auto: true, Time: day(35), Hold: &store.Hold{Reason: "legal"}},
		{Seq: 4, Name: "a3", Auto: true, Time: day(10)},
		{Seq: 5, Name: "a4", Auto: true, Time: day(1)},
	}
	why := func(p *Policy) []string {
		var out []string
		for _, v := range Explain(p, snaps, now) {
			out = append(out, v.Why)
		}
		return out
	}
	keep := why(&Policy{Name: "nightly", Keep: 2})
	want := []string{
		"manual: retention never prunes it",
		"policy nightly keeps the newest 2: this is the 4th; pruned at the next retention run",
		"held: legal",
		"policy nightly keeps the newest 2: this is the 2nd",
		"policy nightly keeps the newest 2: this is the 1st",
	}
	if !slices.Equal(keep, want) {
		t.Errorf("keep 2:\n%q\nwant\n%q", keep, want)
	}
	days := why(&Policy{Name: "monthly", RetainDays: 30})
	want = []string{
		"manual: retention never prunes it",
		"policy monthly keeps 30 days: pruned after 2026-11-25 12:00; pruned at the next retention run",
		"held: legal",
		"policy monthly keeps 30 days: pruned after 2026-12-25 12:00",
		"policy monthly keeps the newest automatic snapshot whatever its age",
	}
	if !slices.Equal(days, want) {
		t.Errorf("30 days:\n%q\nwant\n%q", days, want)
	}
	if got := why(nil)[1]; got != "automatic, but the volume has no policy: nothing prunes it" {
		t.Errorf("no policy: %q", got)
	}
	if got := why(&Policy{Name: "p", Forever: true})[1]; got != "policy p keeps automatic snapshots until deleted" {
		t.Errorf("forever: %q", got)
	}
	for i, o := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 112: "112th"} {
		if ordinal(i) != o {
			t.Errorf("ordinal(%d) = %q", i, ordinal(i))
		}
	}
}
