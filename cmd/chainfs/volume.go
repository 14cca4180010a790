package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chainfs/chainfs/fs/resolve"
	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/fs/source/ignore"
	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func volumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "volume",
		Usage: "add, list and remove volumes (the sources that are snapshotted)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a volume whose source is a directory tree, a disk-image file or a block device",
				ArgsUsage: "NAME SOURCE",
				Description: "With --from-image, SOURCE is a new or empty directory: the image's tree is written\n" +
					"there and the volume's first snapshot links the image's blocks instead of storing them\n" +
					"again. IMAGE is an image of this repository (or a public one of the catalog); an image\n" +
					"of another repository, DIR:NAME, must be copied here first (image copy).",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "from-image", Usage: "IMAGE whose tree the new volume starts with"},
					&cli.StringFlag{Name: "block-size", Usage: fmt.Sprintf("block size, a power of two from 4K to 16M (default %s for a tree, %s for a disk)", size(store.DefaultBlockSize), size(store.DefaultDiskBlockSize))},
					&cli.StringSliceFlag{Name: "exclude", Usage: "gitignore-style pattern of paths to leave out (repeatable)"},
					&cli.BoolFlag{Name: "one-file-system", Usage: "do not cross into other file systems"},
					&cli.StringFlag{Name: "compression", Usage: "off, fast or max for this volume's blocks (default: the repository's; chainfs compression)"},
					jsonFlag,
				},
				Action: request(parseVolumeAdd),
			},
			{
				Name:      "list",
				Usage:     "list volumes",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &volumeList{}, wantArgs(c, 0, 0)
				}),
			},
			{
				Name:      "rm",
				Usage:     "remove a volume",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "with-snapshots", Usage: "delete the volume's snapshots too"},
				},
				Action: request(func(c *cli.Context) (operation, error) {
					return &volumeRemove{Name: c.Args().First(), WithSnapshots: c.Bool("with-snapshots")}, wantArgs(c, 1, 1)
				}),
			},
		},
	}
}

// volumeAdd adds a volume: of the tree, disk-image file or block device
// at Source, or, with FromImage, of a new tree written there from an
// image.
type volumeAdd struct {
	Name          string   `json:"name"`
	Source        string   `json:"source"`
	FromImage     string   `json:"from_image,omitempty"`
	BlockSize     uint32   `json:"block_size,omitempty"` // 0: the kind's default
	Excludes      []string `json:"excludes,omitempty"`
	OneFileSystem bool     `json:"one_file_system,omitempty"`
	// Compression is the volume's own, "" for the repository's.
	Compression store.Compression `json:"compression,omitempty"`
}

func parseVolumeAdd(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 2, 2); err != nil {
		return nil, err
	}
	o := &volumeAdd{Name: c.Args().Get(0), Excludes: c.StringSlice("exclude"), OneFileSystem: c.Bool("one-file-system")}
	if s := c.String("compression"); s != "" {
		comp, err := store.ParseCompression(s)
		if err != nil {
			return nil, usageError{err}
		}
		o.Compression = comp
	}
	if err := checkExcludes(o.Excludes); err != nil {
		return nil, err
	}
	if s := c.String("block-size"); s != "" {
		n, err := parseSize(s)
		if err != nil {
			return nil, usageError{err}
		}
		if n == 0 || n > store.MaxBlockSize {
			return nil, usagef("block size %s: a power of two from %s to %s", s, size(store.MinBlockSize), size(store.MaxBlockSize))
		}
		o.BlockSize = uint32(n)
	}
	var err error
	if o.Source, err = filepath.Abs(c.Args().Get(1)); err != nil {
		return nil, err
	}
	if ref := c.String("from-image"); ref != "" {
		o.FromImage = absoluteImageRef(ref)
	}
	return o, nil
}

func (o *volumeAdd) run(ctx context.Context, e *env) error {
	if err := needAbsolute("source", o.Source); err != nil {
		return err
	}
	v := store.Volume{Name: o.Name, Source: o.Source, BlockSize: o.BlockSize, Excludes: o.Excludes, OneFileSystem: o.OneFileSystem,
		Compression: o.Compression}
	if err := checkExcludes(v.Excludes); err != nil {
		return err
	}
	if o.FromImage != "" {
		return volumeFromImage(ctx, e, v, o.FromImage)
	}
	// Resolved as every snapshot will resolve it: run as root, through no
	// other user's symlink.
	fd, _, err := resolve.Open(o.Source, resolve.Options{})
	if err != nil {
		return fmt.Errorf("source %s: %w", o.Source, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("source %s: %w", o.Source, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
	case unix.S_IFREG, unix.S_IFBLK:
		// A disk-image file or a block device: a disk volume.
		if len(v.Excludes) > 0 || v.OneFileSystem {
			return usagef("source %s is a disk, not a tree: --exclude and --one-file-system do not apply", o.Source)
		}
		v.Kind = store.KindDisk
	default:
		return fmt.Errorf("source %s: not a directory, a disk-image file or a block device", o.Source)
	}
	if rd := e.repo.Info().Dir; rd == o.Source || strings.HasPrefix(rd, o.Source+"/") {
		fmt.Fprintf(e.stderr, "note: the repository %s lies inside the source; snapshots leave it out\n", rd)
	}
	if v.Kind != store.KindDisk {
		// A later snapshot from another file system (the disk not mounted)
		// is refused; if this fails the first snapshot records it.
		if fs, err := source.FileSystemOf("/proc/self/fd/" + strconv.Itoa(fd)); err == nil {
			v.SourceFS = fs
		}
	}
	added, err := e.repo.AddVolume(ctx, v)
	if err != nil {
		return err
	}
	return e.output(added, func() {
		fmt.Fprintf(e.stdout, "added volume %s: %s (block size %s)\n", added.Name, added.Source, size(uint64(added.BlockSize)))
	})
}

// checkExcludes refuses --exclude patterns that do not compile.
func checkExcludes(patterns []string) error {
	if _, err := ignore.Compile(patterns); err != nil {
		return usageError{fmt.Errorf("--exclude: %w", err)}
	}
	return nil
}

// unwrapPathError drops the path that os repeats, since the message names it.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// volumeInfo is a volume with its snapshot count, as listed.
type volumeInfo struct {
	store.Volume
	Snapshots int    `json:"snapshots"`
	Latest    string `json:"latest,omitempty"`
}

// volumeList lists the volumes.
type volumeList struct{}

func (volumeList) run(ctx context.Context, e *env) error {
	vols, err := e.repo.Volumes(ctx)
	if err != nil {
		return err
	}
	infos := []volumeInfo{}
	for _, v := range vols {
		snaps, err := e.repo.Snapshots(ctx, v.Name)
		if err != nil {
			return err
		}
		vi := volumeInfo{Volume: v, Snapshots: len(snaps)}
		if len(snaps) > 0 {
			vi.Latest = snaps[len(snaps)-1].Name
		}
		infos = append(infos, vi)
	}
	return e.output(infos, func() {
		t := newTable(e.stdout, "NAME", "KIND", "SOURCE", "BLOCK SIZE", "SNAPSHOTS", "LATEST", "POLICY", "EXCLUDES")
		for _, v := range infos {
			source := v.Source
			if v.Host != "" { // in a bucket: the host the source is on
				source = v.Host + ":" + source
			}
			t.row(v.Name, string(v.Kind), source, size(uint64(v.BlockSize)), fmt.Sprint(v.Snapshots), dash(v.Latest), dash(v.Policy), dash(strings.Join(v.Excludes, ",")))
		}
		t.flush()
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// volumeRemove removes a volume, and its snapshots with WithSnapshots.
type volumeRemove struct {
	Name          string `json:"name"`
	WithSnapshots bool   `json:"with_snapshots,omitempty"`
}

func (o *volumeRemove) run(ctx context.Context, e *env) error {
	err := e.repo.RemoveVolume(ctx, o.Name, o.WithSnapshots)
	if errors.Is(err, store.ErrHasSnapshots) {
		if n, cerr := e.repo.SnapshotCount(ctx, o.Name); cerr == nil && n == 0 {
			return fmt.Errorf("volume %s has snapshots in the trash; empty it first (chainfs trash empty %s) or pass --with-snapshots", o.Name, o.Name)
		}
		return fmt.Errorf("volume %s has snapshots; delete them first or pass --with-snapshots", o.Name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed volume %s\n", o.Name)
	return nil
}
