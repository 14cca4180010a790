package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	pathpkg "path"
	"strings"
	"time"

	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/fs/source/ignore"
	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "write a snapshot, a directory or a file of it back to disk",
		ArgsUsage: "VOLUME/SNAPSHOT[/PATH] TARGET",
		Description: "A directory is restored into TARGET (created if missing). A file becomes TARGET,\n" +
			"or TARGET/NAME when TARGET is a directory. SNAPSHOT may be 'latest'.\n" +
			"An existing entry is left as it was, and an existing directory keeps its owner, mode,\n" +
			"times and xattrs, unless --overwrite says otherwise: if-changed replaces what differs\n" +
			"from the snapshot (content and metadata; matching files are hashed, not rewritten),\n" +
			"always replaces everything. --delete also removes what the snapshot does not hold:\n" +
			"TARGET becomes the snapshot. A block device as TARGET takes a\n" +
			"disk image: the snapshot of a disk volume, or one file of a snapshot, written onto it\n" +
			"whole (holes as zeros); a device in use (mounted) is refused.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "overwrite", Value: "never", Usage: "what to do with existing entries: never, if-changed or always"},
			&cli.BoolFlag{Name: "delete", Usage: "remove from TARGET what the snapshot does not hold (a directory only)"},
			&cli.BoolFlag{Name: "no-owners", Usage: "do not restore owners (they are restored when run as root)"},
			jsonFlag,
		},
		Action: restoreAction,
	}
}

// restoreResult is what restore reports.
type restoreResult struct {
	Volume   string `json:"volume"`
	Snapshot string `json:"snapshot"`
	Path     string `json:"path"`
	Target   string `json:"target"`
	Files    uint64 `json:"files"`
	Dirs     uint64 `json:"dirs"`
	Others   uint64 `json:"others"`
	Bytes    uint64 `json:"bytes"`
	// Existing entries were left as they were (--overwrite never).
	Existing uint64 `json:"existing"`
	// Unchanged entries already matched (--overwrite if-changed).
	Unchanged uint64 `json:"unchanged"`
	// Deleted entries were not in the snapshot (--delete).
	Deleted  uint64        `json:"deleted"`
	Problems []string      `json:"problems"`
	Duration time.Duration `json:"duration_ns"`
}

func restoreAction(c *cli.Context) error {
	// First: --overwrite was a switch once, and a bare one now takes the
	// next argument as its value, which leaves one argument too few.
	overwrite, err := restore.ParseOverwrite(c.String("overwrite"))
	if err != nil {
		return usagef("--overwrite takes never, if-changed or always, not %q", c.String("overwrite"))
	}
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
		e, err := store.Lookup(c.Context, r, &snap.RootDir, path)
		if err != nil {
			return fmt.Errorf("restore %s/%s/%s: %w", volume, snap.Name, path, err)
		}
		dev, err := restore.FindDevice(target)
		if err != nil {
			return fmt.Errorf("restore to %s: %w", target, err)
		}
		if dev != nil {
			defer dev.Close()
		}
		if c.Bool("delete") && (e.Type != store.TypeDir || dev != nil) {
			return usagef("--delete removes from a directory what the snapshot does not hold; %s/%s/%s to %s is no directory restore",
				volume, snap.Name, path, target)
		}
		opts := restore.Options{Overwrite: overwrite, Delete: c.Bool("delete"), Progress: new(restore.Progress), Logger: logger(c)}
		if opts.Delete {
			if opts.Spare, err = spareFromDelete(c, r, volume, path); err != nil {
				return err
			}
		}
		if c.Bool("no-owners") {
			no := false
			opts.Owners = &no
		}
		bar := startProgress(c, "restore", func() (uint64, uint64) {
			return opts.Progress.Bytes.Load(), opts.Progress.ExpectedSize.Load()
		})
		start := time.Now()
		var res *restore.Result
		if dev != nil {
			var e *store.Entry
			if e, err = diskFile(c.Context, r, snap, path); err == nil {
				res, err = restore.Device(c.Context, r, e, dev, opts)
			}
		} else {
			res, err = restore.Restore(c.Context, r, snap, path, target, opts)
		}
		bar.finish()
		if err != nil {
			return err
		}
		if res.Files+res.Dirs+res.Others+res.Unchanged+res.Deleted == 0 {
			// Nothing was written: a failure, not a restore with gaps.
			switch {
			case len(res.Problems) > 0:
				return errors.New(res.Problems[0].String())
			case res.Existing > 0 && e.Type != store.TypeDir:
				return fmt.Errorf("restore %s/%s/%s to %s: exists (use --overwrite if-changed|always to replace it)", volume, snap.Name, path, target)
			}
		}
		out := restoreResult{Volume: volume, Snapshot: snap.Name, Path: path, Target: target, Files: res.Files,
			Dirs: res.Dirs, Others: res.Others, Bytes: res.Bytes, Existing: res.Existing, Unchanged: res.Unchanged,
			Deleted: res.Deleted, Problems: []string{}, Duration: time.Since(start)}
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
			if res.Existing > 0 && len(res.Problems) > 0 {
				// Else it is the command's closing line.
				fmt.Fprintln(c.App.ErrWriter, leftAsWere(res.Existing))
			}
			fmt.Fprintf(c.App.Writer, "restored %s to %s: %s, %s, %d other; %s in %s\n", what, target,
				count(res.Files, "file"), count(res.Dirs, "directory"), res.Others, size(res.Bytes), out.Duration.Round(time.Millisecond))
			if res.Unchanged+res.Deleted+res.Spared > 0 {
				fmt.Fprintf(c.App.Writer, "  %d unchanged (not rewritten), %d deleted (not in the snapshot)", res.Unchanged, res.Deleted)
				if res.Spared > 0 {
					fmt.Fprintf(c.App.Writer, ", %d kept although not in it (excluded from the volume's snapshots, the repository, or on another file system)", res.Spared)
				}
				fmt.Fprintln(c.App.Writer)
			}
		})
		// Entries left as they were make TARGET differ from the snapshot:
		// done, but not all of it (3), as problems do.
		switch {
		case err != nil:
		case len(res.Problems) > 0:
			err = partialError{n: len(res.Problems)}
		case res.Existing > 0:
			err = partialError{n: int(res.Existing), text: leftAsWere(res.Existing)}
		}
		return err
	})
}

// spareFromDelete is what restore --delete leaves although the snapshot
// does not hold it, because snapshots of the volume leave it out on
// purpose: what the volume excludes (matched from the volume's root, so
// below path), the repository itself and the daemon's mount. A roll-back
// of a source into itself must not delete its own repository.
func spareFromDelete(c *cli.Context, r *store.Repo, volume, path string) (func(string, *unix.Stat_t) bool, error) {
	v, err := r.Volume(c.Context, volume)
	if err != nil {
		return nil, err
	}
	excl, err := ignore.Compile(v.Excludes)
	if err != nil {
		return nil, fmt.Errorf("volume %s: excludes: %w", volume, err)
	}
	left := map[[2]uint64]bool{}
	dirs := []string{r.Info().Dir}
	if m, _ := c.App.Metadata[metaMount].(string); m != "" {
		dirs = append(dirs, m)
	}
	for _, d := range dirs {
		var st unix.Stat_t
		if unix.Stat(d, &st) == nil {
			left[[2]uint64{st.Dev, st.Ino}] = true
		}
	}
	return func(rel string, st *unix.Stat_t) bool {
		return left[[2]uint64{st.Dev, st.Ino}] ||
			excl.Excluded(pathpkg.Join(strings.TrimPrefix(path, "/"), rel), st.Mode&unix.S_IFMT == unix.S_IFDIR)
	}, nil
}

// isBlockDevice reports whether fi, of a file open, is a block device.
func isBlockDevice(fi os.FileInfo) bool {
	return fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// diskFile is what a block device takes from a snapshot: the file path
// names, or, for the whole snapshot, its only file (a disk volume's).
func diskFile(ctx context.Context, r *store.Repo, snap *store.Snapshot, path string) (*store.Entry, error) {
	e, err := store.Lookup(ctx, r, &snap.RootDir, path)
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

// leftAsWere says how many existing entries a restore left alone.
func leftAsWere(n uint64) string {
	return count(n, "existing entry") + " left as " + plural(int(n), "it was", "they were") +
		"; --overwrite if-changed|always replaces them"
}
