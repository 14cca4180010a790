// Package policy keeps the automatic-snapshot policies: their schedule and
// retention rules, stored as records of the repository, and which volume
// has which. The daemon's scheduler runs them.
package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
)

// Policy is an automatic-snapshot schedule: local times of day, optional
// weekdays, and how long automatic snapshots are kept.
type Policy struct {
	Name string `json:"name"`
	// At are local wall-clock times, "HH:MM", sorted.
	At []string `json:"at"`
	// Weekdays limits the days ("mon" ... "sun"); empty is every day.
	Weekdays []string `json:"weekdays,omitempty"`
	// Exactly one of RetainDays, Keep and Forever is set.
	RetainDays int       `json:"retain_days,omitempty"`
	Keep       int       `json:"keep,omitempty"`
	Forever    bool      `json:"forever,omitempty"`
	Created    time.Time `json:"created"`
}

// The range of RetainDays, the cloud's: 65,536 days is 179 years; longer
// is --forever. Day counts are bounded so that dates stay exact (see
// RetentionCutoff).
const (
	MinRetainDays = 1
	MaxRetainDays = 65536
)

var weekdayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseClock reads "HH:MM".
func ParseClock(s string) (hour, min int, err error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, 0, fmt.Errorf("time %q: want HH:MM: %w", s, store.ErrInvalid)
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &hour, &min); err != nil || hour > 23 || min > 59 || hour < 0 || min < 0 {
		return 0, 0, fmt.Errorf("time %q: want HH:MM from 00:00 to 23:59: %w", s, store.ErrInvalid)
	}
	return hour, min, nil
}

// Validate checks a policy and puts it in canonical form.
func (p *Policy) Validate() error {
	if !store.ValidLabel(p.Name) {
		return fmt.Errorf("policy name %q: use letters, digits, '.', '_', '-': %w", p.Name, store.ErrInvalid)
	}
	if len(p.At) == 0 {
		return fmt.Errorf("policy %s: at least one time (--at HH:MM): %w", p.Name, store.ErrInvalid)
	}
	seen := map[string]bool{}
	var at []string
	for _, t := range p.At {
		if _, _, err := ParseClock(t); err != nil {
			return err
		}
		if !seen[t] {
			seen[t] = true
			at = append(at, t)
		}
	}
	slices.Sort(at)
	p.At = at
	for i, d := range p.Weekdays {
		short := strings.ToLower(strings.TrimSpace(d))
		for _, w := range weekdayNames {
			if short == strings.ToLower(w.String()) {
				short = short[:3] // "Monday" is "mon"
			}
		}
		if _, ok := weekdayNames[short]; !ok {
			return fmt.Errorf("weekday %q: want mon, tue, wed, thu, fri, sat or sun (or the full name): %w", d, store.ErrInvalid)
		}
		p.Weekdays[i] = short
	}
	if p.RetainDays != 0 && (p.RetainDays < MinRetainDays || p.RetainDays > MaxRetainDays) {
		return fmt.Errorf("policy %s: --retain-days %d: give %d to %d days, or --forever to keep automatic snapshots until deleted: %w",
			p.Name, p.RetainDays, MinRetainDays, MaxRetainDays, store.ErrInvalid)
	}
	n := 0
	for _, set := range []bool{p.RetainDays > 0, p.Keep > 0, p.Forever} {
		if set {
			n++
		}
	}
	if p.Keep < 0 {
		return fmt.Errorf("policy %s: --keep %d: give a positive number of snapshots to keep: %w", p.Name, p.Keep, store.ErrInvalid)
	}
	if n != 1 {
		return fmt.Errorf("policy %s: give exactly one of --retain-days N, --keep N or --forever: %w", p.Name, store.ErrInvalid)
	}
	return nil
}

// RetentionCutoff is the instant before which p's automatic snapshots
// expire, given the time now (in the location the policy's times are read
// in): RetainDays calendar days before now, so a day across a DST change
// is that day's length, not 24 hours. ok is false when p has no age limit,
// and also for a stored RetainDays outside the range Validate accepts
// (older versions accepted any): such a policy never prunes by age, since
// pruning more than the user meant loses data and pruning less does not.
func (p *Policy) RetentionCutoff(now time.Time) (cutoff time.Time, ok bool) {
	if p.Forever || p.RetainDays < MinRetainDays || p.RetainDays > MaxRetainDays {
		return time.Time{}, false
	}
	return now.AddDate(0, 0, -p.RetainDays), true
}

// RunsOn reports whether the policy runs on a weekday.
func (p *Policy) RunsOn(d time.Weekday) bool {
	if len(p.Weekdays) == 0 {
		return true
	}
	for _, w := range p.Weekdays {
		if weekdayNames[w] == d {
			return true
		}
	}
	return false
}

func records(r *store.Repo) store.Records { return r.Records(store.PolicyRecords) }

// Create records a new policy.
func Create(ctx context.Context, r *store.Repo, p Policy) (*Policy, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p.Created = time.Now().UTC()
	if err := records(r).Create(ctx, p.Name, &p); err != nil {
		return nil, fmt.Errorf("policy %s: %w", p.Name, err)
	}
	return &p, nil
}

// Get returns a policy by name.
func Get(ctx context.Context, r *store.Repo, name string) (*Policy, error) {
	var p Policy
	if err := records(r).Get(ctx, name, &p); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	return &p, nil
}

// List lists the policies in name order.
func List(ctx context.Context, r *store.Repo) ([]Policy, error) {
	return store.ListRecords[Policy](ctx, records(r))
}

// Apply makes policy (empty: none) the volume's schedule.
func Apply(ctx context.Context, r *store.Repo, policy, volume string) error {
	if policy != "" {
		if _, err := Get(ctx, r, policy); err != nil {
			return err
		}
	}
	return r.UpdateVolume(ctx, volume, func(v *store.Volume) error {
		v.Policy = policy
		v.PolicyApplied = time.Now().UTC()
		return nil
	})
}

// Remove deletes a policy and detaches it from the volumes that have it;
// it returns those volumes.
func Remove(ctx context.Context, r *store.Repo, name string) ([]string, error) {
	if _, err := Get(ctx, r, name); err != nil {
		return nil, err
	}
	vols, err := r.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	var detached []string
	for _, v := range vols {
		if v.Policy == name {
			if err := Apply(ctx, r, "", v.Name); err != nil {
				return nil, err
			}
			detached = append(detached, v.Name)
		}
	}
	return detached, records(r).Delete(ctx, name)
}

// Expired is which of autos (a volume's automatic snapshots, oldest
// first) p's retention deletes at now: past Keep, or older than
// RetainDays calendar days in now's location, never the newest.
func Expired(p *Policy, autos []store.Snapshot, now time.Time) []store.Snapshot {
	if p.Keep > 0 {
		if len(autos) > p.Keep {
			return autos[:len(autos)-p.Keep]
		}
		return nil
	}
	cutoff, ok := p.RetentionCutoff(now)
	if !ok {
		return nil
	}
	var doomed []store.Snapshot
	for _, sn := range autos[:max(len(autos)-1, 0)] { // never the newest
		if sn.Time.Before(cutoff) {
			doomed = append(doomed, sn)
		}
	}
	return doomed
}

// Prune deletes the automatic snapshots of volume that p's retention
// lets go at now (Expired), into the trash while the repository keeps
// one (store.DiscardSnapshot), and returns their names. Manual snapshots
// are never touched, nor held ones: a held snapshot the rule would delete
// is passed over. A snapshot that cannot be deleted is passed over
// and named in the error; the rest go.
func Prune(ctx context.Context, r *store.Repo, p *Policy, volume string, now time.Time) ([]string, error) {
	if p.Forever {
		return nil, nil
	}
	snaps, err := r.Snapshots(ctx, volume)
	if err != nil {
		return nil, fmt.Errorf("retention of %s: %w", volume, err)
	}
	var autos []store.Snapshot
	for _, sn := range snaps {
		if sn.Auto {
			autos = append(autos, sn)
		}
	}
	var deleted []string
	var errs []error
	for _, sn := range Expired(p, autos, now) {
		if sn.Hold != nil {
			continue
		}
		by := store.Trashed{By: "policy " + p.Name}
		if _, err := r.DiscardSnapshot(ctx, volume, sn.Name, by); errors.Is(err, store.ErrHeld) {
			continue // held since the listing
		} else if err != nil {
			errs = append(errs, fmt.Errorf("delete %s/%s: %w", volume, sn.Name, err))
			continue
		}
		deleted = append(deleted, sn.Name)
	}
	return deleted, errors.Join(errs...)
}

// Verdict is why retention keeps a snapshot, or when it lets it go.
type Verdict struct {
	Why string `json:"why"`
	// Pruned says the next retention run deletes it.
	Pruned bool `json:"pruned,omitempty"`
	// Until is when an age rule lets it go; zero when none does.
	Until time.Time `json:"until,omitzero"`
}

// Explain says, for each of a volume's snapshots (oldest first), what
// retention makes of it at now: p is the volume's policy, nil for none.
// It follows Expired and Prune: held and manual snapshots stay, and an
// automatic one goes when Expired names it.
func Explain(p *Policy, snaps []store.Snapshot, now time.Time) []Verdict {
	var autos []store.Snapshot
	for _, sn := range snaps {
		if sn.Auto {
			autos = append(autos, sn)
		}
	}
	expired := map[uint64]bool{}
	if p != nil && !p.Forever {
		for _, sn := range Expired(p, autos, now) {
			expired[sn.Seq] = true
		}
	}
	out := make([]Verdict, len(snaps))
	newer := len(autos) // automatic snapshots newer than this one, once counted down
	for i, sn := range snaps {
		v := &out[i]
		if sn.Auto {
			newer--
		}
		switch {
		case sn.Hold != nil:
			v.Why = "held: " + sn.Hold.Reason
		case !sn.Auto:
			v.Why = "manual: retention never prunes it"
		case p == nil:
			v.Why = "automatic, but the volume has no policy: nothing prunes it"
		case p.Forever:
			v.Why = fmt.Sprintf("policy %s keeps automatic snapshots until deleted", p.Name)
		case p.Keep > 0:
			v.Why = fmt.Sprintf("policy %s keeps the newest %d: this is the %s", p.Name, p.Keep, ordinal(newer+1))
			v.Pruned = expired[sn.Seq]
		default:
			_, ok := p.RetentionCutoff(now)
			switch {
			case !ok:
				v.Why = fmt.Sprintf("policy %s's --retain-days %d is out of range: nothing pruned; recreate the policy", p.Name, p.RetainDays)
			case newer == 0:
				v.Why = fmt.Sprintf("policy %s keeps the newest automatic snapshot whatever its age", p.Name)
			default:
				v.Until = sn.Time.In(now.Location()).AddDate(0, 0, p.RetainDays)
				v.Why = fmt.Sprintf("policy %s keeps %s: pruned after %s", p.Name, plural(p.RetainDays, "day"), v.Until.Format("2006-01-02 15:04"))
				v.Pruned = expired[sn.Seq]
			}
		}
		if v.Pruned {
			v.Why += "; pruned at the next retention run"
		}
	}
	return out
}

// ordinal is "1st", "2nd", "3rd", "4th", "11th", "21st".
func ordinal(n int) string {
	suffix := "th"
	if n%100 < 11 || n%100 > 13 {
		switch n % 10 {
		case 1:
			suffix = "st"
		case 2:
			suffix = "nd"
		case 3:
			suffix = "rd"
		}
	}
	return fmt.Sprint(n) + suffix
}

// plural is "1 day", "30 days".
func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// ExplainVolume is Explain for a volume's snapshots (oldest first) under
// the policy the volume has now.
func ExplainVolume(ctx context.Context, r *store.Repo, v *store.Volume, snaps []store.Snapshot, now time.Time) ([]Verdict, error) {
	var p *Policy
	if v.Policy != "" {
		var err error
		if p, err = Get(ctx, r, v.Policy); err != nil {
			return nil, err
		}
	}
	return Explain(p, snaps, now), nil
}
