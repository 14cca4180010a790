// Package images keeps a repository's images: named, self-contained trees
// that users make from snapshots or import, share with other users, export
// and make volumes from. Each is held by the store as an image volume
// (store.ImageVolumes); this package gives it its type, its metadata (who
// owns it, who else sees it, where it came from) and its operations.
package images

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
)

// Type says who sees an image, after the cloud image types.
type Type string

// The image types.
const (
	// Custom is seen by its owner (and root).
	Custom Type = "custom"
	// Shared is seen by its owner and the users it is shared with.
	Shared Type = "shared"
	// Community is seen by every user of the machine.
	Community Type = "community"
	// Public comes from the operator's read-only catalog and is seen
	// by everyone.
	Public Type = "public"
	// Marketplace comes from a vendor's signed catalog (store/market)
	// and is seen by everyone.
	Marketplace Type = "marketplace"
)

// ParseType reads an image type's name.
func ParseType(s string) (Type, error) {
	switch t := Type(s); t {
	case Custom, Shared, Community, Public, Marketplace:
		return t, nil
	}
	return "", fmt.Errorf("image type %q: want custom, shared, community, public or marketplace: %w", s, store.ErrInvalid)
}

// Origin says where an image came from.
type Origin struct {
	// Kind is "snapshot", "import", "copy" or "marketplace".
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
func (o Origin) String() string {
	switch o.Kind {
	case "snapshot":
		return o.Volume + "/" + o.Snapshot
	case "":
		return "-"
	}
	return o.Kind + " " + o.Source
}

// Meta is what an image records besides its content: who owns it,
// who else sees it, and where it came from.
type Meta struct {
	Owner uint32 `json:"owner"`
	// SharedWith lists the uids the image is shared with, sorted.
	SharedWith []uint32 `json:"shared_with,omitempty"`
	// Community makes the image visible to every user.
	Community   bool   `json:"community,omitempty"`
	Description string `json:"description,omitempty"`
	Origin      Origin `json:"origin"`
	// Kind is store.KindDisk for the image of a disk (its tree is one file),
	// empty for a directory tree.
	Kind store.VolumeKind `json:"kind,omitempty"`
	// Marketplace names the subscription the image was imported from
	// (store/market): it makes the image a marketplace image.
	Marketplace string `json:"marketplace,omitempty"`
}

// Share adds uids to those the image is shared with.
func (m *Meta) Share(uids ...uint32) {
	for _, u := range uids {
		if u != m.Owner && !slices.Contains(m.SharedWith, u) {
			m.SharedWith = append(m.SharedWith, u)
		}
	}
	slices.Sort(m.SharedWith)
}

// Unshare removes uids from those the image is shared with.
func (m *Meta) Unshare(uids ...uint32) {
	m.SharedWith = slices.DeleteFunc(m.SharedWith, func(u uint32) bool { return slices.Contains(uids, u) })
	if len(m.SharedWith) == 0 {
		m.SharedWith = nil
	}
}

// Image describes an image.
type Image struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
	Meta
	// Region is the region the image can be used in: its repository's.
	Region  string    `json:"region"`
	Created time.Time `json:"created"`
	// Catalog is the file a public image is served from.
	Catalog string `json:"catalog,omitempty"`
	// Snapshot is the image's content: its tree and statistics.
	Snapshot store.Snapshot `json:"snapshot"`
	// Offered is a marketplace image the repository does not hold yet:
	// listed from its catalog, with no content.
	Offered bool `json:"offered,omitempty"`
}

// VisibleTo reports whether user uid sees the image: root sees all.
func (img *Image) VisibleTo(uid uint32) bool {
	switch {
	case uid == 0, img.Type == Public, img.Type == Marketplace, img.Community, img.Owner == uid:
		return true
	}
	return slices.Contains(img.SharedWith, uid)
}

// typeOf is the type an image's metadata gives it.
func typeOf(m *Meta) Type {
	switch {
	case m.Marketplace != "":
		return Marketplace
	case m.Community:
		return Community
	case len(m.SharedWith) > 0:
		return Shared
	}
	return Custom
}

// Writer builds a new image like a snapshot: blocks and trees are stored
// as they come and nothing is visible until Commit.
type Writer struct {
	*store.SnapshotWriter
	r    *store.Repo
	name string
}

// Begin starts a new image called name. It fails with store.ErrExists
// when the name is taken.
func Begin(ctx context.Context, r *store.Repo, name string, meta Meta) (*Writer, error) {
	if meta.Origin.Region == "" {
		meta.Origin.Region = r.Info().Region
	}
	raw, err := json.Marshal(&meta)
	if err != nil {
		return nil, err
	}
	w, err := r.ImageVolumes().Begin(ctx, name, raw, meta.Origin.String(), meta.Description)
	if err != nil {
		return nil, err
	}
	return &Writer{SnapshotWriter: w, r: r, name: name}, nil
}

// UpdateMeta changes the metadata of the image being made.
func (w *Writer) UpdateMeta(ctx context.Context, fn func(*Meta)) error {
	return w.r.ImageVolumes().SetMeta(ctx, w.name, func(raw json.RawMessage) (json.RawMessage, error) {
		var m Meta
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("image %s: metadata: %v: %w", w.name, err, store.ErrCorrupt)
		}
		fn(&m)
		return json.Marshal(&m)
	})
}

// Commit makes the image visible with rootDir as its top directory. On
// error nothing is left of it.
func (w *Writer) Commit(ctx context.Context, rootDir store.Entry, stats store.SnapshotStats) (*Image, error) {
	if _, err := w.SnapshotWriter.Commit(ctx, rootDir, stats); err != nil {
		w.r.ImageVolumes().Remove(context.WithoutCancel(ctx), w.name)
		return nil, fmt.Errorf("image %s: %w", w.name, err)
	}
	return Get(ctx, w.r, w.name)
}

// Abort drops the image and what was stored for it.
func (w *Writer) Abort() {
	w.SnapshotWriter.Abort()
	w.r.ImageVolumes().Remove(context.Background(), w.name)
}

// Create makes image name from a snapshot without copying data.
func Create(ctx context.Context, r *store.Repo, name, volume, snapshot string, meta Meta) (*Image, error) {
	if err := store.CheckImageName(name); err != nil {
		return nil, err
	}
	src, err := r.Snapshot(ctx, volume, snapshot)
	if err != nil {
		return nil, err
	}
	if v, err := r.Volume(ctx, volume); err == nil && v.Kind == store.KindDisk {
		meta.Kind = store.KindDisk
	}
	meta.Origin = Origin{Kind: "snapshot", Volume: volume, Snapshot: src.Name}
	w, err := Begin(ctx, r, name, meta)
	if err != nil {
		return nil, err
	}
	return w.Commit(ctx, src.RootDir, src.Stats)
}

// Get returns an image by name.
func Get(ctx context.Context, r *store.Repo, name string) (*Image, error) {
	iv, err := r.ImageVolumes().Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return imageOf(r, iv)
}

// List lists the images in name order.
func List(ctx context.Context, r *store.Repo) ([]Image, error) {
	ivs, err := r.ImageVolumes().List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(ivs))
	for i := range ivs {
		img, err := imageOf(r, &ivs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *img)
	}
	return out, nil
}

func imageOf(r *store.Repo, iv *store.ImageVolume) (*Image, error) {
	img := &Image{Name: iv.Name, Region: r.Info().Region, Created: iv.Snapshot.Time, Snapshot: iv.Snapshot}
	if iv.Volume.Image != nil {
		if err := json.Unmarshal(iv.Volume.Image, &img.Meta); err != nil {
			return nil, fmt.Errorf("image %s: metadata: %v: %w", iv.Name, err, store.ErrCorrupt)
		}
	} else {
		img.Meta = legacyMeta(&iv.Snapshot)
	}
	img.Type = typeOf(&img.Meta)
	return img, nil
}

// legacyMeta reads the metadata of an image made before images had their
// own record: tags of its snapshot.
func legacyMeta(s *store.Snapshot) Meta {
	m := Meta{Description: s.Description, Origin: Origin{Kind: "snapshot"}}
	m.Origin.Volume, m.Origin.Snapshot, _ = strings.Cut(s.Tags["from"], "/")
	fmt.Sscan(s.Tags["owner"], &m.Owner)
	return m
}

// Update changes an image's metadata (sharing, community, description) in
// one transaction.
func Update(ctx context.Context, r *store.Repo, name string, fn func(*Meta) error) (*Image, error) {
	img, err := Get(ctx, r, name)
	if err != nil {
		return nil, err
	}
	err = r.ImageVolumes().SetMeta(ctx, name, func(raw json.RawMessage) (json.RawMessage, error) {
		m := img.Meta // a legacy image's, the first time
		if raw != nil {
			m = Meta{}
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, fmt.Errorf("metadata: %v: %w", err, store.ErrCorrupt)
			}
		}
		if err := fn(&m); err != nil {
			return nil, err
		}
		return json.Marshal(&m)
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return Get(ctx, r, name)
}

// Rename gives an image another name; its content, metadata and blocks
// stay as they are.
func Rename(ctx context.Context, r *store.Repo, name, to string) (*Image, error) {
	if err := r.ImageVolumes().Rename(ctx, name, to); err != nil {
		return nil, err
	}
	return Get(ctx, r, to)
}

// Remove deletes an image; blocks only it held lose their last reference.
func Remove(ctx context.Context, r *store.Repo, name string) error {
	if _, err := r.ImageVolumes().Get(ctx, name); err != nil {
		return err
	}
	return r.ImageVolumes().Remove(ctx, name)
}
