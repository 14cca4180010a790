//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chainfs/chainfs/cmd/chainfs/redact"
	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/images"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxRecent is how many finished jobs status keeps.
const maxRecent = 100

// job is one unit of work, as status shows it.
type job struct {
	ID      int    `json:"id"`
	Op      string `json:"op"`
	Command string `json:"command"`
	// UID is who asked for the job: the socket's peer, the writer of a
	// control file, the daemon's own uid for a scheduled job. Status shows
	// a job only to its UID (and to root and the daemon's user).
	UID      uint32    `json:"uid"`
	State    string    `json:"state"` // running, done, failed, rejected
	Error    string    `json:"error,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Result   any       `json:"result,omitempty"`
}

// runner runs the jobs of the control directory and the CLI and keeps
// their record. It implements chainfs.Controller.
type runner struct {
	ctx   context.Context // the daemon's: jobs outlive the request that started them
	repo  *store.Repo
	mount string
	log   *slog.Logger
	wg    sync.WaitGroup

	mu     sync.Mutex
	nextID int
	jobs   []*job // running and recent, oldest first
}

func newRunner(ctx context.Context, repo *store.Repo, mount string, log *slog.Logger) *runner {
	return &runner{ctx: ctx, repo: repo, mount: mount, log: log}
}

// add records a job. Its command line is redacted here, where every job
// enters the record, so that neither status nor the log lines that quote
// j.Command carry a URL's password.
func (r *runner) add(op, command, state string, uid uint32) *job {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	j := &job{ID: r.nextID, Op: op, Command: redact.URLs(command), UID: uid, State: state, Started: time.Now().UTC()}
	r.jobs = append(r.jobs, j)
	// Drop the oldest finished jobs beyond maxRecent.
	for len(r.jobs) > maxRecent {
		i := 0
		for i < len(r.jobs) && r.jobs[i].State == "running" {
			i++
		}
		if i == len(r.jobs) {
			break
		}
		r.jobs = append(r.jobs[:i], r.jobs[i+1:]...)
	}
	return j
}

func (r *runner) finish(j *job, result any, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j.Finished = time.Now().UTC()
	j.Result = result
	if err != nil {
		j.State, j.Error = "failed", err.Error()
		return
	}
	j.State = "done"
}

// callerUID is who asked for the work under ctx: the caller of a FUSE
// request, else the daemon itself (a scheduled job).
func callerUID(ctx context.Context) uint32 {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid
	}
	return uint32(os.Geteuid())
}

// start runs fn as a job on the daemon's context. It returns once fn
// calls begun, or fails before it does; wait then gives the outcome. The
// job goes on if the caller stops waiting.
func (r *runner) start(ctx context.Context, op, volume, snapshot, command string, fn func(ctx context.Context, begun func()) (any, error)) (wait func(context.Context) error, err error) {
	j := r.add(op, strings.TrimSpace(command), "running", callerUID(ctx))
	attrs := []any{"op", op, "volume", volume}
	if snapshot != "" {
		attrs = append(attrs, "snapshot", snapshot)
	}
	attrs = append(attrs, "command", j.Command, "uid", j.UID)
	done := make(chan struct{})
	started := make(chan struct{})
	var jobErr error
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t0 := time.Now()
		res, err := fn(r.ctx, sync.OnceFunc(func() { close(started) }))
		r.finish(j, res, err)
		attrs := append(attrs, "took", time.Since(t0).Round(time.Millisecond))
		if err != nil {
			r.log.Warn("job failed", append(attrs, "err", err)...)
		} else {
			r.log.Info("job done", attrs...)
		}
		jobErr = err
		close(done)
	}()
	wait = func(ctx context.Context) error {
		select {
		case <-done:
			return jobErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-started:
		return wait, nil
	case <-done:
		if jobErr != nil {
			return nil, jobErr
		}
		return wait, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Snapshot starts a snapshot (chainfs.Controller).
func (r *runner) Snapshot(ctx context.Context, volume, name string) (func(context.Context) error, error) {
	return r.start(ctx, "snapshot", volume, name, volume+" "+name, func(ctx context.Context, begun func()) (any, error) {
		res, err := source.Snapshot(ctx, r.repo, volume, store.SnapshotOptions{Name: name},
			source.Options{Skip: []string{r.mount}, Logger: r.log, Started: func(string) { begun() }})
		if err != nil {
			return nil, err
		}
		out := map[string]any{"volume": volume, "snapshot": res.Snapshot.Name, "stats": res.Snapshot.Stats}
		if len(res.Warnings) > 0 {
			var ws []string
			for _, w := range res.Warnings {
				ws = append(ws, w.String())
			}
			out["warnings"] = ws
		}
		return out, nil
	})
}

// Delete starts deleting a snapshot (chainfs.Controller): into the trash
// while the repository keeps one. It returns once
// the snapshot is known to exist, not to be held, and its volume to be
// free; a snapshot
// that starts in between makes the job fail with ErrBusy, from wait.
func (r *runner) Delete(ctx context.Context, volume, snapshot string) (func(context.Context) error, error) {
	uid := callerUID(ctx)
	return r.start(ctx, "delete", volume, snapshot, volume+"/"+snapshot, func(ctx context.Context, begun func()) (any, error) {
		if snapshot == "latest" {
			// The store's one check refuses it, without touching anything,
			// before the job begins, so that write() says so.
			return nil, r.repo.DeleteSnapshot(ctx, volume, snapshot)
		}
		s, err := r.repo.Snapshot(ctx, volume, snapshot)
		if err != nil {
			return nil, err
		}
		if err := s.Refusal(); err != nil {
			return nil, err
		}
		if v, err := r.repo.Volume(ctx, volume); err == nil && v.Running != "" {
			return nil, fmt.Errorf("volume %s: %s is running: %w", volume, v.Running, store.ErrBusy)
		}
		begun()
		_, err = r.repo.DiscardSnapshot(ctx, volume, snapshot, store.Trashed{UID: uid, By: "manual"})
		return nil, err
	})
}

// Export starts making an image from a snapshot and, with a file, writing
// it there (chainfs.Controller). It returns once the image is made; the
// file is wait's business. The image belongs to the caller that wrote the
// command. The file is 0600, as the repository's data is, and made by the
// daemon as the repository's owner: only root and that owner may write
// the command, and root opens no repository another user can change, so
// the writer may create the file wherever the daemon may.
func (r *runner) Export(ctx context.Context, volume, snapshot, image, file string) (func(context.Context) error, error) {
	owner := uint32(0)
	if c, ok := fuse.FromContext(ctx); ok {
		owner = c.Uid
	}
	command := volume + "/" + snapshot + " " + image + " " + file
	return r.start(ctx, "export", volume, snapshot, command, func(ctx context.Context, begun func()) (any, error) {
		img, err := images.Create(ctx, r.repo, image, volume, snapshot, images.Meta{Owner: owner})
		if err != nil {
			return nil, err
		}
		begun()
		out := map[string]any{"image": img.Name, "from": img.Origin.String()}
		if file == "" {
			return out, nil
		}
		format := imagefile.FormatNative
		if strings.HasSuffix(file, ".tar") {
			format = imagefile.FormatTar
		}
		dir, err := restore.OpenDir(filepath.Dir(file))
		var st *imagefile.ExportStats
		if err == nil {
			st, err = imagefile.ExportFile(ctx, r.repo, img, dir, filepath.Base(file), format, false, nil, nil)
			dir.Close()
		}
		if err != nil {
			images.Remove(context.WithoutCancel(ctx), r.repo, image)
			return nil, fmt.Errorf("export %s to %s: %w", image, file, err)
		}
		out["file"], out["format"], out["bytes"] = file, format, st.StreamBytes
		return out, nil
	})
}

// skip records a scheduled job that did not run and why.
func (r *runner) skip(op, command, why string) {
	j := r.add(op, command, "skipped", uint32(os.Geteuid()))
	r.mu.Lock()
	j.Error, j.Finished = why, time.Now().UTC()
	r.mu.Unlock()
}

// Reject records a command refused before it ran (chainfs.Controller).
func (r *runner) Reject(ctx context.Context, file, command string, err error) {
	j := r.add(file, command, "rejected", callerUID(ctx))
	r.mu.Lock()
	j.Error, j.Finished = err.Error(), time.Now().UTC()
	r.mu.Unlock()
}

// Status is the running and recent jobs that reader may see, one JSON
// object a line (chainfs.Controller): root and the daemon's own user see
// every job, anybody else only the jobs they asked for. A command names
// volumes, snapshots, images and files that are its caller's business.
func (r *runner) Status(reader uint32) []byte {
	all := reader == 0 || reader == uint32(os.Geteuid())
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []byte
	for _, j := range r.jobs {
		if !all && j.UID != reader {
			continue
		}
		b, err := json.Marshal(j)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": errors.Unwrap(err).Error()})
		}
		out = append(append(out, b...), '\n')
	}
	return out
}

// wait waits for running jobs; the daemon's context is done by then, so
// they stop soon.
func (r *runner) wait() { r.wg.Wait() }
