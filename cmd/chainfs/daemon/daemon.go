//go:build linux

// Package daemon is chainfs serve: it owns the repository, mounts it,
// runs the jobs written to the control directory and answers the CLI over
// a Unix socket inside the repository.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	chainfs "github.com/chainfs/chainfs/fs"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moby/sys/mountinfo"
)

// Options configure Run.
type Options struct {
	Repo *store.Repo
	// Catalog, if set, serves public images from the operator's catalog.
	Catalog    *imagefile.Catalog
	Mount      string
	AllowOther bool
	Debug      bool
	Logger     *slog.Logger
	// TreeCache and ReadAhead size the mount's caches (chainfs.Options).
	TreeCache, ReadAhead int
	// Metrics, if set, is the address to serve Prometheus metrics on.
	Metrics string
	// Version names this build, for the metrics.
	Version string
	// RunCLI runs one chainfs command line in this process against Repo,
	// for a CLI that reached the daemon; it returns the exit status.
	RunCLI func(ctx context.Context, args []string, cwd string, stdout, stderr io.Writer, caller Caller) int
	// Ready is called once the mount, the socket and the metrics serve,
	// with the metrics' address if any.
	Ready func(metricsAddr string)
	// Clock drives the scheduler; nil is the system clock.
	Clock Clock
}

// Run serves until ctx is done (SIGINT, SIGTERM), then unmounts.
func Run(ctx context.Context, o Options) error {
	// Stopping for any reason cancels what the daemon runs.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	log := o.Logger
	mnt, err := filepath.Abs(o.Mount)
	if err != nil {
		return err
	}
	if err := prepareMountpoint(mnt, log); err != nil {
		return err
	}
	owner := uint32(0)
	if st, err := os.Stat(o.Repo.Info().Dir); err == nil {
		owner = st.Sys().(*syscall.Stat_t).Uid
	}
	clock := o.Clock
	if clock == nil {
		clock = realClock{}
	}
	notes := newNotifier()
	jobs := newRunner(ctx, o.Repo, mnt, log)
	sched := newScheduler(o.Repo, jobs, clock, time.Local, mnt, log)
	var observer chainfs.Observer
	var metricsAddr string
	var m *metrics
	if o.Metrics != "" {
		m = newMetrics(o.Repo, o.Catalog, o.Version, sched.nextRuns, log)
		if metricsAddr, err = m.serve(ctx, o.Metrics, log); err != nil {
			return err
		}
		sched.skipped = m.skipped
		observer = m
	}
	fsys := chainfs.New(chainfs.Options{Repo: o.Repo, Images: &imagefile.Library{Repo: o.Repo, Catalog: o.Catalog},
		Controller: jobs, Logger: log, OwnerUID: owner, TreeCache: o.TreeCache, ReadAhead: o.ReadAhead, Observer: observer})
	o.Repo.Watch(store.Watcher{
		Changed: func(volume, snapshot string) {
			if volume == "" {
				// Who sees an image changes before the command that
				// changed it returns, not when the kernel has been told.
				fsys.ImageChanged(snapshot)
			}
			notes.post(volume, snapshot)
		},
		// Every snapshot the daemon makes, however asked for, is logged
		// (and counted).
		SnapshotEnded: func(e store.SnapshotEnd) {
			if e.Snapshot != nil {
				log.Info("snapshot made", "volume", e.Volume, "snapshot", e.Name, "auto", e.Auto, "took", e.Took.Round(time.Millisecond),
					"read", e.Snapshot.Stats.ReadBytes, "stored", e.Snapshot.Stats.StoredBytes)
			} else {
				log.Warn("snapshot failed", "volume", e.Volume, "snapshot", e.Name, "auto", e.Auto, "took", e.Took.Round(time.Millisecond))
			}
			if m != nil {
				m.snapshotEnded(e)
			}
		},
	})
	defer o.Repo.Watch(store.Watcher{})
	server, err := chainfs.Mount(mnt, fsys, chainfs.MountOptions{AllowOther: o.AllowOther, Debug: o.Debug, Source: o.Repo.Info().Dir})
	if err != nil {
		return err
	}
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	// The kernel is told of changes from a goroutine of its own: a
	// notification waits for the directory's lock, which a mkdir or rmdir
	// that started the change may hold until its job is done.
	go notes.run(fsys.Changed)

	sock, err := listen(ctx, o.Repo.Info().Dir, o.RunCLI, jobs, log)
	if err != nil {
		unmount(server, mnt, log)
		return err
	}
	go sched.run(ctx)
	go watchdog(ctx, mnt, log)
	log.Info("serving", "repo", o.Repo.Info().Dir, "mount", mnt, "metrics", metricsAddr)
	if o.Ready != nil {
		o.Ready(metricsAddr)
	}
	notify(log, "READY=1\nSTATUS=serving "+o.Repo.Info().Dir+" at "+mnt)
	unmounted := make(chan struct{})
	go func() { server.Wait(); close(unmounted) }()
	external := false
	select {
	case <-ctx.Done():
		log.Info("stopping", "mount", mnt)
	case <-unmounted:
		// umount(8), fusermount3 -u or chainfs umount: a normal way to stop.
		log.Info("unmounted from outside; stopping", "mount", mnt)
		external = true
	}
	notify(log, "STOPPING=1")
	stop()
	sock.Close()
	jobs.wait()
	// A command that outlived the socket's wait may still commit: it
	// finds no one to tell.
	o.Repo.Watch(store.Watcher{})
	notes.close()
	if external {
		return nil
	}
	return unmount(server, mnt, log)
}

// unmount retries while the mount is busy, then detaches it lazily so the
// daemon can exit; the kernel finishes once the last user lets go.
func unmount(server *fuse.Server, mnt string, log *slog.Logger) error {
	var err error
	for i := 0; i < 10; i++ {
		if err = server.Unmount(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Warn("mount busy, detaching it", "mount", mnt, "err", err)
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
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
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			if out, ferr := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); ferr != nil {
				return fmt.Errorf("mount point %s: stale mount, and unmounting it failed: %v: %s", dir, err, out)
			}
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

// Stale reports whether the FUSE mount at dir has lost its daemon.
// Listing asks the daemon (stat may be answered from the kernel's cache);
// one that does not answer in time counts as hung, not stale.
func Stale(dir string) (stale bool, err error) {
	answered := make(chan error, 1)
	go func() {
		_, err := os.ReadDir(dir)
		answered <- err
	}()
	select {
	case err := <-answered:
		if errors.Is(err, syscall.ENOTCONN) {
			return true, nil
		}
		return false, err
	case <-time.After(5 * time.Second):
		return false, fmt.Errorf("%s: no answer in 5 s: the daemon hangs", dir)
	}
}

// notifier delivers change notices in order on its own goroutine.
type notifier struct {
	ch   chan [2]string
	done chan struct{}

	mu     sync.Mutex
	closed bool
}

func newNotifier() *notifier {
	return &notifier{ch: make(chan [2]string, 1024), done: make(chan struct{})}
}

func (n *notifier) post(volume, snapshot string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	select {
	case n.ch <- [2]string{volume, snapshot}:
	default:
		// Full: the kernel's short timeouts on the lists catch up.
	}
}

func (n *notifier) run(fn func(volume, snapshot string)) {
	defer close(n.done)
	for c := range n.ch {
		fn(c[0], c[1])
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	close(n.ch)
	n.mu.Unlock()
	<-n.done
}
