//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"os"
	"time"

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
func watchdog(ctx context.Context, mnt string, log *slog.Logger) {
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
		// Listing the root always reaches the daemon: the kernel does not
		// cache it.
		answered := make(chan error, 1)
		go func() {
			_, err := os.ReadDir(mnt)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				log.Error("watchdog: the mount does not answer", "mount", mnt, "err", err)
				continue
			}
			notify(log, "WATCHDOG=1")
		case <-time.After(interval / 3):
			log.Error("watchdog: listing the mount took longer than a third of WatchdogSec", "mount", mnt)
		case <-ctx.Done():
			return
		}
	}
}
