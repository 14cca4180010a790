package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// An image is a named, self-contained copy of a snapshot's tree. It is kept
// as a hidden volume of kind KindImage (named imagePrefix + name, which no
// user volume can be called) with exactly one snapshot whose tree is the
// source snapshot's: trees and blocks are shared, nothing is copied, and
// the image's own chain run on every block keeps them after the snapshot is
// deleted. Creating, undoing and removing an image reuse the snapshot
// machinery and its crash safety.
const imagePrefix = ".image/"

// KindImage is the kind of the hidden volume that holds an image.
const KindImage VolumeKind = "image"

// Image describes an image.
type Image struct {
	Name         string    `json:"name"`
	FromVolume   string    `json:"from_volume"`
	FromSnapshot string    `json:"from_snapshot"`
	Description  string    `json:"description,omitempty"`
	OwnerUID     uint32    `json:"owner_uid"`
	Created      time.Time `json:"created"`
	// Snapshot is the image's content: its tree and statistics.
	Snapshot Snapshot `json:"snapshot"`
}

// ImageOptions describe an image to make.
type ImageOptions struct {
	Description string
	OwnerUID    uint32
}

// ValidImageName reports whether s can name an image.
func ValidImageName(s string) bool { return validLabel(s) }

// CreateImage makes image name from a snapshot without copying data.
func (r *Repo) CreateImage(ctx context.Context, name, volume, snapshot string, opts ImageOptions) (*Image, error) {
	if !ValidImageName(name) {
		return nil, fmt.Errorf("image name %q: use 1-128 letters, digits, '.', '_', '-', '+', ':', '@', not starting with '.' or '-': %w", name, ErrInvalid)
	}
	src, err := r.Snapshot(ctx, volume, snapshot)
	if err != nil {
		return nil, err
	}
	hidden := imagePrefix + name
	_, err = r.addVolume(Volume{Name: hidden, Kind: KindImage, Source: volume + "/" + src.Name, BlockSize: DefaultBlockSize})
	if errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("image %s: %w", name, ErrExists)
	}
	if err != nil {
		return nil, err
	}
	w, err := r.BeginSnapshot(ctx, hidden, SnapshotOptions{Name: "image", Description: opts.Description,
		Tags: map[string]string{"from": volume + "/" + src.Name, "owner": fmt.Sprint(opts.OwnerUID)}})
	if err == nil {
		_, err = w.Commit(ctx, src.RootDir, src.Stats)
	}
	if err != nil {
		if w != nil {
			w.Abort()
		}
		r.RemoveVolume(context.WithoutCancel(ctx), hidden, true)
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	r.changed("", name)
	return r.Image(ctx, name)
}

// Image returns an image by name.
func (r *Repo) Image(ctx context.Context, name string) (*Image, error) {
	v, err := r.Volume(ctx, imagePrefix+name)
	if err != nil || v.Kind != KindImage || v.Head == 0 {
		return nil, fmt.Errorf("image %s: %w", name, ErrNotFound)
	}
	s, err := r.Snapshot(ctx, v.Name, "latest")
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return imageOf(v, s), nil
}

func imageOf(v *Volume, s *Snapshot) *Image {
	from, _, _ := strings.Cut(s.Tags["from"], "/")
	var owner uint32
	fmt.Sscan(s.Tags["owner"], &owner)
	return &Image{Name: strings.TrimPrefix(v.Name, imagePrefix), FromVolume: from,
		FromSnapshot: strings.TrimPrefix(s.Tags["from"], from+"/"), Description: s.Description,
		OwnerUID: owner, Created: s.Time, Snapshot: *s}
}

// Images lists the images in name order.
func (r *Repo) Images(ctx context.Context) ([]Image, error) {
	vols, err := r.allVolumes()
	if err != nil {
		return nil, err
	}
	var out []Image
	for i := range vols {
		v := &vols[i]
		if v.Kind != KindImage || v.Removing || v.Head == 0 {
			continue
		}
		s, err := r.Snapshot(ctx, v.Name, "latest")
		if err != nil {
			return nil, err
		}
		out = append(out, *imageOf(v, s))
	}
	return out, nil
}

// RemoveImage deletes an image; blocks only it held lose their last
// reference.
func (r *Repo) RemoveImage(ctx context.Context, name string) error {
	if _, err := r.Image(ctx, name); err != nil {
		return err
	}
	if err := r.RemoveVolume(ctx, imagePrefix+name, true); err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	r.changed("", name)
	return nil
}
