package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/report"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func chainCommand() *cli.Command {
	return &cli.Command{
		Name:      "chain",
		Usage:     "draw a volume's chain: for each snapshot, the data it holds itself and what links to earlier ones",
		ArgsUsage: "VOLUME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "svg", Usage: "also write the picture as SVG to `FILE`"},
			jsonFlag,
		},
		Action: request(func(c *cli.Context) (operation, error) {
			if err := wantArgs(c, 1, 1); err != nil {
				return nil, err
			}
			o := &chainOp{Volume: c.Args().First()}
			if path := c.String("svg"); path != "" {
				var err error
				if o.SVG, err = filepath.Abs(path); err != nil {
					return nil, err
				}
			}
			return o, nil
		}),
	}
}

// chainOp draws a volume's chain, as text and, if SVG names a file, as
// a picture there.
type chainOp struct {
	Volume string `json:"volume"`
	SVG    string `json:"svg,omitempty"`
}

func (o *chainOp) run(ctx context.Context, e *env) error {
	rows, err := report.ChainMap(ctx, e.repo, o.Volume)
	if err != nil {
		return err
	}
	if o.SVG != "" {
		if err := needAbsolute("--svg", o.SVG); err != nil {
			return err
		}
		if err := writeSVG(o.SVG, chainSVG(o.Volume, rows)); err != nil {
			return err
		}
	}
	return e.output(rows, func() { printChain(e.stdout, rows) })
}

// writeSVG writes a picture to path as an export is written
// (imagefile.WriteFile: through its directory held, under a new name
// renamed into place), and only where path is new or a regular file: the
// daemon that writes it may be root, and a symlink or a fifo there is
// refused, not replaced.
func writeSVG(path, svg string) error {
	dir, err := restore.OpenDir(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), filepath.Base(path), &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("--svg %s: not a regular file", path)
	}
	err = imagefile.WriteFile(dir, filepath.Base(path), 0o644, true, func(f *os.File) error {
		_, err := f.WriteString(svg)
		return err
	})
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	return nil
}

// holders lists a row's holders, the snapshot itself first, then oldest first.
func holders(row report.ChainRow) []uint64 {
	var hs []uint64
	for h := range row.Held {
		if h != row.Seq {
			hs = append(hs, h)
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	if _, ok := row.Held[row.Seq]; ok {
		hs = append([]uint64{row.Seq}, hs...)
	}
	return hs
}

// barChars shade the segments of a terminal bar: the snapshot's own data
// is solid, links to earlier snapshots lighter, cycling.
var barChars = []rune{'█', '▓', '▒', '░', '#', '=', '+', ':'}

func printChain(w io.Writer, rows []report.ChainRow) {
	names := map[uint64]string{}
	var max uint64
	for _, r := range rows {
		names[r.Seq] = rowLabel(r)
		max = maxU(max, r.Total)
	}
	const width = 40
	for _, r := range rows {
		var bar strings.Builder
		var parts []string
		for i, h := range holders(r) {
			n := int(float64(r.Held[h]) / float64(maxU(max, 1)) * width)
			if r.Held[h] > 0 && n == 0 {
				n = 1
			}
			bar.WriteString(strings.Repeat(string(barChars[i%len(barChars)]), n))
			if h == r.Seq {
				parts = append(parts, size(r.Held[h])+" held itself")
			} else {
				parts = append(parts, size(r.Held[h])+" → "+names[h])
			}
		}
		fmt.Fprintf(w, "%-20s %-*s %s: %s\n", rowLabel(r), width, bar.String(), size(r.Total), strings.Join(parts, ", "))
	}
}

// rowLabel names a row's snapshot, saying when it is in the trash.
func rowLabel(r report.ChainRow) string {
	if r.Trashed {
		return r.Snapshot + " (trash)"
	}
	return r.Snapshot
}

// chainSVG draws the map: one bar per snapshot, a colour per holder.
func chainSVG(volume string, rows []report.ChainRow) string {
	const left, barW, rowH, top = 180, 560, 28, 50
	var max uint64
	order := map[uint64]int{}
	names := map[uint64]string{}
	for i, r := range rows {
		max = maxU(max, r.Total)
		order[r.Seq] = i
		names[r.Seq] = rowLabel(r)
	}
	color := func(seq uint64) string { return fmt.Sprintf("hsl(%d,65%%,55%%)", (order[seq]*47)%360) }
	h := top + len(rows)*rowH + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+barW+260, h)
	fmt.Fprintf(&b, `<text x="10" y="24" font-size="16">chain of volume %s: each bar is a snapshot's data, coloured by the snapshot that holds it</text>`+"\n", html.EscapeString(volume))
	for i, r := range rows {
		y := top + i*rowH
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y+16, html.EscapeString(rowLabel(r)))
		x := float64(left)
		for _, holder := range holders(r) {
			w := float64(r.Held[holder]) / float64(maxU(max, 1)) * barW
			title := size(r.Held[holder]) + " held by " + names[holder]
			stroke := ""
			if holder == r.Seq {
				stroke = ` stroke="black" stroke-width="1.5"`
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="20" fill="%s"%s><title>%s</title></rect>`+"\n",
				x, y, w, color(holder), stroke, html.EscapeString(title))
			x += w
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s, %s new</text>`+"\n", left+barW+10, y+16, size(r.Total), size(r.Held[r.Seq]))
	}
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">outlined: data the snapshot holds itself; other colours link to the snapshot of that colour</text>`+"\n", h-14)
	b.WriteString("</svg>\n")
	return b.String()
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
