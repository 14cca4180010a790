package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// KindImage is the kind of the hidden volume that holds an image.
const KindImage VolumeKind = "image"

// imagePrefix begins the record name of an image's volume: no user volume
// can be called so (ValidVolumeName), and no image name holds a '/'.
const imagePrefix = ".image/"

// imageSnapshot is the name of an image volume's one snapshot.
const imageSnapshot = "image"

// ImageVolumes hold the images of store/images. An image is a hidden
// volume of kind KindImage with exactly one snapshot, its content; the
// volume's record carries the image's metadata (Volume.Image) as that
// package wrote it, so changing who sees an image is one transaction. An
// image made from a snapshot shares that snapshot's tree: nothing is
// copied, and the image's own chain run on every block keeps the blocks
// after the snapshot is deleted. Making, undoing and removing an image
// are a snapshot's, with its crash safety; an image volume whose snapshot
// was never committed is removed at the next Open.
type ImageVolumes struct{ r *Repo }

// ImageVolumes returns the repository's image volumes.
func (r *Repo) ImageVolumes() ImageVolumes { return ImageVolumes{r: r} }

// ImageVolume is one image's volume and its snapshot.
type ImageVolume struct {
	// Name is the image's name.
	Name     string
	Volume   Volume
	Snapshot Snapshot
}

// ValidImageName reports whether s can name an image.
func ValidImageName(s string) bool { return ValidLabel(s) }

// CheckImageName says, wrapping ErrInvalid, what a name that cannot name
// an image must be.
func CheckImageName(name string) error {
	if !ValidImageName(name) {
		return fmt.Errorf("image name %q: use 1-128 letters, digits, '.', '_', '-', '+', ':', '@', not starting with '.' or '-': %w", name, ErrInvalid)
	}
	return nil
}

// ImageNameOf is the name of the image an image volume holds.
func ImageNameOf(v *Volume) string { return strings.TrimPrefix(v.Name, imagePrefix) }

// imageNamed returns the name of the image whose volume is called volume.
func imageNamed(volume string) (string, bool) { return strings.CutPrefix(volume, imagePrefix) }

// Begin adds the volume of a new image called name, with its metadata and
// a description of its source, and begins its snapshot. A name taken is
// ErrExists. The caller commits the writer, or removes the volume (Remove)
// when it aborts it or its commit fails.
func (iv ImageVolumes) Begin(ctx context.Context, name string, meta json.RawMessage, source, description string) (*SnapshotWriter, error) {
	if err := CheckImageName(name); err != nil {
		return nil, err
	}
	hidden := imagePrefix + name
	_, err := iv.r.addVolume(ctx, Volume{Name: hidden, Kind: KindImage, Source: source, BlockSize: DefaultBlockSize, Image: meta})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	w, err := iv.r.beginSnapshot(ctx, hidden, SnapshotOptions{Name: imageSnapshot, Description: description}, KindImage)
	if err != nil {
		iv.r.removeVolume(context.WithoutCancel(ctx), hidden, true)
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return w, nil
}

// Get returns a finished image's volume and snapshot.
func (iv ImageVolumes) Get(ctx context.Context, name string) (*ImageVolume, error) {
	if !ValidImageName(name) {
		return nil, fmt.Errorf("image %s: %w", name, ErrNotFound)
	}
	v, err := iv.r.anyVolume(imagePrefix + name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if err != nil || v.Kind != KindImage || v.Head == 0 {
		return nil, fmt.Errorf("image %s: %w", name, ErrNotFound)
	}
	s, err := iv.r.snapshotOf(v, "latest")
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return &ImageVolume{Name: name, Volume: *v, Snapshot: *s}, nil
}

// List returns every finished image's volume and snapshot, in name order.
func (iv ImageVolumes) List(ctx context.Context) ([]ImageVolume, error) {
	vols, err := iv.r.allVolumes()
	if err != nil {
		return nil, err
	}
	var out []ImageVolume
	for i := range vols {
		v := &vols[i]
		if v.Kind != KindImage || v.Removing || v.Head == 0 {
			continue
		}
		s, err := iv.r.snapshotOf(v, "latest")
		if err != nil {
			return nil, err
		}
		out = append(out, ImageVolume{Name: ImageNameOf(v), Volume: *v, Snapshot: *s})
	}
	return out, nil
}

// SetMeta changes an image's metadata in one transaction: fn gets what
// the record holds (nil for an image made before images had their own)
// and returns what it is to hold.
func (iv ImageVolumes) SetMeta(ctx context.Context, name string, fn func(json.RawMessage) (json.RawMessage, error)) error {
	err := iv.r.updateVolume(ctx, imagePrefix+name, func(v *Volume) error {
		if v.Kind != KindImage || v.Removing {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
		meta, err := fn(v.Image)
		v.Image = meta
		return err
	})
	if err != nil {
		return err
	}
	iv.r.changed(imagePrefix+name, "")
	return nil
}

// Rename gives an image another name in one transaction: its volume's
// record moves to the new name; its snapshot, chain runs and blocks, kept
// by the volume's id, stay as they are. A name taken is ErrExists.
func (iv ImageVolumes) Rename(ctx context.Context, name, to string) error {
	if err := CheckImageName(to); err != nil {
		return err
	}
	release, err := iv.r.claimVolume(imagePrefix+name, "renaming of image "+name)
	if err != nil {
		return err
	}
	defer release()
	err = iv.r.commit(ctx, func(m metaTxn) error {
		var v Volume
		if err := getJSON(m.txn, volumeKey(imagePrefix+name), &v); err != nil {
			return fmt.Errorf("image %s: %w", name, err)
		}
		if v.Kind != KindImage || v.Removing || v.Head == 0 {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
		if err := v.idle(iv.r.info.Replica); err != nil {
			return err
		}
		var taken Volume
		if err := getJSON(m.txn, volumeKey(imagePrefix+to), &taken); err == nil {
			return fmt.Errorf("image %s: %w", to, ErrExists)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		var s Snapshot
		if err := getJSON(m.txn, snapshotKey(v.ID, v.Head), &s); err != nil {
			return fmt.Errorf("image %s: %w", name, err)
		}
		if err := m.deleteVolume(v.Name); err != nil {
			return err
		}
		v.Name, s.Volume = imagePrefix+to, imagePrefix+to
		if err := m.putVolume(&v); err != nil {
			return err
		}
		return m.setJSON(snapshotKey(v.ID, v.Head), &s)
	})
	if err != nil {
		return err
	}
	iv.r.changed(imagePrefix+name, "")
	iv.r.changed(imagePrefix+to, "")
	return nil
}

// Remove deletes an image's volume, finished or not; blocks only it held
// lose their last reference.
func (iv ImageVolumes) Remove(ctx context.Context, name string) error {
	if err := iv.r.removeVolume(ctx, imagePrefix+name, true); err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	return nil
}
