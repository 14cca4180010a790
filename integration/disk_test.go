package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// loopMount mounts an image file (options "loop,..."), unmounting it when
// the test ends, pass or fail.
func loopMount(t *testing.T, image, dir, opts string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	sh(t, fmt.Sprintf("mount -o %s %q %q", opts, image, dir))
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// losetup attaches a file to a free loop device, detached when the test
// ends.
func losetup(t *testing.T, file string) string {
	t.Helper()
	dev := strings.TrimSpace(sh(t, "losetup -f --show "+file))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// sameTree asserts diff -r finds two trees equal (lost+found aside).
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	out, err := exec.Command("diff", "-r", "--no-dereference", "-x", "lost+found", a, b).CombinedOutput()
	if err != nil {
		t.Errorf("diff -r %s %s: %v\n%s", a, b, err, out)
	}
}

// TestDiskVolumeExt4: an ext4 image made with mkfs.ext4 -d is snapshotted,
// changed through a loop mount and snapshotted again: the second snapshot
// stores little more than the changed blocks, and each snapshot's disk,
// loop-mounted read-only from the FUSE tree, shows the tree of its time.
func TestDiskVolumeExt4(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	goroot := strings.TrimSpace(sh(t, "go env GOROOT"))
	sh(t, fmt.Sprintf("cp -a %s/src/net %s", goroot, src))
	img := filepath.Join(e.dir, "disk.img")
	sh(t, fmt.Sprintf("mkfs.ext4 -q -d %q %q 96M", src, img))
	e.ok("volume", "add", "d", img)
	s1 := e.snapshot("d", "--name", "s1")
	if s1.Stats.StoredBytes > 16<<20 {
		t.Errorf("first snapshot of a 96 MiB image holding %d bytes stored %d", du(t, src), s1.Stats.StoredBytes)
	}

	rw := filepath.Join(e.dir, "rw")
	loopMount(t, img, rw, "loop")
	sh(t, fmt.Sprintf("echo 'one more line' >> %[1]s/http/server.go && cp %[1]s/dial.go %[1]s/dial-copy.go && rm %[1]s/net_test.go", rw))
	then := filepath.Join(e.dir, "then")
	sh(t, fmt.Sprintf("cp -a %s %s && umount %s", rw, then, rw))
	s2 := e.snapshot("d", "--name", "s2")
	// A few inode table, bitmap, directory and journal blocks and the
	// data of the files touched, at 64 KiB each.
	if s2.Stats.StoredBytes > 1<<20 || s2.Stats.AddedBytes > 1<<20 {
		t.Errorf("second snapshot after a small change stored %d bytes, holds %d", s2.Stats.StoredBytes, s2.Stats.AddedBytes)
	}
	t.Logf("first snapshot stored %d bytes; after the change %d", s1.Stats.StoredBytes, s2.Stats.StoredBytes)

	d := e.serve(filepath.Join(e.dir, "mnt"))
	m1, m2 := filepath.Join(e.dir, "m1"), filepath.Join(e.dir, "m2")
	loopMount(t, filepath.Join(d.snapDir("d", "s1"), "disk.img"), m1, "loop,ro")
	loopMount(t, filepath.Join(d.snapDir("d", "s2"), "disk.img"), m2, "loop,ro")
	sameTree(t, src, m1)
	sameTree(t, then, m2)
	if out := sh(t, "ls "+d.snapDir("d", "s1")); strings.TrimSpace(out) != "disk.img" {
		t.Errorf("a disk snapshot holds %q", out)
	}
	// The snapshot's file is sparse where the image is: its allocation is
	// its data, not its size.
	if out := strings.Fields(sh(t, "du -B1 "+filepath.Join(d.snapDir("d", "s1"), "disk.img"))); out[0] == fmt.Sprint(96<<20) {
		t.Errorf("the snapshot's disk is not sparse: du %s", out[0])
	}
}

// TestZeroDiskCostsNothing: a 10 GiB image of nothing (a hole) and 256 MiB
// of written zeros snapshot to no stored block.
func TestZeroDiskCostsNothing(t *testing.T) {
	e := newEnv(t)
	hole := filepath.Join(e.dir, "hole.img")
	sh(t, "truncate -s 10G "+hole)
	zeros := filepath.Join(e.dir, "zeros.img")
	sh(t, fmt.Sprintf("dd if=/dev/zero of=%s bs=1M count=256 status=none", zeros))
	before := du(t, e.repo)
	e.ok("volume", "add", "hole", hole)
	e.ok("volume", "add", "zeros", zeros)
	h := e.snapshot("hole")
	z := e.snapshot("zeros")
	if h.Stats.StoredBytes != 0 || h.Stats.ReadBytes != 0 || z.Stats.StoredBytes != 0 {
		t.Errorf("zero images: hole read %d stored %d; zeros stored %d", h.Stats.ReadBytes, h.Stats.StoredBytes, z.Stats.StoredBytes)
	}
	if grew := du(t, e.repo) - before; grew > 1<<20 {
		t.Errorf("the repository grew by %d bytes for two images of zeros", grew)
	}
	out := filepath.Join(e.dir, "out")
	e.ok("restore", "hole/latest", out)
	if fields := strings.Fields(sh(t, "du -B1 --apparent-size "+filepath.Join(out, "hole.img")+"; du -B1 "+filepath.Join(out, "hole.img"))); fields[0] != fmt.Sprint(10<<30) || fields[2] != "0" {
		t.Errorf("restored hole image: apparent and allocated %v", fields)
	}
}

// TestDiskImagesAndDevices: a disk volume's image exports raw (sparse into
// a file, whole into a pipe) and native, imports raw (compressed too),
// starts volumes in a new file and on a block device, and a snapshot
// restores onto a block device; a mounted device is refused.
func TestDiskImagesAndDevices(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	for i := 0; i < 4; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprint("f", i)), randomData(uint64(i), 1<<20), 0o644)
	}
	img := filepath.Join(e.dir, "disk.img")
	sh(t, fmt.Sprintf("mkfs.ext4 -q -d %q %q 32M", src, img))
	e.ok("volume", "add", "d", img)
	e.snapshot("d", "--name", "s1")
	e.ok("image", "create", "di", "--from", "d/s1")
	raw := filepath.Join(e.dir, "di.raw")
	e.ok("image", "export", "di", raw, "--format", "raw")
	sh(t, fmt.Sprintf("cmp %q %q", raw, img))
	if a, b := du(t, raw), du(t, img); a > b+1<<20 {
		t.Errorf("raw export takes %d bytes, the image %d: holes were written", a, b)
	}
	sh(t, fmt.Sprintf("CHAINFS_REPO=%q %q image export di - --format raw | cmp - %q", e.repo, chainfsBin, img))
	e.ok("volume", "add", "t", src)
	e.snapshot("t")
	e.ok("image", "create", "ti", "--from", "t/latest")
	e.fails(2, "raw is for images of disk volumes", "image", "export", "ti", filepath.Join(e.dir, "x"), "--format", "raw")

	b := newEnv(t)
	sh(t, fmt.Sprintf("zstd -q -o %q %q || gzip -c %q > %q", raw+".zst", raw, raw, raw+".zst"))
	b.ok("image", "import", "fromraw", raw+".zst", "--format", "raw")
	nf := filepath.Join(b.dir, "new.img")
	b.ok("volume", "add", "nf", nf, "--from-image", "fromraw")
	sh(t, fmt.Sprintf("cmp %q %q", nf, img))
	dev := losetup(t, sh(t, fmt.Sprintf("f=%s/dev.img; truncate -s 40M $f; echo -n $f", b.dir)))
	b.ok("volume", "add", "nd", dev, "--from-image", "fromraw")
	sh(t, fmt.Sprintf("cmp -n %d %q %q", 32<<20, dev, img))
	if out := b.ok("volume", "list"); !strings.Contains(out, "disk") {
		t.Errorf("volume list:\n%s", out)
	}

	// A symlink of another user to a device, named as a target, is not
	// followed: the device keeps its zeros. Root's own (as
	// /dev/disk/by-id/...) is.
	other := losetup(t, sh(t, fmt.Sprintf("f=%s/other.img; truncate -s 32M $f; echo -n $f", e.dir)))
	home := filepath.Join(e.dir, "home")
	os.Mkdir(home, 0o755)
	os.Chown(home, 1001, 1001)
	trap := filepath.Join(home, "restored")
	os.Symlink(other, trap)
	os.Lchown(trap, 1001, 1001)
	e.fails(1, "a symlink of uid 1001", "restore", "d/s1", trap)
	b.fails(1, "a symlink of uid 1001", "volume", "add", "trap", trap, "--from-image", "fromraw")
	sh(t, fmt.Sprintf("cmp -n %d %q /dev/zero", 32<<20, other))
	byID := filepath.Join(e.dir, "by-id")
	os.Symlink(other, byID)
	e.ok("restore", "d/s1", byID)
	sh(t, fmt.Sprintf("cmp %q %q", other, img))
	m := filepath.Join(e.dir, "m")
	loopMount(t, other, m, "ro")
	sameTree(t, src, m)
	e.fails(1, "busy", "restore", "d/s1", other)
	small := losetup(t, sh(t, fmt.Sprintf("f=%s/small.img; truncate -s 16M $f; echo -n $f", e.dir)))
	e.fails(1, "holds", "restore", "d/s1", small)
}
