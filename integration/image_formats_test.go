package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goldenImage makes, in a new repository, a snapshot of the crafted tree
// and an image "golden" of it; it returns the env and the source.
func goldenImage(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	makeCraftedTree(t, src)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	e.ok("image", "create", "golden", "--from", "v/s1", "--description", "prepared tree")
	return e, src
}

// rsyncSameExcept is rsyncSame leaving out names a format cannot hold.
func rsyncSameExcept(t *testing.T, src, dst string, exclude ...string) {
	t.Helper()
	var ex string
	for _, x := range exclude {
		ex += fmt.Sprintf(" --exclude=%q", x)
	}
	out := sh(t, fmt.Sprintf("rsync -aHAXn --checksum -i --delete%s %q/ %q/", ex, src, dst))
	if strings.TrimSpace(out) != "" {
		t.Errorf("rsync -aHAXn --checksum -i --delete%s %s/ %s/ lists differences:\n%s", ex, src, dst, out)
	}
}

// TestImageNativeRoundTrip: snapshot → image → native export → import in
// a second repository → a volume from the image: the volume's directory,
// and the image in the second repository's mount, are the source exactly.
// The volume's later snapshots are incremental on top of the image.
func TestImageNativeRoundTrip(t *testing.T) {
	a, src := goldenImage(t)
	file := filepath.Join(a.dir, "golden.img")
	a.ok("image", "export", "golden", file)
	b := newEnv(t)
	out := b.ok("image", "import", "golden", file)
	if !strings.Contains(out, "imported image golden") || !strings.Contains(out, "(native)") {
		t.Errorf("import said: %s", out)
	}
	target := filepath.Join(b.dir, "restored")
	b.ok("volume", "add", "nv", target, "--from-image", "golden")
	rsyncSame(t, src, target)

	d := b.serve(filepath.Join(b.dir, "mnt"))
	rsyncSame(t, src, filepath.Join(d.mount, "images/golden"))
	rsyncSame(t, src, filepath.Join(d.mount, "volumes/nv/latest"))

	// Later snapshots of the new volume are incremental.
	os.WriteFile(filepath.Join(target, "small.txt"), []byte("changed after the image\n"), 0o644)
	s := b.snapshot("nv")
	if s.Stats.StoredBytes > 64<<10 || s.Stats.ReadBytes > 64<<10 {
		t.Errorf("snapshot after one small change stored %d and read %d bytes", s.Stats.StoredBytes, s.Stats.ReadBytes)
	}
}

// TestImageTarRoundTrip: the same through tar, and the tar extracted by
// GNU tar is the source too (but for the socket, which tar cannot hold).
// Through a daemon, export and import stream over standard output and
// input.
func TestImageTarRoundTrip(t *testing.T) {
	a, src := goldenImage(t)
	file := filepath.Join(a.dir, "golden.tar")
	r := a.run("image", "export", "golden", file, "--format", "tar")
	if r.code != 0 || !strings.Contains(r.stderr, "socket") {
		t.Fatalf("tar export: exit %d, stderr %q; want a warning about the socket", r.code, r.stderr)
	}
	gnu := filepath.Join(a.dir, "gnu")
	os.Mkdir(gnu, 0o755)
	sh(t, fmt.Sprintf("tar --xattrs --xattrs-include='*' -xpf %q -C %q", file, gnu))
	rsyncSameExcept(t, src, gnu, "/socket")

	b := newEnv(t)
	b.ok("image", "import", "golden", file)
	target := filepath.Join(b.dir, "restored")
	b.ok("volume", "add", "nv", target, "--from-image", "golden")
	rsyncSameExcept(t, src, target, "/socket")

	// A daemon serves a; b's daemon takes the stream on its stdin.
	a.serve(filepath.Join(a.dir, "mnt"))
	b.serve(filepath.Join(b.dir, "mnt"))
	sh(t, fmt.Sprintf("CHAINFS_REPO=%q %q image export golden - --format tar | CHAINFS_REPO=%q %q image import piped -",
		a.repo, chainfsBin, b.repo, chainfsBin))
	piped := filepath.Join(b.dir, "piped")
	b.ok("volume", "add", "pv", piped, "--from-image", "piped")
	rsyncSameExcept(t, src, piped, "/socket")
	sh(t, fmt.Sprintf("CHAINFS_REPO=%q %q image export golden - | CHAINFS_REPO=%q %q image import piped-native -",
		a.repo, chainfsBin, b.repo, chainfsBin))
	// A CLI with its standard input closed still reaches the daemon.
	if out := sh(t, fmt.Sprintf("CHAINFS_REPO=%q %q image list <&-", b.repo, chainfsBin)); !strings.Contains(out, "piped-native") {
		t.Errorf("image list after a piped native import:\n%s", out)
	}
}

// TestImageImportURL: an image is imported from an http URL on loopback;
// a download that ends short of its Content-Length is refused.
func TestImageImportURL(t *testing.T) {
	a, src := goldenImage(t)
	file := filepath.Join(a.dir, "golden.img")
	data := exportFile(t, a, "golden", file)
	tarData := exportFile(t, a, "golden", filepath.Join(a.dir, "golden.tar"), "--format", "tar")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/golden.img":
			http.ServeFile(w, r, file)
		case "/long.tar":
			// A whole archive, but less than the length promised: the
			// tar reader stops at the end-of-archive blocks, and must
			// still read on to see the download short.
			w.Header().Set("Content-Length", fmt.Sprint(len(tarData)+1000))
			w.Write(tarData)
			if hj, ok := w.(http.Hijacker); ok {
				conn, _, _ := hj.Hijack()
				conn.Close()
			}
		case "/short.img":
			// Promise the whole length, send half, hang up.
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:len(data)/2])
			if hj, ok := w.(http.Hijacker); ok {
				conn, _, _ := hj.Hijack()
				conn.Close()
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	b := newEnv(t)
	b.ok("image", "import", "web", srv.URL+"/golden.img")
	target := filepath.Join(b.dir, "restored")
	b.ok("volume", "add", "nv", target, "--from-image", "web")
	rsyncSame(t, src, target)
	before := repoState(t, b)
	b.fails(1, "bytes", "image", "import", "short", srv.URL+"/short.img")
	b.fails(1, "bytes", "image", "import", "long", srv.URL+"/long.tar")
	b.fails(1, "404", "image", "import", "missing", srv.URL+"/missing.img")
	if after := repoState(t, b); after != before {
		t.Errorf("failed downloads changed the repository: %s → %s", before, after)
	}
}

// exportFile exports an image to file and returns what it wrote.
func exportFile(t *testing.T, e *env, image, file string, args ...string) []byte {
	t.Helper()
	e.ok(append([]string{"image", "export", image, file}, args...)...)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// repoState is what a refused import must not change: the images, the
// block records (referenced or not), the trees and the pack files.
func repoState(t *testing.T, e *env) string {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(e.ok("usage", "--json")), &raw); err != nil {
		t.Fatal(err)
	}
	packs, _ := os.ReadDir(filepath.Join(e.repo, "packs"))
	return fmt.Sprintf("images %s; blocks %v, garbage %v, trees %v, packs %d", strings.TrimSpace(e.ok("image", "list", "--json")),
		raw["blocks"], raw["garbage_bytes"], raw["trees"], len(packs))
}

// TestBadImagesLeaveNothing: a native export with one flipped byte, a
// truncated one, and a tar with a "../" entry are each refused with a
// clear error and leave no image and no stored blocks behind.
func TestBadImagesLeaveNothing(t *testing.T) {
	a, _ := goldenImage(t)
	file := filepath.Join(a.dir, "golden.img")
	a.ok("image", "export", "golden", file)
	data, _ := os.ReadFile(file)
	flipped := filepath.Join(a.dir, "flipped.img")
	// A byte in the middle of block data: caught by that block's hash.
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0x40
	os.WriteFile(flipped, bad, 0o644)
	truncated := filepath.Join(a.dir, "truncated.img")
	os.WriteFile(truncated, data[:len(data)*2/3], 0o644)
	evil := filepath.Join(a.dir, "evil.tar")
	sh(t, fmt.Sprintf(`python3 -c '
import io, tarfile
with tarfile.open(%q, "w", format=tarfile.PAX_FORMAT) as t:
    for name in ("a/ok", "a/../../escaped"):
        i = tarfile.TarInfo(name); i.size = 2; t.addfile(i, io.BytesIO(b"x\n"))
'`, evil))

	b := newEnv(t)
	before := repoState(t, b)
	b.fails(1, "hash mismatch", "image", "import", "flipped", flipped)
	b.fails(1, "truncated", "image", "import", "truncated", truncated)
	b.fails(1, `".."`, "image", "import", "evil", evil)
	if after := repoState(t, b); after != before {
		t.Errorf("refused imports changed the repository:\n%s\n%s", before, after)
	}
	if out := b.ok("image", "list"); strings.Contains(out, "flipped") || strings.Contains(out, "truncated") || strings.Contains(out, "evil") {
		t.Errorf("refused images listed:\n%s", out)
	}
	// Into a repository holding the same blocks, the flipped image is
	// refused too, and the blocks stay.
	r := a.run("image", "import", "flipped", flipped)
	if r.code != 1 {
		t.Errorf("flipped into the source repository: exit %d", r.code)
	}
	if r := a.run("check", "--read-data"); r.code != 0 {
		t.Errorf("check after refused imports: %s %s", r.stdout, r.stderr)
	}
}

// TestImageVisibilityThroughMount: under images/, another user sees the
// community images, those shared with it, its own and the public ones,
// and nothing of others' custom images, not even through a name root just
// looked up; root sees all.
func TestImageVisibilityThroughMount(t *testing.T) {
	e, src := goldenImage(t)
	os.Chmod(e.dir, 0o755)
	os.Chmod(filepath.Dir(e.dir), 0o755)
	catalog := filepath.Join(e.dir, "catalog")
	os.Mkdir(catalog, 0o755)
	e.ok("image", "export", "golden", filepath.Join(catalog, "public-golden.img"))
	e.ok("image", "create", "root-custom", "--from", "v/s1")
	e.ok("image", "create", "nobody-own", "--from", "v/s1", "--owner", "nobody")
	e.ok("image", "create", "shared-with-nobody", "--from", "v/s1")
	e.ok("image", "share", "shared-with-nobody", "--with", "nobody")
	e.ok("image", "create", "shared-with-other", "--from", "v/s1")
	e.ok("image", "share", "shared-with-other", "--with", "12345")
	e.ok("image", "create", "community", "--from", "v/s1")
	e.ok("image", "publish", "community")
	d := e.serve(filepath.Join(e.dir, "mnt"), "--allow-other", "--catalog", catalog)

	asNobody := func(args ...string) (string, error) {
		argv := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
		out, err := exec.Command("setpriv", argv...).CombinedOutput()
		return string(out), err
	}
	images := filepath.Join(d.mount, "images")
	all := "community golden nobody-own public-golden root-custom shared-with-nobody shared-with-other"
	if got := strings.Join(strings.Fields(sh(t, "ls "+images)), " "); got != all {
		t.Errorf("root sees %q, want %q", got, all)
	}
	out, err := asNobody("ls", images)
	if got := strings.Join(strings.Fields(out), " "); err != nil || got != "community nobody-own public-golden shared-with-nobody" {
		t.Errorf("nobody sees %q (%v)", got, err)
	}
	for _, hidden := range []string{"golden", "root-custom", "shared-with-other", "no-such-image"} {
		// Root looks it up first: the kernel must not hand nobody root's
		// cached entry.
		os.Stat(filepath.Join(images, hidden, "small.txt"))
		if out, err := asNobody("stat", filepath.Join(images, hidden, "small.txt")); err == nil || !strings.Contains(out, "No such file") {
			t.Errorf("nobody stats images/%s/small.txt: %q %v", hidden, out, err)
		}
	}
	for _, seen := range []string{"community", "public-golden", "shared-with-nobody", "nobody-own"} {
		if out, err := asNobody("cat", filepath.Join(images, seen, "dir/linked")); err != nil || out != "one inode, three names\n" {
			t.Errorf("nobody reads images/%s/dir/linked: %q %v", seen, out, err)
		}
		// The image's own modes still apply.
		if out, err := asNobody("cat", filepath.Join(images, seen, "restricted")); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody reads images/%s/restricted (mode 0000): %q %v", seen, out, err)
		}
	}
	// The CLI tells the same.
	if got := e.ok("image", "list", "--user", "nobody"); strings.Contains(got, "root-custom") || !strings.Contains(got, "public-golden") {
		t.Errorf("image list --user nobody:\n%s", got)
	}
	if got := e.ok("image", "list", "--type", "public"); !strings.Contains(got, "public-golden") || strings.Contains(got, "community") {
		t.Errorf("image list --type public:\n%s", got)
	}
	e.fails(1, "public", "image", "rm", "public-golden")
	// Unpublishing takes the image from nobody at once.
	e.ok("image", "unpublish", "community")
	if out, err := asNobody("ls", images); err != nil || strings.Contains(out, "community") {
		t.Errorf("nobody still sees an unpublished image: %q %v", out, err)
	}
	// A catalog file replaced under its name shows its new tree at once,
	// not the kernel's cache of the old one.
	sh(t, "ls "+filepath.Join(images, "public-golden"))
	os.WriteFile(filepath.Join(src, "added-later"), []byte("new\n"), 0o644)
	e.snapshot("v", "--name", "s2")
	e.ok("image", "create", "newer", "--from", "v/s2")
	e.ok("image", "export", "newer", filepath.Join(catalog, ".next"))
	os.Rename(filepath.Join(catalog, ".next"), filepath.Join(catalog, "public-golden.img"))
	if got, err := os.ReadFile(filepath.Join(images, "public-golden", "added-later")); err != nil || string(got) != "new\n" {
		t.Errorf("replaced catalog image: %q %v", got, err)
	}
}

// TestImageCopyAndRegions: image copy sends only blocks the other
// repository lacks, works while that repository's daemon holds it, and
// an image of another repository cannot be used without copying it.
func TestImageCopyAndRegions(t *testing.T) {
	a, src := goldenImage(t)
	b := &env{t: t, dir: t.TempDir()}
	b.repo = filepath.Join(b.dir, "repo")
	b.ok("init", "--region", "us-west")
	var res struct {
		Region string
		Stats  struct {
			Blocks       uint64 `json:"blocks"`
			LinkedBlocks uint64 `json:"linked_blocks"`
		}
	}
	json.Unmarshal([]byte(a.ok("image", "copy", "golden", "--to-repo", b.repo, "--json")), &res)
	if res.Region != "us-west" || res.Stats.Blocks == 0 || res.Stats.LinkedBlocks != 0 {
		t.Errorf("first copy: %+v", res)
	}
	json.Unmarshal([]byte(a.ok("image", "copy", "golden", "--to-repo", b.repo, "--as", "again", "--json")), &res)
	if res.Stats.Blocks != 0 || res.Stats.LinkedBlocks == 0 {
		t.Errorf("second copy sent blocks again: %+v", res)
	}
	// The same copy again: already there, nothing sent, status 0.
	if out := a.ok("image", "copy", "golden", "--to-repo", b.repo); !strings.Contains(out, "image golden is already in "+b.repo+" (region us-west) as golden, the same: nothing sent") {
		t.Errorf("copy again: %s", out)
	}
	// Another image under a taken name: refused, with --as.
	a.ok("snapshot", "create", "v", "--name", "other")
	a.ok("image", "create", "other", "--from", "v/other")
	a.fails(1, "an image golden is already in "+b.repo+" and differs from other: copy under another name with --as NEWNAME",
		"image", "copy", "other", "--to-repo", b.repo, "--as", "golden")
	show := b.ok("image", "show", "again")
	if !strings.Contains(show, "region:      us-west (first made in local)") || !strings.Contains(show, "copy "+a.repo) {
		t.Errorf("copied image:\n%s", show)
	}
	r := b.fails(1, "image copy golden --to-repo", "volume", "add", "x", filepath.Join(b.dir, "x"), "--from-image", a.repo+":golden")
	if !strings.Contains(r.stderr, "region local") {
		t.Errorf("the refusal names no region: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "x")); !os.IsNotExist(err) {
		t.Errorf("refused volume left its directory: %v", err)
	}
	b.fails(2, "is not a chainfs repository", "volume", "add", "x", filepath.Join(b.dir, "x"), "--from-image", b.dir+":golden")
	// This repository named as DIR: the image is looked up here.
	b.ok("volume", "add", "here", filepath.Join(b.dir, "here"), "--from-image", b.repo+":again")
	// Into a repository its daemon holds: the copy goes through it.
	b.serve(filepath.Join(b.dir, "mnt"))
	a.ok("image", "copy", "golden", "--to-repo", b.repo, "--as", "via-daemon")
	if out := a.ok("image", "copy", "golden", "--to-repo", b.repo, "--as", "via-daemon"); !strings.Contains(out, "the same: nothing sent") {
		t.Errorf("the same copy again through the daemon: %s", out)
	}
	a.fails(1, "an image via-daemon is already in "+b.repo+" and differs from other",
		"image", "copy", "other", "--to-repo", b.repo, "--as", "via-daemon")
	target := filepath.Join(b.dir, "restored")
	b.ok("volume", "add", "nv", target, "--from-image", "via-daemon")
	rsyncSame(t, src, target)
}

// TestVolumeFromImageCostsLittle: a volume made from an image adds under
// 1 % of the image's size to the repository: its first snapshot links the
// image's blocks.
func TestVolumeFromImageCostsLittle(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	goroot := strings.TrimSpace(sh(t, "go env GOROOT"))
	sh(t, fmt.Sprintf("mkdir -p %[1]s && cp -a %[2]s/src/net %[1]s/", src, goroot))
	for i := 0; i < 8; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprint("data-", i)), randomData(uint64(100+i), 8<<20), 0o644)
	}
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s1")
	e.ok("image", "create", "img", "--from", "v/s1")
	imageSize := du(t, src)
	before := du(t, e.repo)
	e.ok("volume", "add", "nv", filepath.Join(e.dir, "nv"), "--from-image", "img")
	grew := du(t, e.repo) - before
	t.Logf("image %d bytes; the volume from it added %d bytes (%.3f %%)", imageSize, grew, 100*float64(grew)/float64(imageSize))
	if grew*100 >= imageSize {
		t.Errorf("volume from a %d-byte image added %d bytes, 1 %% or more", imageSize, grew)
	}
	rsyncSame(t, src, filepath.Join(e.dir, "nv"))
}

// TestControlExportToFile: .control/export with a path makes the image
// and writes it there; the file imports elsewhere.
func TestControlExportToFile(t *testing.T) {
	e, src := goldenImage(t)
	d := e.serve(filepath.Join(e.dir, "mnt"))
	file := filepath.Join(e.dir, "from-control.tar")
	sh(t, fmt.Sprintf("/bin/echo v/s1 viactl %s > %s", file, filepath.Join(d.mount, ".control/export")))
	out := filepath.Join(e.dir, "x")
	os.Mkdir(out, 0o755)
	sh(t, fmt.Sprintf("tar --xattrs --xattrs-include='*' -xpf %q -C %q", file, out))
	rsyncSameExcept(t, src, out, "/socket")
	if r, err := exec.Command("bash", "-c", fmt.Sprintf("/bin/echo v/s1 rel relative.img > %s", filepath.Join(d.mount, ".control/export"))).CombinedOutput(); err == nil {
		t.Errorf("a relative export path was taken: %s", r)
	}
}

// TestExportTargets: an export never replaces a file without
// --overwrite, never writes into a directory's name, and leaves the
// refused target as it was.
func TestExportTargets(t *testing.T) {
	e, _ := goldenImage(t)
	file := filepath.Join(e.dir, "golden.img")
	first := exportFile(t, e, "golden", file)
	os.WriteFile(file, []byte("mine"), 0o644)
	e.fails(1, "exists (use --overwrite", "image", "export", "golden", file)
	if got, _ := os.ReadFile(file); string(got) != "mine" {
		t.Errorf("refused export changed the file: %q", got)
	}
	e.ok("image", "export", "golden", file, "--overwrite")
	if got, _ := os.ReadFile(file); !bytes.Equal(got, first) {
		t.Errorf("overwritten export differs from the first")
	}
	e.fails(1, "is a directory", "image", "export", "golden", e.dir)
	link := filepath.Join(e.dir, "link.img")
	os.Symlink(file, link)
	e.fails(1, "exists (use --overwrite", "image", "export", "golden", link)
	if entries, _ := filepath.Glob(filepath.Join(e.dir, ".*partial*")); len(entries) != 0 {
		t.Errorf("partial files left: %v", entries)
	}
}

// TestShareSaysWhenOthersCannotSee: sharing or publishing an image says so
// when other users cannot see it yet: no daemon serves the repository, or
// its daemon serves it without --allow-other; not when they can.
func TestShareSaysWhenOthersCannotSee(t *testing.T) {
	e, _ := goldenImage(t)
	e.ok("image", "create", "img", "--from", "v/s1")
	r := e.run("image", "share", "img", "--with", "nobody")
	if r.code != 0 || !strings.Contains(r.stderr, "no daemon serves this repository: other users see the image under images/ once one serves it with --allow-other") {
		t.Errorf("share with no daemon: exit %d\n%s", r.code, r.stderr)
	}
	d := e.serve(filepath.Join(e.dir, "mnt"))
	r = e.run("image", "publish", "img")
	if want := "note: the daemon serves " + d.mount + " without --allow-other"; r.code != 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("publish through a daemon without --allow-other: exit %d\n%s\nwant %q", r.code, r.stderr, want)
	}
	d.stop()
	e.serve(filepath.Join(e.dir, "mnt"), "--allow-other")
	if r = e.run("image", "unpublish", "img"); r.code != 0 || strings.Contains(r.stderr, "note:") {
		t.Errorf("unpublish through a daemon with --allow-other: exit %d\n%s", r.code, r.stderr)
	}
}

// TestImageFromVolume: image create --from VOLUME takes a snapshot of the
// volume now, which stays, and makes the image from it: the source as it
// is, exactly; a taken name is refused before anything is snapshotted.
func TestImageFromVolume(t *testing.T) {
	e, src := goldenImage(t)
	os.WriteFile(filepath.Join(src, "added-after-s1"), []byte("new"), 0o644)
	out := e.ok("image", "create", "now", "--from", "v", "--description", "as it is")
	if !strings.Contains(out, "image now created from v/") {
		t.Errorf("image create --from v: %s", out)
	}
	if n := e.snapshotCount("v"); n != 2 {
		t.Errorf("%d snapshots after image create --from v; want s1 and the one taken for it", n)
	}
	e.fails(1, "image golden: already exists", "image", "create", "golden", "--from", "v")
	if n := e.snapshotCount("v"); n != 2 {
		t.Errorf("a refused image create --from v snapshotted: %d snapshots", n)
	}
	target := filepath.Join(e.dir, "from-now")
	e.ok("volume", "add", "nv", target, "--from-image", "now")
	rsyncSame(t, src, target)
}

// TestImageUpdate: image update changes an image's description and name
// through the daemon; the mount shows it under its new name at once, with
// the same tree, and the old name is gone; a taken name changes nothing.
func TestImageUpdate(t *testing.T) {
	e, src := goldenImage(t)
	e.ok("image", "create", "other", "--from", "v/s1")
	d := e.serve(filepath.Join(e.dir, "mnt"))
	e.fails(2, "say what changes", "image", "update", "golden")
	e.fails(1, "image other: already exists", "image", "update", "golden", "--description", "x", "--rename", "other")
	if show := e.ok("image", "show", "golden"); !strings.Contains(show, "description: prepared tree") {
		t.Errorf("a refused update changed the description:\n%s", show)
	}
	if out := e.ok("image", "update", "golden", "--description", "the base", "--rename", "base"); !strings.Contains(out, "image base updated (was golden): the base") {
		t.Errorf("image update: %s", out)
	}
	if _, err := os.Stat(filepath.Join(d.mount, "images", "golden")); !os.IsNotExist(err) {
		t.Errorf("images/golden after the rename: %v", err)
	}
	rsyncSame(t, src, filepath.Join(d.mount, "images", "base"))
	if show := e.ok("image", "show", "base"); !strings.Contains(show, "description: the base") {
		t.Errorf("image show after the update:\n%s", show)
	}
	e.fails(1, "image golden: not found", "image", "show", "golden")
}
