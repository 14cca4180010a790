package main

import (
	"fmt"
	"time"

	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "write a snapshot, a directory or a file of it back to disk",
		ArgsUsage: "VOLUME/SNAPSHOT[/PATH] TARGET",
		Description: "A directory is restored into TARGET (created if missing). A file becomes TARGET,\n" +
			"or TARGET/NAME when TARGET is a directory. SNAPSHOT may be 'latest'.\n" +
			"Existing files are never replaced without --overwrite.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "overwrite", Usage: "replace existing files"},
			&cli.BoolFlag{Name: "no-owners", Usage: "do not restore owners (they are restored when run as root)"},
			jsonFlag,
		},
		Action: restoreAction,
	}
}

// restoreResult is what restore reports.
type restoreResult struct {
	Volume   string        `json:"volume"`
	Snapshot string        `json:"snapshot"`
	Path     string        `json:"path"`
	Target   string        `json:"target"`
	Files    uint64        `json:"files"`
	Dirs     uint64        `json:"dirs"`
	Others   uint64        `json:"others"`
	Bytes    uint64        `json:"bytes"`
	Problems []string      `json:"problems"`
	Duration time.Duration `json:"duration_ns"`
}

func restoreAction(c *cli.Context) error {
	if err := wantArgs(c, 2, 2); err != nil {
		return err
	}
	volume, snapName, path, err := parseSnapshotPath(c.Args().Get(0), true)
	if err != nil {
		return err
	}
	target, err := absPath(c, c.Args().Get(1))
	if err != nil {
		return err
	}
	return withRepo(c, func(r *store.Repo) error {
		snap, err := r.Snapshot(c.Context, volume, snapName)
		if err != nil {
			return err
		}
		opts := restore.Options{Overwrite: c.Bool("overwrite"), Progress: new(restore.Progress), Logger: logger(c)}
		if c.Bool("no-owners") {
			no := false
			opts.Owners = &no
		}
		bar := startProgress(c, "restore", func() (uint64, uint64) {
			return opts.Progress.Bytes.Load(), opts.Progress.ExpectedSize.Load()
		})
		start := time.Now()
		res, err := restore.Restore(c.Context, r, snap, path, target, opts)
		bar.finish()
		if err != nil {
			return err
		}
		out := restoreResult{Volume: volume, Snapshot: snap.Name, Path: path, Target: target, Files: res.Files,
			Dirs: res.Dirs, Others: res.Others, Bytes: res.Bytes, Problems: []string{}, Duration: time.Since(start)}
		for _, p := range res.Problems {
			out.Problems = append(out.Problems, p.String())
		}
		err = output(c, out, func() {
			for _, p := range out.Problems {
				fmt.Fprintln(c.App.ErrWriter, "error:", p)
			}
			what := volume + "/" + snap.Name
			if path != "" {
				what += "/" + path
			}
			fmt.Fprintf(c.App.Writer, "restored %s to %s: %s, %s, %d other; %s in %s\n", what, target,
				count(res.Files, "file"), count(res.Dirs, "directory"), res.Others, size(res.Bytes), out.Duration.Round(time.Millisecond))
		})
		if err == nil && len(res.Problems) > 0 {
			err = partialError{len(res.Problems)}
		}
		return err
	})
}
