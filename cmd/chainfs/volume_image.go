package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/images"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// fromImageResult is what volume add --from-image reports.
type fromImageResult struct {
	Volume   *store.Volume   `json:"volume"`
	Image    string          `json:"image"`
	Snapshot *store.Snapshot `json:"snapshot"`
	Duration time.Duration   `json:"duration_ns"`
}

// otherRegion reads an image reference of the form DIR:NAME, an image of
// another repository: images are used only in their own region, so it
// must be copied here first. It returns the name to look up here: ref
// itself when it names no other repository (image names may hold ':'), or
// NAME when DIR is this repository.
func otherRegion(c *cli.Context, r *store.Repo, ref string) (string, error) {
	i := strings.LastIndex(ref, ":")
	if i <= 0 {
		return ref, nil
	}
	dir, name := ref[:i], ref[i+1:]
	if abs, err := absPath(c, dir); err == nil {
		dir = abs
	}
	info, err := store.ReadInfo(dir)
	switch {
	case err != nil && !filepath.IsAbs(ref[:i]):
		return ref, nil // a name with a colon
	case err != nil:
		return "", usagef("--from-image %s: %s is not a chainfs repository (%v)", ref, dir, err)
	case sameDir(dir, r.Info().Dir):
		return name, nil
	}
	return "", fmt.Errorf("--from-image %s names an image of another repository (%s, region %s), not of this one (%s, region %s); "+
		"images are used only in their own region: copy it here first with 'chainfs --repo %s image copy %s --to-repo %s'",
		ref, dir, info.Region, r.Info().Dir, r.Info().Region, dir, name, r.Info().Dir)
}

// volumeFromImage writes an image's tree into v.Source (a new or empty
// directory; for the image of a disk, a new file or a block device) and
// makes v with a first snapshot that links the image's blocks. On failure
// nothing of it is left: no volume, and the target as it was (a device
// keeps what was written onto it).
func volumeFromImage(c *cli.Context, v store.Volume, ref string) error {
	target := v.Source
	return withRepo(c, func(r *store.Repo) (err error) {
		start := time.Now()
		if ref, err = otherRegion(c, r, ref); err != nil {
			return err
		}
		img, rd, err := library(c, r).Image(c.Context, ref)
		if err != nil {
			return err
		}
		if _, err := r.Volume(c.Context, v.Name); err == nil {
			return fmt.Errorf("volume %s: %w", v.Name, store.ErrExists)
		}
		// The target is resolved and checked once and held open: what is
		// written there, and undone on failure, goes through it.
		var into, dev *os.File
		var undo func()
		if img.Kind == store.KindDisk {
			v.Kind = store.KindDisk
			var name string
			if dev, into, name, err = prepareDiskTarget(target); into != nil {
				defer into.Close()
				undo = func() { unix.Unlinkat(int(into.Fd()), name, 0) }
			} else if dev != nil {
				defer dev.Close()
			}
		} else {
			var made bool
			if into, made, err = prepareTarget(target); into != nil {
				defer into.Close()
				undo = func() { clearTarget(into, made) }
			}
		}
		if err != nil {
			return err
		}
		var added bool
		defer func() {
			if err == nil {
				return
			}
			if added {
				r.RemoveVolume(c.Context, v.Name, true)
			}
			if undo != nil {
				undo()
			}
		}()
		if err = writeImage(c, img, rd, target, into, dev); err != nil {
			return err
		}
		vol, err := r.AddVolume(c.Context, v)
		if err != nil {
			return err
		}
		added = true
		// The first snapshot reads what was written, through what is held,
		// not what the target's path names by now.
		root := into
		if dev != nil {
			root = dev
		} else if img.Kind == store.KindDisk {
			if root, err = openWritten(into, filepath.Base(target)); err != nil {
				return err
			}
			defer root.Close()
		}
		opts := source.Options{Logger: logger(c), Root: root}
		if m, _ := c.App.Metadata[metaMount].(string); m != "" {
			opts.Skip = []string{m}
		}
		// A public image's blocks are in its catalog file, not here: the
		// snapshot stores them. A device cannot tell whether it changed
		// since it was written: it is read back (its blocks are here).
		if img.Type != images.Public && dev == nil {
			opts.Seed = &img.Snapshot.RootDir
		}
		res, err := source.Snapshot(c.Context, r, v.Name, store.SnapshotOptions{Description: "from image " + img.Name,
			Tags: map[string]string{"image": img.Name}}, opts)
		if err != nil {
			return err
		}
		if len(res.Warnings) > 0 {
			return fmt.Errorf("first snapshot of %s: %d entries could not be read back, first %s", v.Name, len(res.Warnings), res.Warnings[0])
		}
		out := fromImageResult{Volume: vol, Image: img.Name, Snapshot: res.Snapshot, Duration: time.Since(start)}
		return output(c, out, func() {
			st := res.Snapshot.Stats
			fmt.Fprintf(c.App.Writer, "added volume %s: %s, written from image %s (%s, %s)\n", vol.Name, target, img.Name,
				count(st.Files, "file"), size(st.LogicalBytes))
			fmt.Fprintf(c.App.Writer, "  first snapshot %s links %s of the image's data, stored %s new\n", res.Snapshot.Name,
				size(st.LogicalBytes-min(st.LogicalBytes, st.StoredBytes)), size(st.StoredBytes))
		})
	})
}

// prepareTarget checks that target is a new or empty directory, makes it
// if new (closed to others until the image's metadata is set) and opens
// it; made says it did not exist.
func prepareTarget(target string) (dir *os.File, made bool, err error) {
	dir, made, err = restore.MakeDir(target, 0o700)
	if err != nil {
		return nil, false, fmt.Errorf("target %w", err)
	}
	names, err := dir.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		if made {
			restore.RemoveDir(dir)
		}
		dir.Close()
		return nil, false, fmt.Errorf("target %s: %w", target, err)
	}
	if len(names) > 0 {
		dir.Close()
		return nil, false, fmt.Errorf("target %s: not empty; a volume from an image starts in a new or empty directory", target)
	}
	return dir, made, nil
}

// clearTarget undoes what was written into the target through dir, the
// directory prepareTarget opened, never by its path: whoever can write
// the target's parent may have swapped it for a symlink meanwhile. A
// target made here is removed.
func clearTarget(dir *os.File, made bool) {
	restore.Clear(int(dir.Fd()))
	if made {
		restore.RemoveDir(dir)
	}
}

// prepareDiskTarget checks that target is a block device (dev) or a new
// file, which it makes, empty, in parent as name: the image is written
// there through parent, and the file removed through it if what follows
// fails.
func prepareDiskTarget(target string) (dev, parent *os.File, name string, err error) {
	if dev, err = restore.FindDevice(target); err != nil {
		return nil, nil, "", fmt.Errorf("target %s: %w", target, err)
	} else if dev != nil {
		return dev, nil, "", nil
	}
	dir, name := filepath.Split(target)
	if parent, err = restore.OpenDir(dir); err != nil {
		return nil, nil, "", fmt.Errorf("target %s: %w", target, err)
	}
	fd, err := unix.Openat(int(parent.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		parent.Close()
		if errors.Is(err, unix.EEXIST) {
			return nil, nil, "", fmt.Errorf("target %s: exists; a volume from the image of a disk starts in a new file or on a block device", target)
		}
		return nil, nil, "", fmt.Errorf("target %s: %w", target, err)
	}
	unix.Close(fd)
	return nil, parent, name, nil
}

// openWritten opens, O_PATH, the disk file written as name in dir.
func openWritten(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", filepath.Join(dir.Name(), name), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("target %s: replaced while the image was written", filepath.Join(dir.Name(), name))
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name)), nil
}

// writeImage writes an image to target, every block verified: a tree
// into dir; a disk onto dev or into a new file, target's name in dir
// (sparse).
func writeImage(c *cli.Context, img *images.Image, rd store.Reader, target string, dir, dev *os.File) error {
	prog := new(restore.Progress)
	bar := startProgress(c, "write "+img.Name, func() (uint64, uint64) { return prog.Bytes.Load(), prog.ExpectedSize.Load() })
	// The target is new or empty (prepareTarget): always is what makes
	// it, made here or not, take the image root's owner, mode and times,
	// and a disk's file replace the empty one prepareDiskTarget made.
	opts := restore.Options{Overwrite: restore.OverwriteAlways, Progress: prog, Logger: logger(c)}
	e := &img.Snapshot.RootDir
	if img.Kind == store.KindDisk {
		var err error
		if e, err = imagefile.DiskFile(c.Context, rd, img); err != nil {
			bar.finish()
			return err
		}
		file := *e
		file.Name = filepath.Base(target)
		e = &file
	}
	var res *restore.Result
	var err error
	if dev != nil {
		res, err = restore.Device(c.Context, rd, e, dev, opts)
	} else {
		res, err = restore.Into(c.Context, rd, e, img.Snapshot.Stats.LogicalBytes, dir, opts)
	}
	bar.finish()
	if err != nil {
		return fmt.Errorf("write image %s to %s: %w", img.Name, target, err)
	}
	if len(res.Problems) > 0 {
		return fmt.Errorf("write image %s to %s: %d entries failed, first %s", img.Name, target, len(res.Problems), res.Problems[0])
	}
	return nil
}
