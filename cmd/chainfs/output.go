package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
)

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts instead of a table"}

// output prints v as JSON with --json, else calls human.
func (e *env) output(v any, human func()) error {
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human()
	return nil
}

// table writes aligned columns.
type table struct{ w *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{w: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cols ...string) { fmt.Fprintln(t.w, strings.Join(cols, "\t")) }
func (t *table) flush()             { t.w.Flush() }

// size formats a byte count in binary units.
func size(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseSize reads a size: bytes ("262144") or a number with a unit,
// every unit binary as the rest of chainfs counts ("256K", "256KB" and
// "256KiB" are 262,144 bytes; "1.5G", "1T"). Zero is a size: callers that
// cannot take it say so.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	// go-humanize reads K and KB as 1,000: the unit is rewritten as the
	// binary one it means here.
	if i := strings.IndexFunc(t, unicode.IsLetter); i >= 0 {
		unit := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(t[i:]), "B"), "I")
		switch {
		case unit == "":
			t = t[:i]
		case len(unit) == 1 && strings.Contains("KMGTPE", unit):
			t = t[:i] + unit + "iB"
		default:
			t = "?"
		}
	}
	n, err := humanize.ParseBytes(t)
	if err != nil || strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("size %q: want a number of bytes, or with a unit: K, M, G, T, P or E (binary: 1K = 1,024), as in 256K or 1.5G", s)
	}
	return n, nil
}

func formatTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

// progress shows a bar on stderr while a long job runs, when the caller's
// stderr is a terminal (also through the daemon, which draws it into the
// stream it sends back). read returns the current and the expected total
// (0: unknown).
type progress struct {
	w    io.Writer
	bar  *progressbar.ProgressBar
	stop chan struct{}
	done chan struct{}
}

func (e *env) progress(desc string, read func() (cur, total uint64)) *progress {
	if !e.caller.StderrTTY {
		return nil
	}
	_, total := read()
	p := &progress{w: e.stderr, stop: make(chan struct{}), done: make(chan struct{}), bar: newBar(e.stderr, desc, total)}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				cur, now := read()
				if total == 0 && now > 0 {
					// The total became known (an export walks the trees
					// first): the spinner gives way to a bar.
					p.bar.Clear()
					p.bar, total = newBar(p.w, desc, now), now
				}
				if total > 0 && cur > total {
					p.bar.ChangeMax64(int64(cur))
				}
				if total == 0 {
					p.bar.Describe(desc + ": " + size(cur))
				}
				p.bar.Set64(int64(cur))
			}
		}
	}()
	return p
}

// newBar is a bar towards total bytes, or a spinner when total is 0.
func newBar(w io.Writer, desc string, total uint64) *progressbar.ProgressBar {
	max := int64(total)
	if max == 0 {
		max = -1
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		// A rate without a total says little; the description then
		// carries the bytes done.
		progressbar.OptionShowBytes(total > 0),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSpinnerType(14),
	)
}

func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.bar.Clear()
	fmt.Fprint(p.w, "\r\033[K")
}
