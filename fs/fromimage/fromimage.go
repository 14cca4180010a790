// Package fromimage makes a volume from an image, as the cloud makes a
// disk from an image: the image's tree is written into a new or empty
// directory (the image of a disk onto a new file or a block device), the
// volume is added with it as its source, and its first snapshot links
// the image's blocks instead of storing them again. On failure nothing of
// it is left: no volume, and the target as it was (a device keeps what
// was written onto it).
package fromimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/images"
	"golang.org/x/sys/unix"
)

// Options configure Make.
type Options struct {
	// Logger hears what the write and the snapshot log; nil discards.
	Logger *slog.Logger
	// Progress, if set, counts what is written.
	Progress *restore.Progress
	// Skip are paths the first snapshot leaves out (a daemon's mount).
	Skip []string
}

// Result is the volume made and its first snapshot.
type Result struct {
	Volume   *store.Volume
	Snapshot *store.Snapshot
}

// Make writes image img, read from rd, into v.Source and adds v with a
// first snapshot that links the image's blocks. The target is resolved
// and checked once and held open: what is written there, and undone on
// failure, goes through it.
func Make(ctx context.Context, r *store.Repo, v store.Volume, img *images.Image, rd store.Reader, opts Options) (res *Result, err error) {
	target := v.Source
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := r.Volume(ctx, v.Name); err == nil {
		return nil, fmt.Errorf("volume %s: %w", v.Name, store.ErrExists)
	}
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
		return nil, err
	}
	var added bool
	defer func() {
		if err == nil {
			return
		}
		if added {
			if rerr := r.RemoveVolume(context.WithoutCancel(ctx), v.Name, true); rerr != nil {
				// The volume stays, and so does what it was made of: its
				// source is not emptied under it.
				err = errors.Join(err, fmt.Errorf("undo: volume %s stays: %w", v.Name, rerr))
				return
			}
		}
		if undo != nil {
			undo()
		}
	}()
	if err = writeImage(ctx, img, rd, target, into, dev, opts); err != nil {
		return nil, err
	}
	vol, err := r.AddVolume(ctx, v)
	if err != nil {
		return nil, err
	}
	added = true
	// The first snapshot reads what was written, through what is held,
	// not what the target's path names by now.
	root := into
	if dev != nil {
		root = dev
	} else if img.Kind == store.KindDisk {
		if root, err = openWritten(into, filepath.Base(target)); err != nil {
			return nil, err
		}
		defer root.Close()
	}
	sopts := source.Options{Logger: opts.Logger, Root: root, Skip: opts.Skip}
	// A public image's blocks are in its catalog file, not here: the
	// snapshot stores them. A device cannot tell whether it changed since
	// it was written: it is read back (its blocks are here).
	if img.Type != images.Public && dev == nil {
		sopts.Seed = &img.Snapshot.RootDir
	}
	snap, err := source.Snapshot(ctx, r, v.Name, store.SnapshotOptions{Description: "from image " + img.Name,
		Tags: map[string]string{"image": img.Name}}, sopts)
	if err != nil {
		return nil, err
	}
	if len(snap.Warnings) > 0 {
		return nil, fmt.Errorf("first snapshot of %s: %d entries could not be read back, first %s", v.Name, len(snap.Warnings), snap.Warnings[0])
	}
	return &Result{Volume: vol, Snapshot: snap.Snapshot}, nil
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
func writeImage(ctx context.Context, img *images.Image, rd store.Reader, target string, dir, dev *os.File, o Options) error {
	// The target is new or empty (prepareTarget): always is what makes
	// it, made here or not, take the image root's owner, mode and times,
	// and a disk's file replace the empty one prepareDiskTarget made.
	opts := restore.Options{Overwrite: restore.OverwriteAlways, Progress: o.Progress, Logger: o.Logger}
	e := &img.Snapshot.RootDir
	if img.Kind == store.KindDisk {
		var err error
		if e, err = imagefile.DiskFile(ctx, rd, img); err != nil {
			return err
		}
		file := *e
		file.Name = filepath.Base(target)
		e = &file
	}
	var res *restore.Result
	var err error
	if dev != nil {
		res, err = restore.Device(ctx, rd, e, dev, opts)
	} else {
		res, err = restore.Into(ctx, rd, e, img.Snapshot.Stats.LogicalBytes, dir, opts)
	}
	if err != nil {
		return fmt.Errorf("write image %s to %s: %w", img.Name, target, err)
	}
	if len(res.Problems) > 0 {
		return fmt.Errorf("write image %s to %s: %d entries failed, first %s", img.Name, target, len(res.Problems), res.Problems[0])
	}
	return nil
}
