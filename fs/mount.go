//go:build linux

package fs

import (
	"cmp"
	"fmt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions configure Mount.
type MountOptions struct {
	// AllowOther lets other users than the mounting one in; the kernel
	// then checks every access against the snapshot's own modes and owners
	// (default_permissions).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
	// Source is what the mount table shows as the mount's source (the
	// repository's directory); default "chainfs".
	Source string
}

// Mount mounts f at dir. The caller waits on the server and unmounts it.
func Mount(dir string, f *FS, o MountOptions) (*fuse.Server, error) {
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther: o.AllowOther,
			FsName:     cmp.Or(o.Source, "chainfs"),
			Name:       "chainfs",
			// Large reads: the kernel sends up to 1 MiB per request and
			// reads ahead as far.
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			DirectMount:  true,
			// Links below snapshots never change; latest's target is
			// invalidated when it moves (FS.Changed).
			EnableSymlinkCaching: true,
			Debug:                o.Debug,
			Options:              []string{"default_permissions"},
		},
		// Timeouts are set where nodes are looked up; there is no default
		// entry timeout, so that 0 means 0 (images/<name> is looked up
		// afresh by every caller: who sees an image depends on who asks).
		AttrTimeout: ptr(listTimeout),
		// A name missing below a snapshot stays missing: the kernel keeps
		// the miss. Lookups in the lists set a timeout on their misses,
		// which go-fuse then passes on uncached (uncachedMiss).
		NegativeTimeout: ptr(immutableTimeout),
		// A mode of 0000 is a real mode here, not "unset".
		NullPermissions: true,
	}
	server, err := gofs.Mount(dir, f.root, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return server, nil
}

func ptr[T any](v T) *T { return &v }
