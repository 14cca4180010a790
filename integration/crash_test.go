package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKillAnywhere kills chainfs with SIGKILL at random points of each
// operation that changes the repository. After every kill the repository
// checks clean (data included), a snapshot committed before restores
// exactly, and the next operation succeeds: no stale lock, nothing half
// done visible. CHAINFS_CRASH_ROUNDS sets the kills per operation (default
// 20; make stress uses more).
func TestKillAnywhere(t *testing.T) {
	rounds := 20
	if n, err := strconv.Atoi(os.Getenv("CHAINFS_CRASH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	for i := 0; i < 6; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprint("f", i)), randomData(uint64(i), 8<<20), 0o644)
	}
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "base")
	base := filepath.Join(e.dir, "base-copy")
	sh(t, fmt.Sprintf("cp -a %s %s", src, base))
	rng := rand.New(rand.NewPCG(7, 11))

	// killAt runs chainfs and kills it after a random share of how long the
	// same operation took uninterrupted.
	killAt := func(full time.Duration, args ...string) {
		cmd := exec.Command(chainfsBin, args...)
		cmd.Env = append(os.Environ(), "CHAINFS_REPO="+e.repo)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Float64() * 1.2 * float64(full)))
		cmd.Process.Kill()
		cmd.Wait()
	}
	timed := func(args ...string) time.Duration {
		start := time.Now()
		e.ok(args...)
		return time.Since(start)
	}
	verify := func(what string, i int) {
		t.Helper()
		if r := e.run("check", "--read-data"); r.code != 0 {
			t.Fatalf("%s, kill %d: check exit %d:\n%s\n%s", what, i, r.code, r.stdout, r.stderr)
		}
		dst := filepath.Join(e.dir, "verify")
		os.RemoveAll(dst)
		e.ok("restore", "v/base", dst)
		rsyncSame(t, base, dst)
	}
	change := func(i int) {
		os.WriteFile(filepath.Join(src, fmt.Sprint("f", i%6)), randomData(uint64(1000+i), 8<<20), 0o644)
	}

	full := timed("snapshot", "create", "v", "--name", "measure")
	for i := 0; i < rounds; i++ {
		change(i)
		killAt(full, "snapshot", "create", "v", "--name", fmt.Sprint("k", i))
		verify("snapshot", i)
		e.snapshot("v", "--name", fmt.Sprint("after", i)) // the next one works
	}
	full = timed("snapshot", "delete", "v/measure")
	for i := 0; i < rounds; i++ {
		killAt(full, "snapshot", "delete", fmt.Sprint("v/after", i))
		verify("delete", i)
	}
	for i := 0; i < rounds; i++ {
		// Deleting again finishes nothing half done (Open did) and either
		// deletes or, if the killed delete had finished, says not found.
		if r := e.run("snapshot", "delete", fmt.Sprint("v/after", i)); r.code != 0 && !strings.Contains(r.stderr, "not found") {
			t.Fatalf("delete after a killed delete: exit %d %s", r.code, r.stderr)
		}
	}
	full = timed("gc")
	for i := 0; i < rounds; i++ {
		change(i)
		e.snapshot("v", "--name", fmt.Sprint("g", i))
		e.ok("snapshot", "delete", fmt.Sprint("v/g", i))
		killAt(full+50*time.Millisecond, "gc")
		verify("gc", i)
	}
	full = timed("image", "create", "measure", "--from", "v/base")
	for i := 0; i < rounds; i++ {
		killAt(full, "image", "create", fmt.Sprint("img", i), "--from", "v/base")
		verify("image create", i)
	}
	e.ok("gc")
	verify("final gc", rounds)
}
