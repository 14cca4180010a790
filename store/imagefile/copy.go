package imagefile

import (
	"context"
	"errors"
	"io"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
)

// Copy copies image img, read from src, into the repository dst as image
// as: a native stream that leaves out every block dst holds already, read
// back by Import as it is written, so nothing is staged on disk. from
// says where the copy came from (its origin's source). The copy keeps
// the image's owner and description. Its errors are Import's.
func Copy(ctx context.Context, src store.Reader, img *images.Image, dst *store.Repo, as, from string) (*images.Image, *ImportStats, error) {
	pr, pw := io.Pipe()
	written := make(chan struct{})
	// Blocks dst holds are left out of the stream, unless dst is
	// encrypted: it has them under other names.
	var skip func(store.Hash) bool
	if plainNames(dst) {
		skip = dst.Index().HasBlock
	}
	go func() {
		defer close(written)
		_, err := WriteNative(ctx, src, img.Snapshot.RootDir, pw, ExportOptions{Header: HeaderOf(img), Skip: skip})
		pw.CloseWithError(err)
	}()
	copied, st, err := Import(ctx, dst, as, pr, ImportOptions{Thin: skip != nil,
		Meta:   images.Meta{Owner: img.Owner, Description: img.Description},
		Origin: images.Origin{Kind: "copy", Source: from}})
	// A writer still going (Import failed early) ends at its next write;
	// it is waited for, so that nothing reads dst once Copy returns.
	pr.CloseWithError(errors.New("copy ended"))
	<-written
	return copied, st, err
}
