// Package s3test starts a real S3 server for tests: the MinIO binary
// that $CHAINFS_MINIO names (make test builds a pinned one, once per
// machine, outside the repository), or SeaweedFS's, $CHAINFS_WEED (make
// test-engines builds one), on 127.0.0.1 at free ports, with random
// credentials and a data directory of the test's own, stopped when the
// test ends, also when it fails.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store/s3"
)

// Server is an S3 server a test started.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint  string
	AccessKey string
	SecretKey string
	engine    engine
	bin, addr string
	dir, data string
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *os.File
}

// engine is how to run one S3 server.
type engine struct {
	name string
	// command is the server's arguments and environment.
	command func(s *Server, t testing.TB) (args, env []string)
	// health is the path that answers 200 once the server serves.
	health string
}

// Binary is the MinIO server the tests run, or "" when none is named.
func Binary() string { return os.Getenv("CHAINFS_MINIO") }

var minio = engine{name: "MinIO", health: "/minio/health/cluster",
	command: func(s *Server, _ testing.TB) ([]string, []string) {
		// /minio/health/ready answers before the server serves; the
		// cluster's health only once it does.
		return []string{"server", "--quiet", "--address", s.addr, s.data},
			[]string{"MINIO_ROOT_USER=" + s.AccessKey, "MINIO_ROOT_PASSWORD=" + s.SecretKey, "MINIO_BROWSER=off"}
	}}

// Start starts a MinIO server for t, or skips t when $CHAINFS_MINIO names
// none (make test always names one).
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("$CHAINFS_MINIO names no MinIO server (make test builds one)")
	}
	return startEngine(t, minio, bin)
}

// StartSeaweed starts SeaweedFS (master, volume server, filer and S3
// gateway in one process) for t, or skips t when $CHAINFS_WEED names no
// weed binary (make test-engines builds one).
func StartSeaweed(t testing.TB) *Server {
	t.Helper()
	bin := os.Getenv("CHAINFS_WEED")
	if bin == "" {
		t.Skip("$CHAINFS_WEED names no SeaweedFS binary (make test-engines builds one)")
	}
	return startEngine(t, seaweed, bin)
}

var seaweed = engine{name: "SeaweedFS", health: "/healthz",
	command: func(s *Server, t testing.TB) ([]string, []string) {
		config := filepath.Join(s.dir, "s3.json")
		identities := fmt.Sprintf(`{"identities":[{"name":"test","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","List","Tagging","Write"]}]}`,
			s.AccessKey, s.SecretKey)
		if err := os.WriteFile(config, []byte(identities), 0o600); err != nil {
			t.Fatal(err)
		}
		_, s3port, _ := net.SplitHostPort(s.addr)
		port := func() string { _, p, _ := net.SplitHostPort(freeAddress(t)); return p }
		os.MkdirAll(s.data, 0o700)
		return []string{"server", "-dir=" + s.data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
			"-master.port=" + port(), "-master.port.grpc=" + port(), "-volume.port=" + port(), "-volume.port.grpc=" + port(),
			"-filer.port=" + port(), "-filer.port.grpc=" + port(), "-s3", "-s3.port=" + s3port, "-s3.port.grpc=" + port(),
			"-s3.config=" + config}, nil
	}}

// StartChosen starts the engine $CHAINFS_S3_ENGINE names: "seaweedfs",
// else MinIO. The store's tests run on it, so that one set of tests
// checks a second engine (make test-engines).
func StartChosen(t testing.TB) *Server {
	t.Helper()
	if os.Getenv("CHAINFS_S3_ENGINE") == "seaweedfs" {
		return StartSeaweed(t)
	}
	return Start(t)
}

func startEngine(t testing.TB, e engine, bin string) *Server {
	dir := t.TempDir()
	s := &Server{AccessKey: "ak" + random(8), SecretKey: random(20), engine: e, bin: bin, addr: freeAddress(t),
		dir: dir, data: filepath.Join(dir, "data")}
	s.Endpoint = "http://" + s.addr
	var err error
	if s.log, err = os.Create(filepath.Join(dir, "server.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	s.start(t)
	return s
}

// Kill kills the server (SIGKILL, as a crash); Revive starts it again on
// the same address and data.
func (s *Server) Kill() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// Revive starts a killed server again, and waits until it serves.
func (s *Server) Revive(t testing.TB) {
	t.Helper()
	s.start(t)
}

// start starts the server and waits until it serves.
func (s *Server) start(t testing.TB) {
	t.Helper()
	s.exited = make(chan struct{})
	args, env := s.engine.command(s, t)
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// Its own process group, so that nothing it starts outlives it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", s, err)
	}
	exited := s.exited
	go func() { s.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + s.engine.health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("%s exited at start:\n%s", s, s.output())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve within a minute:\n%s", s, s.output())
		}
	}
}

// Env is the environment that points a client at the server.
func (s *Server) Env() []string {
	return []string{"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=us-east-1", "AWS_SESSION_TOKEN=", "AWS_PROFILE="}
}

// Setenv points this process's clients at the server for t.
func (s *Server) Setenv(t testing.TB) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Bucket points this process's clients at the server for t (Setenv) and
// makes a bucket there.
func (s *Server) Bucket(t testing.TB, name string) *s3.Bucket {
	t.Helper()
	s.Setenv(t)
	b, err := s3.Open(name, s3.ConfigFromEnv())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Create(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	return b
}

// Pause stops the server's process (SIGSTOP): it holds its connections
// and answers nothing, as a stalled endpoint does. It returns once the
// kernel shows the process stopped, not merely signalled (a thread on a
// processor answers a request meanwhile). Resume continues it.
func (s *Server) Pause() error {
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		return err
	}
	for range 500 {
		if stopped(s.cmd.Process.Pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s did not stop", s)
}

// stopped reports whether every thread of process pid is stopped.
func stopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		// The state follows the command's name, in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume continues a paused server.
func (s *Server) Resume() error { return syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT) }

func (s *Server) stop(t testing.TB) {
	if s.cmd == nil || s.cmd.Process == nil {
		return // it never started: start has failed the test
	}
	pgid := -s.cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGCONT)
	syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(pgid, syscall.SIGKILL)
		<-s.exited
	}
	if t.Failed() {
		t.Logf("%s's log:\n%s", s.engine.name, s.output())
	}
	s.log.Close()
}

func (s *Server) output() string {
	b, _ := os.ReadFile(s.log.Name())
	return string(b)
}

func freeAddress(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// String names the server in messages.
func (s *Server) String() string { return fmt.Sprintf("%s at %s", s.engine.name, s.Endpoint) }
