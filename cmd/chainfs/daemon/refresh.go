//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/chainfs/chainfs/store"
)

// refreshEvery is how often a daemon serving a repository in an object
// store takes in what other hosts committed.
const refreshEvery = 5 * time.Second

// refresh takes in, every refreshEvery until ctx ends, the commits other
// hosts made to a repository in an object store, and tells changed for
// each snapshot that came or went, so that the mount shows it at once;
// it writes a checkpoint every so many entries.
// For a repository on this machine alone it returns at once.
func refresh(ctx context.Context, repo *store.Repo, changed func(volume, snapshot string), log *slog.Logger) {
	if !repo.Remote() {
		return
	}
	shown := snapshotNames(ctx, repo, log)
	tick := time.NewTicker(refreshEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := repo.Refresh(ctx)
		if err != nil {
			log.Warn("taking in other hosts' commits", "err", err)
			continue
		}
		// Every so many entries, a checkpoint for new replicas to start
		// from (no request between two).
		if _, err := repo.Checkpoint(ctx, false); err != nil {
			log.Warn("write a checkpoint of the metadata", "err", err)
		}
		if n == 0 {
			continue
		}
		now := snapshotNames(ctx, repo, log)
		for key := range now {
			if !shown[key] {
				changed(key[0], key[1])
			}
		}
		for key := range shown {
			if !now[key] {
				changed(key[0], key[1])
			}
		}
		shown = now
	}
}

// snapshotNames is every volume's snapshots, as {volume, snapshot}.
func snapshotNames(ctx context.Context, repo *store.Repo, log *slog.Logger) map[[2]string]bool {
	names := map[[2]string]bool{}
	vols, err := repo.Volumes(ctx)
	if err != nil {
		log.Warn("list volumes", "err", err)
		return names
	}
	for _, v := range vols {
		snaps, err := repo.Snapshots(ctx, v.Name)
		if err != nil {
			continue
		}
		for _, s := range snaps {
			names[[2]string{v.Name, s.Name}] = true
		}
	}
	return names
}
