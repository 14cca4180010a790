package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// An image is a named, self-contained copy of a tree. It is kept as a
// hidden volume of kind KindImage (named imagePrefix + name, which no user
// volume can be called) with exactly one snapshot. An image made from a
// snapshot shares that snapshot's tree: nothing is copied, and the image's
// own chain run on every block keeps the blocks after the snapshot is
// deleted. An imported image is written like a snapshot. Creating,
// undoing and removing an image reuse the snapshot machinery and its crash
// safety; the hidden volume's record carries the image's metadata
// (ImageMeta), so changing who sees an image is one transaction.
const imagePrefix = ".image/"

// KindImage is the kind of the hidden volume that holds an image.
const KindImage VolumeKind = "image"

// imageSnapshot is the name of an image's one snapshot.
const imageSnapshot = "image"

// ImageType says who sees an image, after the cloud image types.
type ImageType string

// The image types.
const (
	// ImageCustom is seen by its owner (and root).
	ImageCustom ImageType = "custom"
	// ImageShared is seen by its owner and the users it is shared with.
	ImageShared ImageType = "shared"
	// ImageCommunity is seen by every user of the machine.
	ImageCommunity ImageType = "community"
	// ImagePublic comes from the operator's read-only catalog and is seen
	// by everyone.
	ImagePublic ImageType = "public"
)

// ParseImageType reads an image type's name.
func ParseImageType(s string) (ImageType, error) {
	switch t := ImageType(s); t {
	case ImageCustom, ImageShared, ImageCommunity, ImagePublic:
		return t, nil
	}
	return "", fmt.Errorf("image type %q: want custom, shared, community or public: %w", s, ErrInvalid)
}

// ImageOrigin says where an image came from.
type ImageOrigin struct {
	// Kind is "snapshot", "import" or "copy".
	Kind string `json:"kind"`
	// Volume and Snapshot name the snapshot an image was made from.
	Volume   string `json:"volume,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	// Source is the file or URL imported, or the repository copied from.
	Source string `json:"source,omitempty"`
	// Region is where the image was first made.
	Region string `json:"region,omitempty"`
}

// String describes the origin in a few words.
func (o ImageOrigin) String() string {
	switch o.Kind {
	case "snapshot":
		return o.Volume + "/" + o.Snapshot
	case "":
		return "-"
	}
	return o.Kind + " " + o.Source
}

// ImageMeta is what an image records besides its content: who owns it,
// who else sees it, and where it came from.
type ImageMeta struct {
	Owner uint32 `json:"owner"`
	// SharedWith lists the uids the image is shared with, sorted.
	SharedWith []uint32 `json:"shared_with,omitempty"`
	// Community makes the image visible to every user.
	Community   bool        `json:"community,omitempty"`
	Description string      `json:"description,omitempty"`
	Origin      ImageOrigin `json:"origin"`
	// Kind is KindDisk for the image of a disk (its tree is one file),
	// empty for a directory tree.
	Kind VolumeKind `json:"kind,omitempty"`
}

// Share adds uids to those the image is shared with.
func (m *ImageMeta) Share(uids ...uint32) {
	for _, u := range uids {
		if u != m.Owner && !slices.Contains(m.SharedWith, u) {
			m.SharedWith = append(m.SharedWith, u)
		}
	}
	slices.Sort(m.SharedWith)
}

// Unshare removes uids from those the image is shared with.
func (m *ImageMeta) Unshare(uids ...uint32) {
	m.SharedWith = slices.DeleteFunc(m.SharedWith, func(u uint32) bool { return slices.Contains(uids, u) })
	if len(m.SharedWith) == 0 {
		m.SharedWith = nil
	}
}

// Image describes an image.
type Image struct {
	Name string    `json:"name"`
	Type ImageType `json:"type"`
	ImageMeta
	// Region is the region the image can be used in: its repository's.
	Region  string    `json:"region"`
	Created time.Time `json:"created"`
	// Catalog is the file a public image is served from.
	Catalog string `json:"catalog,omitempty"`
	// Snapshot is the image's content: its tree and statistics.
	Snapshot Snapshot `json:"snapshot"`
}

// VisibleTo reports whether user uid sees the image: root sees all.
func (img *Image) VisibleTo(uid uint32) bool {
	switch {
	case uid == 0, img.Type == ImagePublic, img.Community, img.Owner == uid:
		return true
	}
	return slices.Contains(img.SharedWith, uid)
}

// typeOf is the type an image's metadata gives it.
func typeOf(m *ImageMeta) ImageType {
	switch {
	case m.Community:
		return ImageCommunity
	case len(m.SharedWith) > 0:
		return ImageShared
	}
	return ImageCustom
}

// ValidImageName reports whether s can name an image.
func ValidImageName(s string) bool { return ValidLabel(s) }

func checkImageName(name string) error {
	if !ValidImageName(name) {
		return fmt.Errorf("image name %q: use 1-128 letters, digits, '.', '_', '-', '+', ':', '@', not starting with '.' or '-': %w", name, ErrInvalid)
	}
	return nil
}

// ImageWriter builds a new image like a snapshot: blocks and trees are
// stored as they come and nothing is visible until Commit.
type ImageWriter struct {
	*SnapshotWriter
	name string
}

// BeginImage starts a new image called name. It fails with ErrExists when
// the name is taken.
func (r *Repo) BeginImage(ctx context.Context, name string, meta ImageMeta) (*ImageWriter, error) {
	if err := checkImageName(name); err != nil {
		return nil, err
	}
	if meta.Origin.Region == "" {
		meta.Origin.Region = r.info.Region
	}
	hidden := imagePrefix + name
	_, err := r.addVolume(Volume{Name: hidden, Kind: KindImage, Source: meta.Origin.String(), BlockSize: DefaultBlockSize, Image: &meta})
	if errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("image %s: %w", name, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	w, err := r.BeginSnapshot(ctx, hidden, SnapshotOptions{Name: imageSnapshot, Description: meta.Description})
	if err != nil {
		r.removeVolume(context.WithoutCancel(ctx), hidden, true)
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return &ImageWriter{SnapshotWriter: w, name: name}, nil
}

// UpdateMeta changes the metadata of the image being made.
func (w *ImageWriter) UpdateMeta(fn func(*ImageMeta)) error {
	return w.repo.updateVolume(imagePrefix+w.name, func(v *Volume) error {
		fn(v.Image)
		return nil
	})
}

// Commit makes the image visible with rootDir as its top directory. On
// error nothing is left of it.
func (w *ImageWriter) Commit(ctx context.Context, rootDir Entry, stats SnapshotStats) (*Image, error) {
	if _, err := w.SnapshotWriter.Commit(ctx, rootDir, stats); err != nil {
		w.repo.removeVolume(context.WithoutCancel(ctx), imagePrefix+w.name, true)
		return nil, fmt.Errorf("image %s: %w", w.name, err)
	}
	return w.repo.Image(ctx, w.name)
}

// Abort drops the image and what was stored for it.
func (w *ImageWriter) Abort() {
	w.SnapshotWriter.Abort()
	w.repo.removeVolume(context.Background(), imagePrefix+w.name, true)
}

// CreateImage makes image name from a snapshot without copying data.
func (r *Repo) CreateImage(ctx context.Context, name, volume, snapshot string, meta ImageMeta) (*Image, error) {
	if err := checkImageName(name); err != nil {
		return nil, err
	}
	src, err := r.Snapshot(ctx, volume, snapshot)
	if err != nil {
		return nil, err
	}
	if v, err := r.Volume(ctx, volume); err == nil && v.Kind == KindDisk {
		meta.Kind = KindDisk
	}
	meta.Origin = ImageOrigin{Kind: "snapshot", Volume: volume, Snapshot: src.Name}
	w, err := r.BeginImage(ctx, name, meta)
	if err != nil {
		return nil, err
	}
	return w.Commit(ctx, src.RootDir, src.Stats)
}

// Image returns an image by name.
func (r *Repo) Image(ctx context.Context, name string) (*Image, error) {
	v, err := r.Volume(ctx, imagePrefix+name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if err != nil || v.Kind != KindImage || v.Head == 0 {
		return nil, fmt.Errorf("image %s: %w", name, ErrNotFound)
	}
	s, err := r.Snapshot(ctx, v.Name, "latest")
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return r.imageOf(v, s), nil
}

func (r *Repo) imageOf(v *Volume, s *Snapshot) *Image {
	img := &Image{Name: strings.TrimPrefix(v.Name, imagePrefix), Region: r.info.Region, Created: s.Time, Snapshot: *s}
	if v.Image != nil {
		img.ImageMeta = *v.Image
	} else {
		img.ImageMeta = legacyImageMeta(s)
	}
	img.Type = typeOf(&img.ImageMeta)
	return img
}

// legacyImageMeta reads the metadata of an image made before images had
// their own record: tags of its snapshot.
func legacyImageMeta(s *Snapshot) ImageMeta {
	m := ImageMeta{Description: s.Description, Origin: ImageOrigin{Kind: "snapshot"}}
	m.Origin.Volume, m.Origin.Snapshot, _ = strings.Cut(s.Tags["from"], "/")
	fmt.Sscan(s.Tags["owner"], &m.Owner)
	return m
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
		out = append(out, *r.imageOf(v, s))
	}
	return out, nil
}

// UpdateImage changes an image's metadata (sharing, community,
// description) in one transaction.
func (r *Repo) UpdateImage(ctx context.Context, name string, fn func(*ImageMeta) error) (*Image, error) {
	img, err := r.Image(ctx, name)
	if err != nil {
		return nil, err
	}
	err = r.updateVolume(imagePrefix+name, func(v *Volume) error {
		if v.Image == nil {
			m := img.ImageMeta
			v.Image = &m
		}
		return fn(v.Image)
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	r.changed(imagePrefix+name, "")
	return r.Image(ctx, name)
}

// RemoveImage deletes an image; blocks only it held lose their last
// reference.
func (r *Repo) RemoveImage(ctx context.Context, name string) error {
	if _, err := r.Image(ctx, name); err != nil {
		return err
	}
	if err := r.removeVolume(ctx, imagePrefix+name, true); err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	return nil
}
