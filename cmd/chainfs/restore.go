package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	pathpkg "path"
	"path/filepath"
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
		Action: request(parseRestore),
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
	Symlinks uint64 `json:"symlinks"`
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

// restoreOp writes a snapshot, a directory or a file of it back to disk.
type restoreOp struct {
	snapshotRef
	Path   string `json:"path,omitempty"` // in the snapshot; "" for all of it
	Target string `json:"target"`
	// Overwrite is never, if-changed or always.
	Overwrite string `json:"overwrite"`
	Delete    bool   `json:"delete,omitempty"`
	NoOwners  bool   `json:"no_owners,omitempty"`
}

// parseOverwrite reads --overwrite.
func parseOverwrite(s string) (restore.Overwrite, error) {
	o, err := restore.ParseOverwrite(s)
	if err != nil {
		return o, usagef("--overwrite takes never, if-changed or always, not %q", s)
	}
	return o, nil
}

func parseRestore(c *cli.Context) (operation, error) {
	// First: --overwrite was a switch once, and a bare one now takes the
	// next argument as its value, which leaves one argument too few.
	if _, err := parseOverwrite(c.String("overwrite")); err != nil {
		return nil, err
	}
	if err := wantArgs(c, 2, 2); err != nil {
		return nil, err
	}
	volume, snap, path, err := parseSnapshotPath(c.Args().Get(0), true)
	if err != nil {
		return nil, err
	}
	target, err := filepath.Abs(c.Args().Get(1))
	if err != nil {
		return nil, err
	}
	return &restoreOp{snapshotRef: snapshotRef{volume, snap}, Path: path, Target: target,
		Overwrite: c.String("overwrite"), Delete: c.Bool("delete"), NoOwners: c.Bool("no-owners")}, nil
}

func (o *restoreOp) run(ctx context.Context, e *env) error {
	overwrite, err := parseOverwrite(o.Overwrite)
	if err != nil {
		return err
	}
	if err := needAbsolute("target", o.Target); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	volume, path, target, r := o.Volume, o.Path, o.Target, e.repo
	snap, err := r.Snapshot(ctx, volume, o.Snapshot)
	if err != nil {
		return err
	}
	entry, err := store.Lookup(ctx, r, &snap.RootDir, path)
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
	if o.Delete && (entry.Type != store.TypeDir || dev != nil) {
		return usagef("--delete removes from a directory what the snapshot does not hold; %s/%s/%s to %s is no directory restore",
			volume, snap.Name, path, target)
	}
	opts := restore.Options{Overwrite: overwrite, Delete: o.Delete, Progress: new(restore.Progress), Logger: e.log}
	if opts.Delete {
		if opts.Spare, err = spareFromDelete(ctx, e, volume, path); err != nil {
			return err
		}
	}
	if o.NoOwners {
		no := false
		opts.Owners = &no
	}
	bar := e.progress("restore", func() (uint64, uint64) {
		return opts.Progress.Bytes.Load(), opts.Progress.ExpectedSize.Load()
	})
	start := time.Now()
	var res *restore.Result
	if dev != nil {
		var file *store.Entry
		if file, err = diskFile(ctx, r, snap, path); err == nil {
			res, err = restore.Device(ctx, r, file, dev, opts)
		}
	} else {
		res, err = restore.Restore(ctx, r, snap, path, target, opts)
	}
	bar.finish()
	if err != nil {
		return err
	}
	dirs := res.Dirs
	if entry.Type == store.TypeDir {
		dirs-- // the top, which a snapshot counts too
	}
	if res.Files+dirs+res.Symlinks+res.Others+res.Unchanged+res.Deleted == 0 {
		// Nothing was written: a failure, not a restore with gaps.
		switch {
		case len(res.Problems) > 0:
			return errors.New(res.Problems[0].String())
		case res.Existing > 0 && entry.Type != store.TypeDir:
			return fmt.Errorf("restore %s/%s/%s to %s: exists (use --overwrite if-changed|always to replace it)", volume, snap.Name, path, target)
		}
	}
	out := restoreResult{Volume: volume, Snapshot: snap.Name, Path: path, Target: target, Files: res.Files,
		Dirs: res.Dirs, Symlinks: res.Symlinks, Others: res.Others, Bytes: res.Bytes, Existing: res.Existing, Unchanged: res.Unchanged,
		Deleted: res.Deleted, Problems: []string{}, Duration: time.Since(start)}
	for _, p := range res.Problems {
		out.Problems = append(out.Problems, p.String())
	}
	err = e.output(out, func() {
		for _, p := range out.Problems {
			fmt.Fprintln(e.stderr, "error:", p)
		}
		what := volume + "/" + snap.Name
		if path != "" {
			what += "/" + path
		}
		if res.Existing > 0 && len(res.Problems) > 0 {
			// Else it is the command's closing line.
			fmt.Fprintln(e.stderr, leftAsWere(res.Existing))
		}
		fmt.Fprintf(e.stdout, "restored %s to %s: %s, %s, %s, %d other; %s in %s\n", what, target,
			count(res.Files, "file"), count(res.Dirs, "directory"), count(res.Symlinks, "symlink"), res.Others, size(res.Bytes),
			out.Duration.Round(time.Millisecond))
		if res.Unchanged+res.Deleted+res.Spared > 0 {
			fmt.Fprintf(e.stdout, "  %d unchanged (not rewritten), %d deleted (not in the snapshot)", res.Unchanged, res.Deleted)
			if res.Spared > 0 {
				fmt.Fprintf(e.stdout, ", %d kept although not in it (excluded from the volume's snapshots, the repository, or on another file system)", res.Spared)
			}
			fmt.Fprintln(e.stdout)
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
}

// spareFromDelete is what restore --delete leaves although the snapshot
// does not hold it, because snapshots of the volume leave it out on
// purpose: what the volume excludes (matched from the volume's root, so
// below path), the repository itself and the daemon's mount. A roll-back
// of a source into itself must not delete its own repository.
func spareFromDelete(ctx context.Context, e *env, volume, path string) (func(string, *unix.Stat_t) bool, error) {
	v, err := e.repo.Volume(ctx, volume)
	if err != nil {
		return nil, err
	}
	excl, err := ignore.Compile(v.Excludes)
	if err != nil {
		return nil, fmt.Errorf("volume %s: excludes: %w", volume, err)
	}
	left := map[[2]uint64]bool{}
	dirs := []string{e.repo.Info().Dir}
	if e.mount != "" {
		dirs = append(dirs, e.mount)
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
