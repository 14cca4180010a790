package main

import (
	"context"
	"errors"
	"fmt"
	"os"
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
			"Existing files are never replaced without --overwrite. A block device as TARGET takes a\n" +
			"disk image: the snapshot of a disk volume, or one file of a snapshot, written onto it\n" +
			"whole (holes as zeros); a device in use (mounted) is refused.",
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
		var res *restore.Result
		if isBlockDevice(target) {
			var e *store.Entry
			if e, err = diskFile(c.Context, r, snap, path); err == nil {
				res, err = restore.Device(c.Context, r, e, target, opts)
			}
		} else {
			res, err = restore.Restore(c.Context, r, snap, path, target, opts)
		}
		bar.finish()
		if err != nil {
			return err
		}
		if res.Files+res.Dirs+res.Others == 0 && len(res.Problems) > 0 {
			// Nothing was written: a failure, not a restore with gaps.
			return errors.New(res.Problems[0].String())
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

// isBlockDevice reports whether path is a block device (following links:
// /dev/disk/by-id/... are links).
func isBlockDevice(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0
}

// diskFile is what a block device takes from a snapshot: the file path
// names, or, for the whole snapshot, its only file (a disk volume's).
func diskFile(ctx context.Context, r *store.Repo, snap *store.Snapshot, path string) (*store.Entry, error) {
	e, err := r.Lookup(ctx, snap, path)
	if err != nil {
		return nil, err
	}
	if e.Type == store.TypeDir {
		entries, err := r.Tree(ctx, e.Subtree)
		if err != nil {
			return nil, err
		}
		if len(entries) != 1 || entries[0].Type != store.TypeRegular {
			return nil, fmt.Errorf("%s/%s/%s is a directory tree: a block device takes a disk image, one file", snap.Volume, snap.Name, path)
		}
		e = &entries[0]
	}
	return e, nil
}
