//go:build linux

// Package daemon is chainfs serve: it owns the repository, mounts it,
// runs the jobs written to the control directory and answers the CLI over
// a Unix socket inside the repository.
package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	chainfs "github.com/chainfs/chainfs/fs"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
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
	// Serve runs one request of a CLI that reached the daemon against
	// Repo.
	Serve Handler
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
	owner := uint32(0)
	if st, err := os.Stat(o.Repo.Info().Dir); err == nil {
		owner = st.Sys().(*syscall.Stat_t).Uid
	}
	clock := o.Clock
	if clock == nil {
		clock = realClock{}
	}
	notes := newNotifier()
	merge := newMerger(o.Repo, clock, log)
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
		Controller: jobs, Logger: log, OwnerUID: owner, TreeCache: o.TreeCache, ReadAhead: o.ReadAhead, Observer: observer,
		Retention: func(ctx context.Context, volume, snapshot string) (string, error) {
			return explainRetention(ctx, o.Repo, volume, snapshot, clock.Now())
		}})
	// Every snapshot the daemon makes, however asked for, is logged (and
	// counted), until the daemon returns.
	watcher := store.Watcher{
		Changed: func(volume, snapshot string) {
			if volume == "" {
				// Who sees an image changes before the command that
				// changed it returns, not when the kernel has been told.
				fsys.ImageChanged(snapshot)
			}
			notes.post(volume, snapshot)
		},
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
			merge.snapshotEnded()
		},
	}
	o.Repo.Watch(watcher)
	defer o.Repo.Watch(store.Watcher{})
	mount, err := chainfs.Mount(mnt, fsys, chainfs.MountOptions{AllowOther: o.AllowOther, Debug: o.Debug, Source: o.Repo.Info().Dir, Logger: log})
	if err != nil {
		return err
	}
	// The kernel is told of changes from a goroutine of its own: a
	// notification waits for the directory's lock, which a mkdir or rmdir
	// that started the change may hold until its job is done.
	go notes.run(fsys.Changed)

	sock, err := listen(ctx, o.Repo.Info().Dir, o.Serve, jobs, log, "the daemon serving this repository")
	if err != nil {
		mount.Unmount()
		return err
	}
	scheduled := make(chan struct{})
	go func() { sched.run(ctx); close(scheduled) }()
	merged := make(chan struct{})
	go func() { merge.run(ctx); close(merged) }()
	go refresh(ctx, o.Repo, notes.post, log)
	go watchdog(ctx, mount, log)
	log.Info("serving", "repo", o.Repo.Info().Dir, "mount", mnt, "metrics", metricsAddr)
	if o.Ready != nil {
		o.Ready(metricsAddr)
	}
	notify(log, "READY=1\nSTATUS=serving "+o.Repo.Info().Dir+" at "+mnt)
	external := false
	select {
	case <-ctx.Done():
		log.Info("stopping", "mount", mnt)
	case <-mount.Done():
		// umount(8), fusermount3 -u or chainfs umount: a normal way to stop.
		log.Info("unmounted from outside; stopping", "mount", mnt)
		external = true
	}
	notify(log, "STOPPING=1")
	stop()
	sock.Close()
	jobs.wait()
	<-merged
	<-scheduled
	// A command that outlived the socket's wait may still commit: it
	// finds no mount to tell, and is still logged.
	o.Repo.Watch(store.Watcher{SnapshotEnded: watcher.SnapshotEnded})
	notes.close()
	if external {
		return nil
	}
	return mount.Unmount()
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
