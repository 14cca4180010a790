package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/chainfs/chainfs/fs/fromimage"
	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
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

// volumeFromImage makes volume v from an image (fromimage.Make) and
// reports it.
func volumeFromImage(c *cli.Context, v store.Volume, ref string) error {
	return withRepo(c, func(r *store.Repo) (err error) {
		start := time.Now()
		if ref, err = otherRegion(c, r, ref); err != nil {
			return err
		}
		img, rd, err := library(c, r).Image(c.Context, ref)
		if err != nil {
			return err
		}
		prog := new(restore.Progress)
		opts := fromimage.Options{Logger: logger(c), Progress: prog}
		if m, _ := c.App.Metadata[metaMount].(string); m != "" {
			opts.Skip = []string{m}
		}
		bar := startProgress(c, "write "+img.Name, func() (uint64, uint64) { return prog.Bytes.Load(), prog.ExpectedSize.Load() })
		res, err := fromimage.Make(c.Context, r, v, img, rd, opts)
		bar.finish()
		if err != nil {
			return err
		}
		out := fromImageResult{Volume: res.Volume, Image: img.Name, Snapshot: res.Snapshot, Duration: time.Since(start)}
		return output(c, out, func() {
			st := res.Snapshot.Stats
			fmt.Fprintf(c.App.Writer, "added volume %s: %s, written from image %s (%s, %s)\n", res.Volume.Name, v.Source, img.Name,
				count(st.Files, "file"), size(st.LogicalBytes))
			fmt.Fprintf(c.App.Writer, "  first snapshot %s links %s of the image's data, stored %s new\n", res.Snapshot.Name,
				size(st.LogicalBytes-min(st.LogicalBytes, st.StoredBytes)), size(st.StoredBytes))
		})
	})
}
