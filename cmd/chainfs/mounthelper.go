package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/chainfs/chainfs/cmd/chainfs/journal"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/s3"
	"github.com/urfave/cli/v2"
)

// mountHelperNames are the names under which chainfs acts as mount(8)'s
// helper for the type fuse.chainfs (installed as a link to chainfs).
var mountHelperNames = []string{"mount.fuse.chainfs", "mount.chainfs"}

// mountReadyTimeout bounds the wait for the daemon the helper starts.
const mountReadyTimeout = 2 * time.Minute

// ignoredMountOptions are fstab options for mount(8) or systemd, or the
// generic ones a read-only FUSE mount has anyway.
var ignoredMountOptions = map[string]bool{"defaults": true, "auto": true, "noauto": true, "nofail": true,
	"user": true, "users": true, "nouser": true, "owner": true, "group": true, "rw": true, "ro": true,
	"_netdev": true, "dev": true, "nodev": true, "suid": true, "nosuid": true, "exec": true, "noexec": true,
	"atime": true, "noatime": true, "relatime": true, "strictatime": true, "nodiratime": true,
	"sync": true, "async": true, "loud": true, "silent": true}

// pathOptions are the options whose value is a path.
var pathOptions = map[string]bool{"cache": true, "config": true, "catalog": true}

// mountRequest is a mount(8) helper's command line, read.
type mountRequest struct {
	source, dir string
	options     []string
	fake        bool // -f: do everything but mount
	sloppy      bool // -s: ignore options not understood
	verbose     bool // -v
}

// parseMountArgs reads SOURCE DIR [-fnsv] [-o OPTIONS] [-t TYPE], in any
// order, as mount(8) passes them.
func parseMountArgs(args []string) (*mountRequest, error) {
	req := &mountRequest{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "-t" || a == "-N":
			if i+1 == len(args) {
				return nil, fmt.Errorf("%s needs a value", a)
			}
			i++
			if a == "-o" {
				req.options = append(req.options, strings.Split(args[i], ",")...)
			} else if a == "-N" {
				return nil, fmt.Errorf("-N (mounting in another namespace) is not supported")
			}
		case strings.HasPrefix(a, "-o"):
			req.options = append(req.options, strings.Split(a[2:], ",")...)
		case strings.HasPrefix(a, "-t"):
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for _, f := range a[1:] {
				switch f {
				case 'f':
					req.fake = true
				case 's':
					req.sloppy = true
				case 'v':
					req.verbose = true
				case 'n': // no mtab: there is none to write
				default:
					return nil, fmt.Errorf("unknown flag -%c", f)
				}
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, fmt.Errorf("usage: mount.fuse.chainfs REPOSITORY DIR [-o OPTIONS]")
	}
	req.source, req.dir = pos[0], pos[1]
	return req, nil
}

// serveArgs turns the request into the command line of chainfs serve.
// The source is the repository's absolute path. (A word standing for the
// configured repository would not do: libmount turns a source that names
// an entry of the current directory into its path.) Each option
// OPT[=VALUE] is the flag --OPT of serve or a global flag, with _ for -
// (allow_other, metrics=ADDR, config=FILE); metrics= turns off metrics a
// configuration file asks for.
func (req *mountRequest) serveArgs(app *cli.App) ([]string, error) {
	source := req.source
	switch {
	case s3.IsURL(source):
		if _, err := s3.ParseURL(source); err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
	case !filepath.IsAbs(source):
		return nil, fmt.Errorf("source %q: give the repository's absolute path or s3://BUCKET[/PREFIX]", source)
	default:
		source = filepath.Clean(source)
	}
	globals, serve := []string{"--repo", source}, []string(nil)
	serveCmd := findCommand(app.Commands, "serve")
	for _, opt := range req.options {
		name, val, hasVal := strings.Cut(opt, "=")
		if name == "" || ignoredMountOptions[name] || strings.HasPrefix(name, "x-") || name == "comment" {
			continue
		}
		flag := strings.ReplaceAll(name, "_", "-")
		target := &serve
		f := flagIn(serveCmd.Flags, flag)
		if f == nil && flag != "repo" {
			f, target = flagIn(app.Flags, flag), &globals
		}
		if f == nil || flag == "mount" || flag == "debug-fuse" {
			if req.sloppy {
				continue
			}
			return nil, fmt.Errorf("unknown option %q", opt)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if hasVal {
				*target = append(*target, "--"+flag+"="+val)
			} else {
				*target = append(*target, "--"+flag)
			}
			continue
		}
		if !hasVal || (val == "" && flag != "metrics") {
			return nil, fmt.Errorf("option %s needs a value: %s=...", name, name)
		}
		if pathOptions[flag] {
			// The daemon runs in /: a path is the one mount was given.
			if abs, err := filepath.Abs(val); err == nil {
				val = abs
			}
		}
		*target = append(*target, "--"+flag+"="+val)
	}
	dir, err := filepath.Abs(req.dir)
	if err != nil {
		return nil, err
	}
	return append(append(globals, "serve", "--mount", dir), serve...), nil
}

// mountHelper is chainfs run as mount.fuse.chainfs: it starts chainfs
// serve in the background, in a session of its own, and returns once the
// mount serves, or with the daemon's error.
func mountHelper(ctx context.Context, args []string, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "mount.fuse.chainfs:", errorText(err))
		return 32 // mount(8): mount failure
	}
	req, err := parseMountArgs(args)
	if err != nil {
		return fail(err)
	}
	serveArgs, err := req.serveArgs(newApp())
	if err != nil {
		return fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	if req.verbose || req.fake {
		fmt.Fprintln(stderr, "chainfs", strings.Join(serveArgs, " "))
	}
	if req.fake {
		return 0
	}
	// The repository is checked before the daemon's log is moved or
	// opened in it: as root, not in a folder another user can change.
	cmdline := append([]string{"chainfs"}, serveArgs...)
	repo := repoDirFromArgs(cmdline)
	if s3.IsURL(repo) {
		if repo, err = attachReplica(ctx, cmdline, repo); err != nil {
			return fail(err)
		}
	}
	if err := store.CheckTrusted(repo); err != nil {
		return fail(err)
	}
	if _, err := store.ReadInfo(repo); err != nil {
		return fail(err)
	}
	if err := startDaemon(ctx, self, serveArgs, repo); err != nil {
		return fail(err)
	}
	return 0
}

// attachReplica makes or brings up to date this host's replica of the
// repository in a bucket that the command line args names (repo), and
// returns its directory, where the daemon's log goes. Opening it here
// tells mount(8) at once of a wrong endpoint, key or bucket; the object
// store's settings among args go to the environment, which the daemon
// inherits.
func attachReplica(ctx context.Context, args []string, repo string) (string, error) {
	for flag, name := range s3Environment {
		if v := globalFromArgs(args, flag); v != "" {
			os.Setenv(name, v)
		}
	}
	opts, err := repoOptions(repo, absCacheDir(globalFromArgs(args, "cache")))
	if err != nil {
		return "", err
	}
	opts.Purpose = "mount.fuse.chainfs " + repo
	opts.Password, opts.Command = passwordsFromEnv().read, "mount.fuse.chainfs"
	r, err := store.Open(ctx, opts)
	if err != nil {
		return "", err
	}
	return opts.Dir, r.Close()
}

// startDaemon runs chainfs with args detached from the caller and waits
// for it to say it is ready over the service manager's protocol. Its log
// goes to the journal when there is one, else to daemon.log in the
// repository.
func startDaemon(ctx context.Context, self string, args []string, repo string) error {
	// The socket sits in a directory only this process's user can enter,
	// so no one else can tell it the daemon is ready.
	dir, err := os.MkdirTemp("", "chainfs-mount-")
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer os.RemoveAll(dir)
	sockName := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockName, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer sock.Close()

	cmd := exec.Command(self, args...)
	cmd.Env = append(withoutEnv(os.Environ(), "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"), "NOTIFY_SOCKET="+sockName)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Not mount's directory, which the daemon would keep busy.
	cmd.Dir = "/"
	var logFile *os.File
	var logStart int64
	if journal.StderrIsJournal() {
		cmd.Stderr = os.Stderr
	} else {
		if logFile, err = openDaemonLog(filepath.Join(repo, "daemon.log")); err != nil {
			return fmt.Errorf("daemon log: %w", err)
		}
		defer logFile.Close()
		logStart, _ = logFile.Seek(0, io.SeekEnd)
		cmd.Stderr = logFile
		if journal.Available() {
			// The log goes to the journal; the file keeps what the
			// daemon prints on standard error (its fatal error).
			cmd.Env = append(cmd.Env, journal.HelperEnv)
		}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line == "READY=1" {
					close(ready)
					return
				}
			}
		}
	}()
	select {
	case <-ready:
		// The daemon goes on alone; its exit status is its own.
		return nil
	case err := <-exited:
		if logFile != nil {
			if msg := logTail(logFile.Name(), logStart); msg != "" {
				return errors.New(msg)
			}
			return fmt.Errorf("chainfs serve ended before it mounted: %v (see %s)", err, logFile.Name())
		}
		return fmt.Errorf("chainfs serve ended before it mounted: %v (its error is in the journal: journalctl -t chainfs)", err)
	case <-time.After(mountReadyTimeout):
		cmd.Process.Signal(syscall.SIGTERM)
		return fmt.Errorf("chainfs serve did not mount within %v; stopped it", mountReadyTimeout)
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		return ctx.Err()
	}
}

// maxDaemonLog is the size at which daemon.log is moved to daemon.log.1
// when a daemon starts, so that it does not grow for ever.
const maxDaemonLog = 8 << 20

// openDaemonLog opens the log for appending. The repository may belong to
// a user, and a root daemon must not append to a file that user chose: a
// symlink there is refused, not followed, and so is anything but a plain
// file of one link (a hard link to another file, where the kernel lets a
// user make one).
func openDaemonLog(path string) (*os.File, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Size() > maxDaemonLog {
		os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink != 1 {
		f.Close()
		return nil, fmt.Errorf("%s: not a plain file of its own (%d links); move it away", path, st.Nlink)
	}
	return f, nil
}

// logTail is what the daemon wrote to its log from off: its error lines.
func logTail(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	f.Seek(off, io.SeekStart)
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimPrefix(sc.Text(), "chainfs: "); l != sc.Text() {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || name == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}
