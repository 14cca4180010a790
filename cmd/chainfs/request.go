package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	"github.com/chainfs/chainfs/cmd/chainfs/journal"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// operation is one thing the CLI asks of a repository, with its
// arguments as fields: parsed from a command line, then run here, or,
// when a daemon serves the repository, sent to it as a request (the
// struct as JSON) and run there by the same code. Its paths are absolute
// and its users uids, so that it means the same in either process.
type operation interface {
	run(ctx context.Context, e *env) error
}

// operations are every operation by the name a request gives it.
var operations = map[string]func() operation{
	"volume.add":       func() operation { return new(volumeAdd) },
	"volume.list":      func() operation { return new(volumeList) },
	"volume.rm":        func() operation { return new(volumeRemove) },
	"snapshot.create":  func() operation { return new(snapshotCreate) },
	"snapshot.delete":  func() operation { return new(snapshotDelete) },
	"snapshot.diff":    func() operation { return new(snapshotDiff) },
	"snapshot.hold":    func() operation { return new(snapshotHold) },
	"snapshot.release": func() operation { return new(snapshotRelease) },
	"snapshot.list":    func() operation { return new(snapshotList) },
	"restore":          func() operation { return new(restoreOp) },
	"image.create":     func() operation { return new(imageCreate) },
	"image.list":       func() operation { return new(imageList) },
	"image.show":       func() operation { return new(imageShow) },
	"image.export":     func() operation { return new(imageExport) },
	"image.import":     func() operation { return new(imageImport) },
	"image.update":     func() operation { return new(imageUpdate) },
	"image.share":      func() operation { return new(imageShare) },
	"image.publish":    func() operation { return new(imagePublish) },
	"image.copy":       func() operation { return new(imageCopy) },
	"image.rm":         func() operation { return new(imageRemove) },
	"gc":               func() operation { return new(gcOp) },
	"usage":            func() operation { return new(usageOp) },
	"chain":            func() operation { return new(chainOp) },
	"versions":         func() operation { return new(versionsOp) },
	"policy.create":    func() operation { return new(policyCreate) },
	"policy.apply":     func() operation { return new(policyApply) },
	"policy.list":      func() operation { return new(policyList) },
	"policy.prune":     func() operation { return new(policyPrune) },
	"policy.run":       func() operation { return new(policyRun) },
	"policy.rm":        func() operation { return new(policyRemove) },
	"check":            func() operation { return new(checkOp) },
	"trash.list":       func() operation { return new(trashList) },
	"trash.restore":    func() operation { return new(trashRestore) },
	"trash.empty":      func() operation { return new(trashEmpty) },
	"trash.days":       func() operation { return new(trashDays) },
	"market.add":       func() operation { return new(marketAdd) },
	"market.list":      func() operation { return new(marketList) },
	"market.refresh":   func() operation { return new(marketRefresh) },
	"market.rm":        func() operation { return new(marketRemove) },
	"market.import":    func() operation { return new(marketImport) },
	"compression":      func() operation { return new(compressionOp) },
}

// opNames is operations turned around: the name of each operation's type.
var opNames = func() map[reflect.Type]string {
	m := map[reflect.Type]string{}
	for name, newOp := range operations {
		m[reflect.TypeOf(newOp())] = name
	}
	return m
}()

// decodeOperation reads a request's body as the operation it names. A
// field the operation does not have is refused, not ignored: it would be
// an argument dropped on the floor.
func decodeOperation(name string, body []byte) (operation, error) {
	newOp, ok := operations[name]
	if !ok {
		return nil, requestError{fmt.Errorf("no operation %q", name)}
	}
	o := newOp()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(o); err != nil {
		return nil, requestError{fmt.Errorf("%s: %w", name, err)}
	}
	if dec.More() {
		return nil, requestError{fmt.Errorf("%s: data after the body", name)}
	}
	return o, nil
}

// requestError is a request the daemon refuses before running anything:
// one that a chainfs of another version sent.
type requestError struct{ err error }

func (e requestError) Error() string {
	// reportError puts "chainfs: " before it.
	return strings.TrimPrefix(daemon.RefusalPrefix, "chainfs: ") + e.err.Error()
}
func (e requestError) Unwrap() error { return e.err }

// env is what an operation runs with: the repository, who asked, and
// where its output goes.
type env struct {
	repo   *store.Repo
	caller daemon.Caller
	stdout io.Writer
	stderr io.Writer
	json   bool // --json: output for scripts
	log    *slog.Logger
	// catalog serves public images; nil when there is none.
	catalog *imagefile.Catalog
	// mount is the daemon's mount point, which snapshots and restores
	// leave out; "" when no daemon runs the operation. allowOther says the
	// daemon lets other users into it.
	mount      string
	allowOther bool
	// cache is where this process keeps its replicas of repositories in
	// buckets (--cache): the CLI's or the daemon's own, never a caller's.
	cache string
	// repoName is the repository as --repo names it, for messages: a
	// directory or s3://BUCKET[/PREFIX].
	repoName string
}

// cliEnv is the environment of a command that runs in this process.
func cliEnv(c *cli.Context) *env {
	e := &env{
		caller: daemon.Caller{UID: uint32(os.Geteuid()), Stdin: os.Stdin, Stdout: os.Stdout,
			StderrTTY: c.App.ErrWriter == os.Stderr && term.IsTerminal(int(os.Stderr.Fd()))},
		stdout: c.App.Writer, stderr: c.App.ErrWriter, json: c.Bool("json"), log: logger(c), cache: cacheDir(c),
		repoName: repoName(c),
	}
	return e
}

// library is every image an operation may name: the repository's and
// the catalog's.
func (e *env) library() *imagefile.Library {
	return &imagefile.Library{Repo: e.repo, Catalog: e.catalog}
}

// request makes the action of a command that is an operation: the
// command line is parsed into one, which is submitted.
func request(parse func(c *cli.Context) (operation, error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		o, err := parse(c)
		if err != nil {
			return err
		}
		return submit(c, o)
	}
}

// submit runs an operation on the repository the command line names: in
// the daemon serving it, when one does, else here on the repository
// opened for it.
func submit(c *cli.Context, o operation) error {
	req, err := newRequest(o)
	if err != nil {
		return err
	}
	e := cliEnv(c)
	// A level slog does not know is warn, here and in the daemon.
	req.JSON, req.LogLevel = e.json, logLevel(c.String("log-level")).String()
	if dir := c.String("catalog"); dir != "" {
		if req.Catalog, err = filepath.Abs(dir); err != nil {
			return fmt.Errorf("--catalog %s: %w", dir, err)
		}
		e.catalog = imagefile.OpenCatalog(req.Catalog, e.log)
	}
	refused := &refusalWatch{w: e.stderr}
	code, served, err := daemon.Send(c.Context, repoDir(c), req, daemon.Streams{In: os.Stdin, Out: os.Stdout,
		Stdout: e.stdout, Stderr: refused, StderrTTY: e.caller.StderrTTY})
	switch {
	case err != nil:
		return err
	case served && code == exitUsage && refused.seen:
		fmt.Fprintln(e.stderr, "chainfs: the daemon serving this repository runs another version of chainfs: "+
			"restart it with this one (chainfs umount its mount point, then mount or serve again)")
		return exitStatus(code)
	case served && code != exitOK:
		return exitStatus(code)
	case served:
		return nil
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		ctx, stop := context.WithCancel(c.Context)
		defer stop()
		go softMemoryLimit(ctx, commandMemoryLimit, e.log)
	}
	return withRepo(c, func(r *store.Repo) error {
		e.repo = r
		defer lendRepo(c, r, e.log)()
		return o.run(c.Context, e)
	})
}

// readOnlyOps are the operations a command holding the repository answers
// for others (lendRepo): they only read, and end soon.
var readOnlyOps = map[string]bool{
	"volume.list": true, "snapshot.list": true, "snapshot.diff": true, "versions": true,
	"image.list": true, "image.show": true, "usage": true,
	"policy.list": true, "trash.list": true, "market.list": true,
}

// lendRepo answers, on the repository's socket, the commands that only
// read it (readOnlyOps) run by others while this command holds it
// without a daemon: snapshot list works while a long snapshot runs.
// Others are told which command holds the repository. The returned func
// stops, once the requests being answered have ended.
func lendRepo(c *cli.Context, r *store.Repo, log *slog.Logger) func() {
	s := &served{repo: r, cache: cacheDir(c), repoName: repoName(c)}
	answer := func(ctx context.Context, req daemon.Request, stdout, stderr io.Writer, caller daemon.Caller) int {
		if !readOnlyOps[req.Op] {
			fmt.Fprintf(stderr, "chainfs: %s: %s, which answers only commands that only read it meanwhile; try again when it ends\n",
				repoName(c), r.Holder())
			return exitBusy
		}
		return s.serve(ctx, req, stdout, stderr, caller)
	}
	// Others' requests are not this command's to log on its stderr.
	l, err := daemon.Lend(c.Context, repoDir(c), answer, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Debug("others' commands will find the repository locked", "err", err)
		return func() {}
	}
	return func() { l.Close() }
}

// refusalWatch passes a daemon's standard error on and notes whether the
// daemon refused the request itself (a daemon of another version),
// rather than an operation failing.
type refusalWatch struct {
	w    io.Writer
	seen bool
}

func (r *refusalWatch) Write(p []byte) (int, error) {
	// The second is what daemons said before requests were typed.
	if bytes.HasPrefix(p, []byte(daemon.RefusalPrefix)) || bytes.HasPrefix(p, []byte("chainfs: malformed request to the daemon")) {
		r.seen = true
	}
	return r.w.Write(p)
}

// newRequest is the request that asks a daemon to run o.
func newRequest(o operation) (daemon.Request, error) {
	name, ok := opNames[reflect.TypeOf(o)]
	if !ok {
		panic(fmt.Sprintf("operation %T is not in operations", o))
	}
	body, err := json.Marshal(o)
	if err != nil {
		return daemon.Request{}, fmt.Errorf("request %s: %w", name, err)
	}
	req := daemon.Request{Op: name, Body: body}
	if s, ok := o.(secretHolder); ok {
		req.Secret = s.secret()
	}
	return req, nil
}

// secretHolder is an operation that needs a password: it travels in the
// request's Secret, never in its body (json:"-").
type secretHolder interface {
	secret() []byte
	setSecret([]byte)
}

// served is what the daemon lends the operations it runs.
type served struct {
	repo       *store.Repo
	mount      string
	allowOther bool
	catalog    *imagefile.Catalog
	cache      string
	// repoName is the daemon's --repo (env.repoName).
	repoName string
}

// serve is the daemon's handler of requests: it runs the operation a
// request names, as the CLI would have, and reports its end as the CLI
// does.
func (s *served) serve(ctx context.Context, req daemon.Request, stdout, stderr io.Writer, caller daemon.Caller) int {
	log := newLogger(req.LogLevel, stderr)
	o, err := decodeOperation(req.Op, req.Body)
	if err != nil {
		return reportError(err, stderr)
	}
	if s, ok := o.(secretHolder); ok {
		s.setSecret(req.Secret)
	} else if req.Secret != nil {
		return reportError(requestError{fmt.Errorf("%s takes no password", req.Op)}, stderr)
	}
	e := &env{repo: s.repo, caller: caller, stdout: stdout, stderr: stderr, json: req.JSON, log: log,
		catalog: s.catalog, mount: s.mount, allowOther: s.allowOther, cache: s.cache, repoName: s.repoName}
	if e.catalog == nil && req.Catalog != "" {
		e.catalog = imagefile.OpenCatalog(req.Catalog, log)
	}
	return reportError(o.run(ctx, e), stderr)
}

// logger is the command's slog logger at the --log-level: to the journal
// when systemd runs chainfs with its standard error there, else as text
// to the command's standard error.
func logger(c *cli.Context) *slog.Logger {
	if c.App.ErrWriter == os.Stderr && journal.Wanted() {
		return slog.New(journal.NewHandler(logLevel(c.String("log-level"))))
	}
	return newLogger(c.String("log-level"), c.App.ErrWriter)
}

// newLogger logs as text to w at level (warn when it names none).
func newLogger(level string, w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: logLevel(level)}))
}

func logLevel(s string) slog.Level {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		level = slog.LevelWarn
	}
	return level
}

// needAbsolute refuses a path that is not absolute and clean: the CLI
// makes every path it sends so, as the daemon's own directory means
// nothing to the caller, and a trailing "/" or ".." would mean another
// name than the one the CLI resolved.
func needAbsolute(what, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return usagef("%s %q is not an absolute, clean path", what, p)
	}
	return nil
}
