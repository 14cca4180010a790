package main

import (
	"context"
	"fmt"

	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

func compressionCommand() *cli.Command {
	return &cli.Command{
		Name:      "compression",
		Usage:     "show, or set, what snapshots do with the blocks they store: off, fast or max",
		ArgsUsage: "[off|fast|max|repository]",
		Description: "Without --volume it is the repository's; with it, that volume's own, where 'repository'\n" +
			"makes the volume follow the repository's again. A block is kept compressed only where zstd\n" +
			"saves at least an eighth of it. A change applies to blocks stored from then on.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "volume", Usage: "the volume's own compression, not the repository's"},
			jsonFlag,
		},
		Action: request(func(c *cli.Context) (operation, error) {
			if err := wantArgs(c, 0, 1); err != nil {
				return nil, err
			}
			o := &compressionOp{Volume: c.String("volume")}
			if mode := c.Args().First(); mode == "repository" {
				if o.Volume == "" {
					return nil, usagef("'repository' is a volume's setting: name the volume with --volume")
				}
				o.Follow = true
			} else if mode != "" {
				comp, err := store.ParseCompression(mode)
				if err != nil {
					return nil, usageError{err}
				}
				o.Mode = comp
			}
			return o, nil
		}),
	}
}

// compressionOp shows or sets the repository's or a volume's compression.
type compressionOp struct {
	Volume string `json:"volume,omitempty"`
	// Mode, when set, is the new setting; Follow sets a volume back to
	// the repository's. Neither: the setting is only shown.
	Mode   store.Compression `json:"mode,omitempty"`
	Follow bool              `json:"follow,omitempty"`
}

// compressionShown is what compression reports.
type compressionShown struct {
	Volume string `json:"volume,omitempty"`
	// Compression is what applies; Own is the volume's own, "" when it
	// follows the repository's.
	Compression store.Compression `json:"compression"`
	Own         store.Compression `json:"own,omitempty"`
}

func (o *compressionOp) run(ctx context.Context, e *env) error {
	if o.Mode != "" || o.Follow {
		// The store checks the mode, which a request brings as JSON.
		var err error
		switch {
		case o.Volume == "":
			err = e.repo.SetCompression(ctx, o.Mode)
		case o.Follow:
			err = e.repo.UpdateVolume(ctx, o.Volume, func(v *store.Volume) error { v.Compression = ""; return nil })
		default:
			err = e.repo.UpdateVolume(ctx, o.Volume, func(v *store.Volume) error { v.Compression = o.Mode; return nil })
		}
		if err != nil {
			return err
		}
	}
	repo, err := e.repo.Compression(ctx)
	if err != nil {
		return err
	}
	shown := compressionShown{Volume: o.Volume, Compression: repo}
	if o.Volume != "" {
		v, err := e.repo.Volume(ctx, o.Volume)
		if err != nil {
			return err
		}
		if shown.Own = v.Compression; shown.Own != "" {
			shown.Compression = shown.Own
		}
	}
	return e.output(shown, func() {
		switch {
		case o.Volume == "":
			fmt.Fprintf(e.stdout, "the repository's compression: %s\n", shown.Compression)
		case shown.Own == "":
			fmt.Fprintf(e.stdout, "volume %s's compression: %s, the repository's\n", o.Volume, shown.Compression)
		default:
			fmt.Fprintf(e.stdout, "volume %s's compression: %s, its own\n", o.Volume, shown.Compression)
		}
	})
}
