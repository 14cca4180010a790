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

	"github.com/chainfs/chainfs/store/s3/s3test"
)

// TestKillAnywhere kills chainfs with SIGKILL at random points of each
// operation that changes the repository or writes an image. After every kill the repository
// checks clean (data included), a snapshot committed before restores
// exactly, and the next operation succeeds: no stale lock, nothing half
// done visible. CHAINFS_CRASH_ROUNDS sets the kills per operation (default
// 20; make stress uses more).
func TestKillAnywhere(t *testing.T) {
	killAnywhere(t, newEnv(t), crashRounds(20, 1))
}

// TestKillAnywhereInABucket is TestKillAnywhere on a repository in a
// bucket of a real MinIO, half as many kills: what a kill leaves there
// (an entry sent but not applied, a lease, marked work, packs no commit
// names) the next command on that host finishes or undoes.
func TestKillAnywhereInABucket(t *testing.T) {
	e := bucketEnv(t, "s3://kill-test/repo")
	e.ok("init")
	killAnywhere(t, e, crashRounds(10, 2))
}

// TestKillAnywhereEncrypted is TestKillAnywhere on an encrypted
// repository, a quarter as many kills: sealed packs, badger's sealed
// tables and logs cut anywhere.
func TestKillAnywhereEncrypted(t *testing.T) {
	killAnywhere(t, newEncryptedEnv(t, "kill-test password"), crashRounds(5, 4))
}

// TestKillAnywhereEncryptedInABucket is TestKillAnywhereInABucket on an
// encrypted repository, three kills per operation: sealed journal entries
// sent, read back after a lost answer and applied around kills.
func TestKillAnywhereEncryptedInABucket(t *testing.T) {
	e := bucketEnv(t, "s3://kill-sealed/repo")
	e.encrypted = true
	e.vars = []string{"CHAINFS_PASSWORD_FILE=" + writePassword(t, e.dir, "password", "sealed kills")}
	e.ok("init", "--encrypt")
	killAnywhere(t, e, crashRounds(3, 6))
}

// crashRounds is the kills per operation of a kill test: def, or a share
// of CHAINFS_CRASH_ROUNDS (which sets TestKillAnywhere's) when it is set.
func crashRounds(def, share int) int {
	if n, err := strconv.Atoi(os.Getenv("CHAINFS_CRASH_ROUNDS")); err == nil && n > 0 {
		return max(1, n/share)
	}
	return def
}

// bucketEnv is an env whose repository is url, in a MinIO of its own, with
// a cache directory of its own; the repository is not made yet.
func bucketEnv(t *testing.T, url string) *env {
	t.Helper()
	s3test.Start(t).Setenv(t)
	dir := t.TempDir()
	t.Setenv("CHAINFS_CACHE", filepath.Join(dir, "cache"))
	return &env{t: t, dir: dir, repo: url}
}

func killAnywhere(t *testing.T, e *env, rounds int) {
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
		cmd.Env = append(append(os.Environ(), "CHAINFS_REPO="+e.repo), e.vars...)
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

	// Import: a native image of data the repository lacks, so that every
	// round writes packs. After a kill the image is whole or absent: an
	// import of the same name then succeeds or finds it taken. It is
	// removed and gc'ed so that the next round writes anew.
	other := newEnv(t)
	osrc := filepath.Join(other.dir, "src")
	os.MkdirAll(osrc, 0o755)
	for i := 0; i < 3; i++ {
		os.WriteFile(filepath.Join(osrc, fmt.Sprint("o", i)), randomData(uint64(500+i), 8<<20), 0o644)
	}
	other.ok("volume", "add", "o", osrc)
	other.snapshot("o", "--name", "s")
	other.ok("image", "create", "x", "--from", "o/s")
	file := filepath.Join(other.dir, "x.img")
	// A native image names blocks by their plain hash, which an
	// encrypted repository does not: it takes and gives tar.
	var format []string
	if e.encrypted {
		format = []string{"--format", "tar"}
	}
	other.ok(append([]string{"image", "export", "x", file}, format...)...)
	full = timed("image", "import", "measure-import", file)
	e.ok("image", "rm", "measure-import")
	e.ok("gc")
	for i := 0; i < rounds; i++ {
		name := fmt.Sprint("imp", i)
		killAt(full, "image", "import", name, file)
		verify("image import", i)
		if r := e.run("image", "import", name, file); r.code != 0 && !strings.Contains(r.stderr, "already exists") {
			t.Fatalf("import after a killed import: exit %d %s", r.code, r.stderr)
		}
		e.ok("image", "rm", name)
		e.ok("gc")
	}

	// Export: the file is whole or absent, never partial.
	out := filepath.Join(e.dir, "exported.img")
	full = timed(append([]string{"image", "export", "measure", out}, format...)...)
	for i := 0; i < rounds; i++ {
		os.Remove(out)
		killAt(full, append([]string{"image", "export", "measure", out}, format...)...)
		verify("image export", i)
		if _, err := os.Stat(out); err == nil {
			other.ok("image", "import", fmt.Sprint("exp", i), out)
		}
	}
	e.ok("gc")
	verify("final gc", rounds)
}
