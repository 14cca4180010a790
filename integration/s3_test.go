package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chainfs/chainfs/store/s3/s3test"
)

// TestImageImportFromBucket: an image file uploaded to a bucket of a
// real MinIO is imported by its s3:// location, with the endpoint and
// credentials of the environment, by the CLI and through a daemon, and
// restores exactly; a missing object, a wrong key and a bucket location
// that names no object are refused and change nothing.
func TestImageImportFromBucket(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.Bucket(t, "images") // and the CLI's and the daemon's environment
	a, src := goldenImage(t)
	data := exportFile(t, a, "golden", filepath.Join(a.dir, "golden.img"))
	if _, err := b.Put(context.Background(), "golden/golden.img", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}

	e := newEnv(t)
	out := e.ok("image", "import", "from-bucket", "s3://images/golden/golden.img")
	if !strings.Contains(out, "from s3://images/golden/golden.img") {
		t.Errorf("import said: %s", out)
	}
	if show := e.ok("image", "show", "from-bucket"); !strings.Contains(show, "from:        import s3://images/golden/golden.img") {
		t.Errorf("the image's origin:\n%s", show)
	}
	target := filepath.Join(e.dir, "restored")
	e.ok("volume", "add", "nv", target, "--from-image", "from-bucket")
	rsyncSame(t, src, target)

	before := repoState(t, e)
	e.fails(1, "not found", "image", "import", "missing", "s3://images/golden/nothing.img")
	e.fails(2, "names no object", "image", "import", "bucket", "s3://images/golden/")
	e.fails(2, "bucket", "image", "import", "bad", "s3://No_Such/x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	e.fails(1, "AWS_SECRET_ACCESS_KEY", "image", "import", "denied", "s3://images/golden/golden.img")
	if after := repoState(t, e); after != before {
		t.Errorf("refused imports changed the repository: %s → %s", before, after)
	}

	// Through a daemon, which reads the bucket with its own environment.
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	e.serve(filepath.Join(e.dir, "mnt"))
	e.ok("image", "import", "via-daemon", "s3://images/golden/golden.img")
	if list := e.ok("image", "list"); !strings.Contains(list, "via-daemon") {
		t.Errorf("image list:\n%s", list)
	}
}

// TestRepositoryInABucketTwoHosts: a repository in a bucket of a real
// MinIO (--repo s3://BUCKET/PREFIX), used by two hosts, each with its own
// cache (--cache). The first makes it (the bucket too) and snapshots a
// tree; the second, which never wrote it, lists, restores and mounts it,
// and reads it exactly; a snapshot the first makes later shows in the
// second's mount within ten seconds; the first host's cache deleted, the
// bucket alone holds everything, and check reads every block clean.
func TestRepositoryInABucketTwoHosts(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: "s3://team-snapshots/hosts/repo"}
	cacheA, cacheB := filepath.Join(dir, "cache-a"), filepath.Join(dir, "cache-b")
	onA := func(args ...string) string { return e.ok(append([]string{"--cache", cacheA}, args...)...) }
	onB := func(args ...string) string { return e.ok(append([]string{"--cache", cacheB}, args...)...) }
	if out := onA("init"); !strings.Contains(out, "s3://team-snapshots/hosts/repo") {
		t.Errorf("init said: %s", out)
	}
	e.fails(1, "already there", "--cache", filepath.Join(dir, "cache-c"), "init")
	src := filepath.Join(dir, "src")
	makeCraftedTree(t, src)
	onA("volume", "add", "v", src)
	onA("snapshot", "create", "v", "--name", "s1")

	if list := onB("snapshot", "list", "v"); !strings.Contains(list, "s1") {
		t.Fatalf("the second host lists:\n%s", list)
	}
	target := filepath.Join(dir, "restored")
	onB("restore", "v/s1", target)
	rsyncSame(t, src, target)
	d := e.serve(filepath.Join(dir, "mnt-b"), "--cache", cacheB)
	rsyncSame(t, src, filepath.Join(d.mount, "volumes", "v", "s1"))

	if err := os.WriteFile(filepath.Join(src, "added-later"), []byte("from the first host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	onA("snapshot", "create", "v", "--name", "s2")
	s2 := filepath.Join(d.mount, "volumes", "v", "s2")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(s2); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not show within 10 s", s2)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rsyncSame(t, src, s2)
	d.stop()

	if err := os.RemoveAll(cacheA); err != nil {
		t.Fatal(err)
	}
	if list := onA("snapshot", "list", "v"); !strings.Contains(list, "s1") || !strings.Contains(list, "s2") {
		t.Errorf("after its cache was deleted, the first host lists:\n%s", list)
	}
	onA("check", "--read-data")
}

// TestMountUnderStalledStore: a mount of a repository in a bucket whose
// store stops answering (MinIO stopped with SIGSTOP) fails a read with
// EIO within a bound, never hangs the reader, and reads exactly again
// once the store continues.
func TestMountUnderStalledStore(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	t.Setenv("CHAINFS_S3_TIMEOUT", "1s") // the daemon's, which reads
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: "s3://stall-test/repo"}
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	e.ok("init")
	e.ok("volume", "add", "v", src)
	// Each file in a snapshot, so a pack, of its own: reading the first
	// fills the block cache with none of the second.
	for i, name := range []string{"first", "second"} {
		if err := os.WriteFile(filepath.Join(src, name), randomData(uint64(i+1), 3<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		e.ok("snapshot", "create", "v", "--name", fmt.Sprintf("s%d", i+1))
	}
	d := e.serve(filepath.Join(dir, "mnt"), "--cache", filepath.Join(dir, "cache-b"))
	snap := d.snapDir("v", "s2")
	if got, err := os.ReadFile(filepath.Join(snap, "first")); err != nil || !bytes.Equal(got, randomData(1, 3<<20)) {
		t.Fatalf("read before the stall: %v", err)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	type read struct {
		data []byte
		err  error
	}
	done := make(chan read, 1)
	start := time.Now()
	go func() {
		b, err := os.ReadFile(filepath.Join(snap, "second"))
		done <- read{b, err}
	}()
	select {
	case r := <-done:
		if r.err == nil || !errors.Is(r.err, syscall.EIO) {
			t.Errorf("a read from a stopped store: %v, want EIO", r.err)
		}
		t.Logf("the read failed after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		srv.Resume()
		t.Fatal("a read from a stopped store still waits after 60 s")
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(snap, "second")); err != nil || !bytes.Equal(got, randomData(2, 3<<20)) {
		t.Errorf("read after the store continued: %v", err)
	}
}

// TestStoreDiesMidSnapshot: the store is killed while a snapshot sends
// to it, and comes back seconds later. The snapshot fails with a clear
// error (or, had it finished first, is whole); nothing half made is
// visible; check reads every block clean; the next snapshot works and
// restores exactly.
func TestStoreDiesMidSnapshot(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	t.Setenv("CHAINFS_S3_TIMEOUT", "2s")
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: "s3://dies-test/repo"}
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	for i := range 40 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), randomData(uint64(i+10), 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.ok("init")
	e.ok("volume", "add", "v", src)
	cmd := exec.Command(chainfsBin, "--repo", e.repo, "snapshot", "create", "v", "--name", "killed")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	srv.Kill()
	time.Sleep(3 * time.Second)
	srv.Revive(t)
	err := cmd.Wait()
	t.Logf("the snapshot as the store died: %v\n%s", err, out.String())
	list := e.ok("snapshot", "list", "v")
	switch {
	case err == nil:
		// It finished before the store died: it must be whole.
		whole := filepath.Join(dir, "killed")
		e.ok("restore", "v/killed", whole)
		rsyncSame(t, src, whole)
	case strings.Contains(list, "killed"):
		t.Errorf("a failed snapshot is listed:\n%s", list)
	case !strings.Contains(out.String(), "chainfs:"):
		t.Errorf("the failure says nothing clear:\n%s", out.String())
	}
	e.ok("check", "--read-data")
	e.ok("snapshot", "create", "v", "--name", "after")
	target := filepath.Join(dir, "restored")
	e.ok("restore", "v/after", target)
	rsyncSame(t, src, target)
}

// TestBucketWhereverARepositoryIsNamed: a repository in a bucket is named
// by s3://BUCKET/PREFIX where a directory is: an image is copied into it
// (image copy --to-repo), a volume is made there from the copy, named by
// name and by the bucket's reference (--from-image s3://...:NAME), while
// another repository is told to copy first; and mount(8) mounts it from
// its bucket with the store's settings as mount options, as an fstab line
// would, on a host whose cache holds no replica yet.
func TestBucketWhereverARepositoryIsNamed(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	a, src := goldenImage(t) // a repository in a directory
	t.Setenv("CHAINFS_CACHE", filepath.Join(a.dir, "cache"))
	west := &env{t: t, dir: a.dir, repo: "s3://regions/west"}

	a.fails(1, "no repository there", "image", "copy", "golden", "--to-repo", west.repo)
	west.ok("init", "--region", "west")
	if out := a.ok("image", "copy", "golden", "--to-repo", west.repo); !strings.Contains(out, "copied image golden to s3://regions/west (region west)") {
		t.Errorf("image copy said: %s", out)
	}
	if show := west.ok("image", "show", "golden"); !strings.Contains(show, a.repo) {
		t.Errorf("the copy does not say where it came from:\n%s", show)
	}
	byName, byRef := filepath.Join(a.dir, "by-name"), filepath.Join(a.dir, "by-ref")
	west.ok("volume", "add", "n1", byName, "--from-image", "golden")
	rsyncSame(t, src, byName)
	west.ok("volume", "add", "n2", byRef, "--from-image", west.repo+":golden")
	rsyncSame(t, src, byRef)
	a.fails(1, "copy it here first with 'chainfs --repo s3://regions/west image copy golden --to-repo "+a.repo,
		"volume", "add", "n3", filepath.Join(a.dir, "n3"), "--from-image", west.repo+":golden")

	// mount(8), as root at boot: no settings in its environment but the
	// keys; the endpoint, region and cache come as mount options.
	installMountHelper(t)
	mnt := filepath.Join(a.dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	cache := filepath.Join(a.dir, "boot-cache")
	t.Cleanup(func() {
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	var keys []string
	for _, kv := range srv.Env() {
		if strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") || strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") {
			keys = append(keys, kv)
		}
	}
	mount := exec.Command("mount", "-t", "fuse.chainfs", west.repo, mnt, "-o",
		"allow_other,s3_endpoint="+srv.Endpoint+",s3_region=us-east-1,cache="+cache)
	mount.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CHAINFS_CONFIG=" + os.DevNull}, keys...)
	if out, err := mount.CombinedOutput(); err != nil {
		t.Fatalf("mount -t fuse.chainfs %s: %v\n%s", west.repo, err, out)
	}
	rsyncSame(t, src, filepath.Join(mnt, "images", "golden"))
	sh(t, "umount "+mnt)
	bad := exec.Command("mount", "-t", "fuse.chainfs", "s3://regions/nothing", mnt, "-o", "s3_endpoint="+srv.Endpoint+",cache="+cache)
	bad.Env = mount.Env
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "no repository there") || mounted(mnt) {
		t.Errorf("mount of a bucket holding no repository: %v, %s", err, out)
	}
}

// TestTwoHostsSnapshotAtOnce: two hosts (two caches) each snapshot a
// volume of their own into one bucket at the same moment, five times,
// their trees holding the same files; every snapshot is made (a commit
// that lost the race is made again on top of the other's), and every one
// restores exactly. gc on a third host meanwhile is refused or runs, and
// never costs a snapshot anything.
func TestTwoHostsSnapshotAtOnce(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: "s3://team-snapshots/racing"}
	caches := []string{filepath.Join(dir, "cache-a"), filepath.Join(dir, "cache-b"), filepath.Join(dir, "cache-gc")}
	on := func(host int, args ...string) result {
		return e.run(append([]string{"--cache", caches[host]}, args...)...)
	}
	e.ok("--cache", caches[0], "init")
	srcs := []string{filepath.Join(dir, "src-a"), filepath.Join(dir, "src-b")}
	for h, src := range srcs {
		makeCraftedTree(t, src)
		e.ok("--cache", caches[h], "volume", "add", fmt.Sprintf("v%d", h), src)
	}
	const rounds = 5
	for i := range rounds {
		for h, src := range srcs {
			// A file of the round, the same on both hosts, and one of each.
			os.WriteFile(filepath.Join(src, "round"), bytes.Repeat([]byte{byte('0' + i)}, 300<<10), 0o644)
			os.WriteFile(filepath.Join(src, "own"), bytes.Repeat([]byte{byte('a' + 10*h + i)}, 200<<10), 0o644)
		}
		results := make(chan string, 3)
		for h := range srcs {
			go func() {
				r := on(h, "snapshot", "create", fmt.Sprintf("v%d", h), "--name", fmt.Sprintf("r%d", i))
				results <- fmt.Sprintf("host %d: exit %d %s", h, r.code, r.stderr)
			}()
		}
		go func() {
			// gc from a third host while both snapshot: refused (4,
			// another host's snapshot runs) or done; never a failure.
			r := on(2, "gc")
			if r.code != 0 && r.code != 4 {
				results <- fmt.Sprintf("gc: exit %d %s", r.code, r.stderr)
				return
			}
			results <- "gc: exit 0 "
		}()
		for range 3 {
			if r := <-results; !strings.Contains(r, "exit 0 ") {
				t.Errorf("round %d: %s", i, r)
			}
		}
		for h, src := range srcs {
			target := filepath.Join(dir, fmt.Sprintf("restored-%d-%d", h, i))
			on(1-h, "restore", fmt.Sprintf("v%d/r%d", h, i), target)
			rsyncSame(t, src, target)
		}
	}
	if r := on(1, "check", "--read-data"); r.code != 0 {
		t.Errorf("check --read-data: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestImageCopyToAnotherStore: an image is copied into a repository in a
// bucket of another object store (another endpoint, other keys, from a
// profile of the credentials file, while the environment's are the first
// store's): it restores exactly there, and a second copy sends nothing.
func TestImageCopyToAnotherStore(t *testing.T) {
	east, west := s3test.Start(t), s3test.Start(t)
	a, src := goldenImage(t) // a repository in a directory
	t.Setenv("CHAINFS_CACHE", filepath.Join(a.dir, "cache"))
	target := &env{t: t, dir: a.dir, repo: "s3://regions/west"}
	west.Setenv(t)
	target.ok("init", "--region", "west")

	east.Setenv(t) // the environment names the first store
	creds := filepath.Join(a.dir, "credentials")
	os.WriteFile(creds, []byte(fmt.Sprintf("[west]\naws_access_key_id = %s\naws_secret_access_key = %s\n", west.AccessKey, west.SecretKey)), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	to := []string{"--to-repo", target.repo, "--to-endpoint", west.Endpoint, "--to-region", "us-east-1", "--to-profile", "west"}
	if out := a.ok(append([]string{"image", "copy", "golden"}, to...)...); !strings.Contains(out, "copied image golden to s3://regions/west (region west)") {
		t.Errorf("image copy said: %s", out)
	}
	if out := a.ok(append([]string{"image", "copy", "golden", "--as", "again"}, to...)...); !strings.Contains(out, "sent 0 B in 0 blocks") {
		t.Errorf("a second copy sent blocks: %s", out)
	}
	a.fails(2, "only with an s3://", "image", "copy", "golden", "--to-repo", filepath.Join(a.dir, "x"), "--to-endpoint", west.Endpoint)

	west.Setenv(t)
	restored := filepath.Join(a.dir, "restored")
	target.ok("volume", "add", "n", restored, "--from-image", "golden")
	rsyncSame(t, src, restored)
}
