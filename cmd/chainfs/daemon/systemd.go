//go:build linux

package daemon

import (
	"context"
	"errors"
	"log/slog"
	"time"

	chainfs "github.com/chainfs/chainfs/fs"
	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notify tells the service manager of a state change ("READY=1",
// "STOPPING=1", "STATUS=..."): systemd for a Type=notify unit, or the
// mount helper waiting for the daemon it started. Without NOTIFY_SOCKET
// it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		// A mount helper stops listening once the daemon is ready.
		log.Debug("cannot notify the service manager", "state", state, "err", err)
	}
}

// watchdog pings systemd while the mount answers, when the unit sets
// WatchdogSec: a daemon whose mount hangs is then restarted. It returns
// when ctx is done.
func watchdog(ctx context.Context, mount *chainfs.MountPoint, log *slog.Logger) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	tick := time.NewTicker(interval / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		switch err := mount.Probe(interval / 3); {
		case err == nil:
			notify(log, "WATCHDOG=1")
		case errors.Is(err, chainfs.ErrNoAnswer):
			log.Error("watchdog: listing the mount took longer than a third of WatchdogSec", "mount", mount.Dir())
		default:
			log.Error("watchdog: the mount does not answer", "mount", mount.Dir(), "err", err)
		}
	}
}
