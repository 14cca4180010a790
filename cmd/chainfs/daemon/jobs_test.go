//go:build linux

package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// asCaller is ctx as a FUSE request of uid carries it.
func asCaller(ctx context.Context, uid uint32) context.Context {
	return fuse.NewContext(ctx, &fuse.Caller{Owner: fuse.Owner{Uid: uid, Gid: uid}, Pid: 1})
}

// TestStatusShowsEachReaderItsOwnJobs: a reader sees the jobs it asked
// for and nothing of another user's (not even the names in them); root
// sees every job.
func TestStatusShowsEachReaderItsOwnJobs(t *testing.T) {
	ctx := context.Background()
	r := newRunner(ctx, nil, "", slog.New(slog.DiscardHandler))
	r.Reject(asCaller(ctx, 1001), "export", "v/s alice-image /home/alice/out", errors.New("no"))
	r.Reject(asCaller(ctx, 1002), "export", "v/s bob-private /home/bob/out", errors.New("no"))
	r.add("cli", "image export root-only /root/x", "done", 0)
	wait, err := r.start(asCaller(ctx, 1001), "snapshot", "v", "", "v alice-snap", func(ctx context.Context, begun func()) (any, error) {
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wait(ctx)

	alice := string(r.Status(1001))
	if !strings.Contains(alice, "alice-image") || !strings.Contains(alice, "alice-snap") {
		t.Errorf("uid 1001 does not see its own jobs:\n%s", alice)
	}
	for _, other := range []string{"bob-private", "root-only"} {
		if strings.Contains(alice, other) {
			t.Errorf("uid 1001 sees another user's job %s:\n%s", other, alice)
		}
	}
	if nobody := r.Status(65534); len(nobody) != 0 {
		t.Errorf("a user with no jobs sees:\n%s", nobody)
	}
	if all := string(r.Status(0)); strings.Count(all, "\n") != 4 || !strings.Contains(all, `"uid":1002`) {
		t.Errorf("root does not see every job with its uid:\n%s", all)
	}
}

// TestJobCommandsAreRedacted: a URL's password never reaches the job list
// nor the log lines of a job, whichever way the command came.
func TestJobCommandsAreRedacted(t *testing.T) {
	ctx := context.Background()
	var logged bytes.Buffer
	r := newRunner(ctx, nil, "", slog.New(slog.NewTextHandler(&logged, nil)))
	const url = "https://user:secret@127.0.0.1:1/x"
	r.add("cli", "image import x "+url, "running", 0)
	r.Reject(asCaller(ctx, 0), "snapshot", "v --from="+url, errors.New("no"))
	r.skip("auto", "v "+url, "busy")
	wait, err := r.start(ctx, "snapshot", "v", "", "v "+url, func(ctx context.Context, begun func()) (any, error) {
		return nil, errors.New("failed")
	})
	if err == nil {
		err = wait(ctx)
	}
	if err == nil {
		t.Fatal("the failing job did not fail")
	}
	status := string(r.Status(0))
	if strings.Contains(status, "secret") || strings.Count(status, "user:xxxxx@127.0.0.1") != 4 {
		t.Errorf("status:\n%s", status)
	}
	if strings.Contains(logged.String(), "secret") || !strings.Contains(logged.String(), "user:xxxxx@") {
		t.Errorf("log:\n%s", logged.String())
	}
}
