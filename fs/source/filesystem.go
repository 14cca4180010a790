package source

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/chainfs/chainfs/store"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// ErrSourceReplaced is a tree volume's source that is empty where its
// previous snapshot was not, or that lies on another file system than when
// the volume was added, or a disk volume's source that became empty or all
// zeros: most likely a mount point whose disk is not mounted, or a wiped
// disk. The snapshot is refused unless Options.AllowEmpty is set.
var ErrSourceReplaced = errors.New("source empty or replaced")

// FileSystemOf identifies the file system holding path (store.SourceFS
// says why mount point and type).
func FileSystemOf(path string) (*store.SourceFS, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_MNT_ID, &stx); err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	// Without STATX_MNT_ID (Linux before 5.8) the mount is the deepest
	// mount point above the resolved path; the last one listed is on top.
	byID := stx.Mask&unix.STATX_MNT_ID != 0
	resolved := path
	if !byID {
		var err error
		if resolved, err = filepath.EvalSymlinks(path); err != nil {
			return nil, fmt.Errorf("source %s: %w", path, err)
		}
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		if byID {
			return uint64(m.ID) != stx.Mnt_id, uint64(m.ID) == stx.Mnt_id
		}
		return !under(resolved, m.Mountpoint), false
	})
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("source %s: its mount is not in this process's mount table", path)
	}
	return &store.SourceFS{Mount: best.Mountpoint, Type: best.FSType, Device: best.Source}, nil
}

// under reports whether path is dir or below it.
func under(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}
