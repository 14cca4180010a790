package main

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/chainfs/chainfs/fs/fromimage"
	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/s3"
)

// fromImageResult is what volume add --from-image reports.
type fromImageResult struct {
	Volume   *store.Volume   `json:"volume"`
	Image    string          `json:"image"`
	Snapshot *store.Snapshot `json:"snapshot"`
	Duration time.Duration   `json:"duration_ns"`
}

// absoluteImageRef makes the DIR of an image reference DIR:NAME, an
// image of another repository, absolute when it is a relative path to a
// repository; else ref is an image name, which may hold ':'.
func absoluteImageRef(ref string) string {
	i := strings.LastIndex(ref, ":")
	if i <= 0 || filepath.IsAbs(ref[:i]) {
		return ref
	}
	dir, err := filepath.Abs(ref[:i])
	if err != nil {
		return ref
	}
	if _, err := store.ReadInfo(dir); err != nil {
		return ref
	}
	return dir + ":" + ref[i+1:]
}

// otherRegion reads an image reference of the form DIR:NAME, DIR
// absolute, an image of another repository: images are used only in
// their own region, so it must be copied here first. It returns the name
// to look up here: ref itself when it names no other repository (image
// names may hold ':'), or NAME when DIR is this repository.
func otherRegion(e *env, ref string) (string, error) {
	r := e.repo
	i := strings.LastIndex(ref, ":")
	if i <= 0 || !(filepath.IsAbs(ref[:i]) || s3.IsURL(ref[:i])) {
		return ref, nil
	}
	repo, name := ref[:i], ref[i+1:]
	this := cmp.Or(e.repoName, r.Info().Dir)
	hint := func(region string) error {
		return fmt.Errorf("--from-image %s names an image of another repository (%s, region %s), not of this one (%s, region %s); "+
			"images are used only in their own region: copy it here first with 'chainfs --repo %s image copy %s --to-repo %s'",
			ref, repo, region, this, r.Info().Region, repo, name, this)
	}
	if s3.IsURL(repo) {
		// Named by its bucket: this repository when this process's
		// replica of that bucket's is this one. Its region is not asked.
		opts, err := repoOptions(repo, e.cache)
		if err != nil {
			return "", usagef("--from-image %s: %v", ref, err)
		}
		if sameDir(opts.Dir, r.Info().Dir) {
			return name, nil
		}
		return "", hint("-")
	}
	info, err := store.ReadInfo(repo)
	switch {
	case err != nil:
		return "", usagef("--from-image %s: %s is not a chainfs repository (%v)", ref, repo, err)
	case sameDir(repo, r.Info().Dir):
		return name, nil
	}
	return "", hint(info.Region)
}

// volumeFromImage makes volume v from an image (fromimage.Make) and
// reports it.
func volumeFromImage(ctx context.Context, e *env, v store.Volume, ref string) error {
	start := time.Now()
	ref, err := otherRegion(e, ref)
	if err != nil {
		return err
	}
	img, rd, err := e.library().Image(ctx, ref)
	if err != nil {
		return err
	}
	prog := new(restore.Progress)
	opts := fromimage.Options{Logger: e.log, Progress: prog}
	if e.mount != "" {
		opts.Skip = []string{e.mount}
	}
	bar := e.progress("write "+img.Name, func() (uint64, uint64) { return prog.Bytes.Load(), prog.ExpectedSize.Load() })
	res, err := fromimage.Make(ctx, e.repo, v, img, rd, opts)
	bar.finish()
	if err != nil {
		return err
	}
	out := fromImageResult{Volume: res.Volume, Image: img.Name, Snapshot: res.Snapshot, Duration: time.Since(start)}
	return e.output(out, func() {
		st := res.Snapshot.Stats
		fmt.Fprintf(e.stdout, "added volume %s: %s, written from image %s (%s, %s)\n", res.Volume.Name, v.Source, img.Name,
			count(st.Files, "file"), size(st.LogicalBytes))
		fmt.Fprintf(e.stdout, "  first snapshot %s links %s of the image's data, stored %s new\n", res.Snapshot.Name,
			size(st.LinkedBytes), size(st.StoredBytes))
	})
}
