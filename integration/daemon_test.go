package integration

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemon is a running `chainfs serve`.
type daemon struct {
	t     *testing.T
	cmd   *exec.Cmd
	mount string
	log   *logBuffer
	out   *logBuffer // what it printed on standard output
	done  chan struct{}
}

// serve starts the daemon on e's repository, waits until it says it
// serves, and stops and unmounts it when the test ends, pass or fail.
func (e *env) serve(mount string, extra ...string) *daemon {
	e.t.Helper()
	if err := os.MkdirAll(mount, 0o755); err != nil {
		e.t.Fatal(err)
	}
	// The repository as a flag, as a person starts it: what the daemon
	// runs for a CLI must not lean on its own environment.
	args := append([]string{"--repo", e.repo, "serve", "--mount", mount, "--log-level", "info"}, extra...)
	cmd := exec.Command(chainfsBin, args...)
	cmd.Env = append(os.Environ(), e.vars...)
	// If the test binary dies (a timeout panics it, skipping Cleanup), the
	// daemon gets SIGTERM and unmounts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, _ := cmd.StdoutPipe()
	d := &daemon{t: e.t, cmd: cmd, mount: mount, log: &logBuffer{}, out: &logBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			d.out.Write([]byte(sc.Text() + "\n"))
			if !said && strings.HasPrefix(sc.Text(), "serving ") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(d.done) }()
	e.t.Cleanup(d.stop)
	select {
	case ok := <-ready:
		if !ok {
			<-d.done
			e.t.Fatalf("chainfs serve exited before serving:\n%s", d.log.String())
		}
	case <-time.After(30 * time.Second):
		e.t.Fatalf("chainfs serve did not say it serves within 30 s:\n%s", d.log.String())
	}
	return d
}

// stop sends SIGTERM and waits; whatever happens, the mount goes.
func (d *daemon) stop() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	if mounted(d.mount) {
		exec.Command("umount", "-l", d.mount).Run()
	}
	if d.t.Failed() {
		d.t.Logf("daemon log:\n%s", d.log.String())
	}
}

// mounted reports whether dir is a mount point.
func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// logBuffer collects the daemon's stderr while the test reads it.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// snapDir is the mount path of a snapshot.
func (d *daemon) snapDir(volume, snapshot string) string {
	return filepath.Join(d.mount, "volumes", volume, snapshot)
}
