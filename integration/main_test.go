// Package integration drives the built chainfs binary the way a user does:
// the CLI, rsync, diff, cp. Set CHAINFS_BIN to the binary (make test does);
// otherwise TestMain builds one.
package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var chainfsBin string

func TestMain(m *testing.M) {
	// A configuration file on the machine must not change what the tests
	// see; tests that want one name their own.
	os.Setenv("CHAINFS_CONFIG", os.DevNull)
	chainfsBin = os.Getenv("CHAINFS_BIN")
	if chainfsBin == "" {
		dir, err := os.MkdirTemp("", "chainfs-bin")
		if err != nil {
			panic(err)
		}
		chainfsBin = filepath.Join(dir, "chainfs")
		cmd := exec.Command("go", "build", "-o", chainfsBin, "../cmd/chainfs")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building chainfs:", err)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// env is one test's repository and scratch space.
type env struct {
	t    *testing.T
	dir  string
	repo string
	// vars are set for every chainfs the env runs (the password of an
	// encrypted repository).
	vars []string
	// encrypted: the repository is (newEncryptedEnv).
	encrypted bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: filepath.Join(dir, "repo")}
	e.ok("init")
	return e
}

// result of one chainfs run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs chainfs with the env's repository and returns what it printed.
func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runAs(nil, args...)
}

// runAs runs chainfs behind a prefix command (setpriv, say).
func (e *env) runAs(prefix []string, args ...string) result {
	e.t.Helper()
	argv := append(append([]string{}, prefix...), chainfsBin)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "CHAINFS_REPO="+e.repo), e.vars...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("chainfs %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs chainfs and fails the test unless it exits 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("chainfs %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs chainfs, wants exit status code and stderr containing want.
func (e *env) fails(code int, want string, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		e.t.Fatalf("chainfs %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), r.code, r.stderr, code, want)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
		e.t.Errorf("chainfs %s: error is more than one line (plus hint):\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// sh runs a shell command and fails the test on error.
func sh(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("bash", "-euo", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// flipPackByte flips the byte at off of the first pack of the repository
// in dir.
func flipPackByte(t *testing.T, dir string, off int64) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	if len(packs) == 0 {
		t.Fatal("no pack")
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// rsyncSame asserts rsync finds nothing to do from src to dst, checksums
// and all metadata included.
func rsyncSame(t *testing.T, src, dst string) {
	t.Helper()
	out := sh(t, fmt.Sprintf("rsync -aHAXn --checksum -i --delete %q/ %q/", src, dst))
	if strings.TrimSpace(out) != "" {
		t.Errorf("rsync -aHAXn --checksum -i --delete %s/ %s/ lists differences:\n%s", src, dst, out)
	}
}
