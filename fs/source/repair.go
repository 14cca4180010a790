package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chainfs/chainfs/fs/resolve"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/check"
	"golang.org/x/sys/unix"
)

// Blocks reads blocks back from volumes' sources for a repair
// (check.Source): a tree volume's block from the same file at the same
// path, a disk volume's from the disk. The source is resolved as a
// snapshot resolves it; below it no symlink is followed (resolve.Beneath)
// and nothing but a regular file is opened, so a user who can write in
// the source cannot point root's read elsewhere (and a wrong block is
// refused by its hash anyway).
type Blocks struct{}

// ReadBlock reads the block at site from its volume's source.
func (Blocks) ReadBlock(ctx context.Context, at check.Site) ([]byte, string, error) {
	v := at.Volume
	var fd int
	var from string
	switch v.Kind {
	case store.KindTree:
		root, _, err := openRoot(v, nil, true)
		if err != nil {
			return nil, "", err
		}
		defer unix.Close(root)
		from = filepath.Join(v.Source, filepath.FromSlash(at.Path))
		path, err := resolve.Beneath(root, strings.TrimPrefix(at.Path, "/"))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", from, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(path, &st)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			// Opened again for reading through the inode held: nothing
			// but a regular file is ever opened.
			fd, err = unix.Open("/proc/self/fd/"+strconv.Itoa(path), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		} else if err == nil {
			err = errors.New("not a regular file")
		}
		unix.Close(path)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", from, err)
		}
	case store.KindDisk:
		var err error
		if fd, _, err = openRoot(v, nil, false); err != nil {
			return nil, "", err
		}
		from = v.Source
	default:
		return nil, "", fmt.Errorf("volume %s: no source to read", v.Name)
	}
	f := os.NewFile(uintptr(fd), from)
	defer f.Close()
	b := make([]byte, at.Entry.BlockLen(at.Index))
	if _, err := f.ReadAt(b, int64(at.Index)*int64(at.Entry.BlockSize)); err != nil {
		return nil, "", err
	}
	return b, fmt.Sprintf("%s (block %d)", from, at.Index), nil
}
