//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxRecent is how many finished jobs status keeps.
const maxRecent = 100

// job is one unit of work, as status shows it.
type job struct {
	ID       int       `json:"id"`
	Op       string    `json:"op"`
	Command  string    `json:"command"`
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

func (r *runner) add(op, command, state string) *job {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	j := &job{ID: r.nextID, Op: op, Command: command, State: state, Started: time.Now().UTC()}
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

// start runs fn as a job on the daemon's context. It returns once fn
// calls begun, or fails before it does; wait then gives the outcome. The
// job goes on if the caller stops waiting.
func (r *runner) start(ctx context.Context, op, volume, snapshot, command string, fn func(ctx context.Context, begun func()) (any, error)) (wait func(context.Context) error, err error) {
	command = strings.TrimSpace(command)
	j := r.add(op, command, "running")
	attrs := []any{"op", op, "volume", volume}
	if snapshot != "" {
		attrs = append(attrs, "snapshot", snapshot)
	}
	attrs = append(attrs, "command", command)
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

// Delete deletes a snapshot (chainfs.Controller).
func (r *runner) Delete(ctx context.Context, volume, snapshot string) error {
	wait, err := r.start(ctx, "delete", volume, snapshot, volume+"/"+snapshot, func(ctx context.Context, begun func()) (any, error) {
		return nil, r.repo.DeleteSnapshot(ctx, volume, snapshot)
	})
	if err != nil {
		return err
	}
	return wait(ctx)
}

// Export makes an image from a snapshot and, with a file, writes it there
// (chainfs.Controller). The image belongs to the caller that wrote the
// command.
func (r *runner) Export(ctx context.Context, volume, snapshot, image, file string) error {
	owner := uint32(0)
	if c, ok := fuse.FromContext(ctx); ok {
		owner = c.Uid
	}
	command := strings.TrimSpace(volume + "/" + snapshot + " " + image + " " + file)
	wait, err := r.start(ctx, "export", volume, snapshot, command, func(ctx context.Context, begun func()) (any, error) {
		img, err := r.repo.CreateImage(ctx, image, volume, snapshot, store.ImageMeta{Owner: owner})
		if err != nil {
			return nil, err
		}
		out := map[string]any{"image": img.Name, "from": img.Origin.String()}
		if file == "" {
			return out, nil
		}
		format := imagefile.FormatNative
		if strings.HasSuffix(file, ".tar") {
			format = imagefile.FormatTar
		}
		st, err := imagefile.ExportFile(ctx, r.repo, img, file, format, false, nil)
		if err != nil {
			r.repo.RemoveImage(context.WithoutCancel(ctx), image)
			return nil, fmt.Errorf("export %s to %s: %w", image, file, err)
		}
		out["file"], out["format"], out["bytes"] = file, format, st.StreamBytes
		return out, nil
	})
	if err != nil {
		return err
	}
	return wait(ctx)
}

// skip records a scheduled job that did not run and why.
func (r *runner) skip(op, command, why string) {
	j := r.add(op, command, "skipped")
	r.mu.Lock()
	j.Error, j.Finished = why, time.Now().UTC()
	r.mu.Unlock()
}

// Reject records a command refused before it ran (chainfs.Controller).
func (r *runner) Reject(file, command string, err error) {
	j := r.add(file, command, "rejected")
	r.mu.Lock()
	j.Error, j.Finished = err.Error(), time.Now().UTC()
	r.mu.Unlock()
}

// Status is every running and recent job, one JSON object a line
// (chainfs.Controller).
func (r *runner) Status() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []byte
	for _, j := range r.jobs {
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
