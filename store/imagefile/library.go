package imagefile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
)

// Library is every image a repository offers: its own, and the public
// ones of the operator's catalog (nil: none). An image of the repository
// hides a catalog image of the same name.
type Library struct {
	Repo    *store.Repo
	Catalog *Catalog
}

// Images lists every image in name order.
func (l *Library) Images(ctx context.Context) ([]images.Image, error) {
	imgs, err := images.List(ctx, l.Repo)
	if err != nil || l.Catalog == nil {
		return imgs, err
	}
	public, err := l.Catalog.Images(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range public {
		if !slices.ContainsFunc(imgs, func(i images.Image) bool { return i.Name == p.Name }) {
			imgs = append(imgs, p)
		}
	}
	slices.SortFunc(imgs, func(a, b images.Image) int { return strings.Compare(a.Name, b.Name) })
	return imgs, nil
}

// Image finds an image and the reader of its content.
func (l *Library) Image(ctx context.Context, name string) (*images.Image, store.Reader, error) {
	img, err := images.Get(ctx, l.Repo, name)
	if err == nil {
		return img, l.Repo, nil
	}
	if !errors.Is(err, store.ErrNotFound) || l.Catalog == nil {
		return nil, nil, err
	}
	return l.Catalog.Image(ctx, name)
}

// Own finds an image of the repository itself: a public image of the
// catalog cannot be changed or removed.
func (l *Library) Own(ctx context.Context, name string) (*images.Image, error) {
	img, _, err := l.Image(ctx, name)
	if err != nil {
		return nil, err
	}
	if img.Type == images.Public {
		return nil, fmt.Errorf("image %s is public, from the catalog file %s; it is changed there", name, img.Catalog)
	}
	return img, nil
}
