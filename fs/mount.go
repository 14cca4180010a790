//go:build linux

package fs

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
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
	// Logger hears of a stale mount cleared and a busy one detached; nil
	// discards.
	Logger *slog.Logger
}

// A MountPoint is a file system mounted at a directory: the one handle
// on its kernel mount, from the mount to the unmount.
type MountPoint struct {
	server *fuse.Server
	dir    string
	log    *slog.Logger
	done   chan struct{}
}

// Mount mounts f at dir, an absolute path, and returns once the kernel
// serves it. A stale mount a crashed daemon left at dir is cleared first;
// a live one, or a directory that is not empty, is refused.
func Mount(dir string, f *FS, o MountOptions) (*MountPoint, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("mount point %s: not an absolute path", dir)
	}
	dir = filepath.Clean(dir) // as the mount table names it
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := prepareMountpoint(dir, log); err != nil {
		return nil, err
	}
	server, err := gofs.Mount(dir, f.root, nodeOptions(o))
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	raiseReadAhead(dir, log)
	m := &MountPoint{server: server, dir: dir, log: log, done: make(chan struct{})}
	go func() { server.Wait(); close(m.done) }()
	return m, nil
}

// readAheadKiB is how far the kernel reads ahead of a sequential reader
// of the mount: as far as one request carries (MaxWrite).
const readAheadKiB = 1 << 10

// raiseReadAhead lets the kernel read ahead readAheadKiB on the mount.
// FUSE takes the smaller of what the daemon asks for and its backing
// device's setting, 128 KiB by default, and so sends 128 KiB requests,
// eight for each 1 MiB one, each with its own system calls: 1.35 against
// 1.1 daemon CPU-s per GiB (docs/benchmarks.md). Only root may raise it;
// a mount that cannot keeps the default.
func raiseReadAhead(dir string, log *slog.Logger) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		log.Debug("read-ahead left as it is", "mount", dir, "err", err)
		return
	}
	if unix.Major(st.Dev) != 0 {
		// Not the FUSE mount (an anonymous device): dir was swapped.
		log.Warn("read-ahead left as it is: the mount point is not the mount", "mount", dir)
		return
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(path, []byte(strconv.Itoa(readAheadKiB)), 0); err != nil {
		log.Debug("read-ahead left as it is", "mount", dir, "err", err)
	}
}

// nodeOptions are the mount's and the kernel's settings for the tree.
func nodeOptions(o MountOptions) *gofs.Options {
	return &gofs.Options{
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
			// The kernel checks a file's POSIX ACL, as the source's file
			// system did, and keeps it: ls -l asks for it on every file,
			// and without this every time.
			EnableAcl: true,
			Debug:     o.Debug,
			Options:   []string{"default_permissions"},
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
}

func ptr[T any](v T) *T { return &v }

// Dir is where the file system is mounted.
func (m *MountPoint) Dir() string { return m.dir }

// Done is closed once the file system is unmounted, by Unmount or from
// outside (umount(8), fusermount3 -u, chainfs umount).
func (m *MountPoint) Done() <-chan struct{} { return m.done }

// Unmount unmounts, retrying while the mount is busy, then detaches it
// lazily so that the caller can exit: the kernel finishes once the last
// user lets go. A mount already gone is no error.
func (m *MountPoint) Unmount() error {
	var err error
	for range 10 {
		select {
		case <-m.done:
			return nil
		default:
		}
		if err = m.server.Unmount(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-m.done:
		return nil // gone meanwhile: what is at dir now is not this mount
	default:
	}
	m.log.Warn("mount busy, detaching it", "mount", m.dir, "err", err)
	return Unmount(m.dir, true)
}

// Probe asks the daemon serving the mount for its root, waiting at most
// timeout: the kernel never answers that listing from its cache.
func (m *MountPoint) Probe(timeout time.Duration) error { return probe(m.dir, timeout) }

// ErrNoAnswer: a mount's daemon did not answer in time; it hangs.
var ErrNoAnswer = errors.New("no answer")

func probe(dir string, timeout time.Duration) error {
	answered := make(chan error, 1)
	go func() {
		_, err := os.ReadDir(dir)
		answered <- err
	}()
	select {
	case err := <-answered:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%s: %w in %v: the daemon hangs", dir, ErrNoAnswer, timeout)
	}
}

// Unmount unmounts the FUSE mount at dir, lazily (detached now, finished
// when its last user lets go) or not. A user who is not root unmounts
// what they mounted through fusermount3.
func Unmount(dir string, lazy bool) error {
	flags, args := 0, []string{"-u", dir}
	if lazy {
		flags, args = syscall.MNT_DETACH, []string{"-u", "-z", dir}
	}
	err := syscall.Unmount(dir, flags)
	if err == nil {
		return nil
	}
	if out, ferr := exec.Command("fusermount3", args...).CombinedOutput(); ferr != nil {
		return fmt.Errorf("umount %s: %w (%s)", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Stale reports whether the FUSE mount at dir has lost its daemon. One
// that does not answer in time counts as hung, not stale.
func Stale(dir string) (stale bool, err error) {
	err = probe(dir, 5*time.Second)
	if errors.Is(err, syscall.ENOTCONN) {
		return true, nil
	}
	return false, err
}

// prepareMountpoint checks the mount point and clears a stale mount a
// crashed daemon left behind.
func prepareMountpoint(dir string, log *slog.Logger) error {
	_, err := os.Stat(dir)
	if mounted, fstype := isMountpoint(dir); err == nil && mounted && strings.HasPrefix(fstype, "fuse") {
		if stale, _ := Stale(dir); stale {
			err = syscall.ENOTCONN
		}
	}
	if errors.Is(err, syscall.ENOTCONN) {
		log.Warn("clearing stale mount left by a crash", "mount", dir)
		if err := Unmount(dir, true); err != nil {
			return fmt.Errorf("mount point %s: stale mount, and unmounting it failed: %w", dir, err)
		}
		_, err = os.Stat(dir)
	}
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mount point %s does not exist", dir)
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	if mounted, fstype := isMountpoint(dir); mounted {
		return fmt.Errorf("mount point %s: already mounted (%s); unmount it first", dir, fstype)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	defer f.Close()
	if st, _ := f.Stat(); !st.IsDir() {
		return fmt.Errorf("mount point %s: not a directory", dir)
	}
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("mount point %s: not empty", dir)
	}
	return nil
}

// isMountpoint looks dir up in the mount table.
func isMountpoint(dir string) (bool, string) {
	for _, m := range mountTable() {
		if m.Dir == dir {
			return true, m.Type
		}
	}
	return false, ""
}

// MountEntry is one line of the mount table.
type MountEntry struct {
	Dir, Type, Source string
}

// mountTable reads this process's mount table.
func mountTable() []MountEntry {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil
	}
	out := make([]MountEntry, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, MountEntry{Dir: m.Mountpoint, Type: m.FSType, Source: m.Source})
	}
	return out
}

// MountAt returns the mount whose mount point is dir (an absolute path
// without symlinks), if any; the last one mounted there.
func MountAt(dir string) (MountEntry, bool) {
	var found MountEntry
	ok := false
	for _, m := range mountTable() {
		if m.Dir == dir {
			found, ok = m, true
		}
	}
	return found, ok
}

// Mounts lists the chainfs mounts of this machine; Source is the
// repository each serves.
func Mounts() []MountEntry {
	var out []MountEntry
	for _, m := range mountTable() {
		if m.Type == "fuse.chainfs" {
			out = append(out, m)
		}
	}
	return out
}
