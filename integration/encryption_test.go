package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/store/s3/s3test"
	"golang.org/x/sys/unix"
)

// marker is put in every kind of name and content of the tests' trees,
// and looked for in every file and object of the repository.
const marker = "chainfs-secret-marker-5e1d"

// newEncryptedEnv is newEnv with an encrypted repository whose password
// is in a file CHAINFS_PASSWORD_FILE names.
func newEncryptedEnv(t *testing.T, password string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, repo: filepath.Join(dir, "repo"), encrypted: true}
	e.vars = []string{"CHAINFS_PASSWORD_FILE=" + writePassword(t, dir, "password", password)}
	e.ok("init", "--encrypt")
	return e
}

func writePassword(t *testing.T, dir, name, password string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// markedTree makes a tree with the marker in a directory's and a file's
// name, in file contents (text, which compression would shrink, and
// random data around it), in an xattr and in a symlink's target.
func markedTree(t *testing.T, src string) {
	t.Helper()
	sub := filepath.Join(src, "dir-"+marker)
	os.MkdirAll(sub, 0o755)
	var text bytes.Buffer
	for i := 0; text.Len() < 3<<20; i++ {
		fmt.Fprintf(&text, "%s: line %d\n", marker, i)
	}
	os.WriteFile(filepath.Join(sub, marker+".txt"), text.Bytes(), 0o644)
	mixed := append(randomData(3, 100<<10), []byte(marker)...)
	os.WriteFile(filepath.Join(src, "mixed"), append(mixed, randomData(4, 100<<10)...), 0o644)
	if err := unix.Setxattr(filepath.Join(src, "mixed"), "user.note", []byte(marker), 0); err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	os.Symlink("target-"+marker, filepath.Join(src, "link"))
}

// imageRoot is the root hash of an image of e's repository.
func imageRoot(e *env, name string) string {
	var img struct {
		Snapshot struct {
			Root string `json:"root"`
		} `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(e.ok("image", "show", name, "--json")), &img); err != nil || img.Snapshot.Root == "" {
		e.t.Fatalf("image show %s: %v", name, err)
	}
	return img.Snapshot.Root
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// holding lists the files under dir that hold needle.
func holding(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, needle) {
			found = append(found, path)
		}
		return nil
	})
	return found
}

// treeDigest is a digest of every file's name and bytes under dir but
// the lock's, whose text names the last process that held it.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != "lock" {
			if f, err := os.Open(path); err == nil {
				fmt.Fprintln(h, path)
				io.Copy(h, f)
				f.Close()
			}
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestEncryption drives an encrypted repository as a user does: a
// snapshot of a tree with the marker everywhere, restored and read
// through the mount exactly, and no file of the repository holds the
// marker; a wrong or a missing password exits 1 and changes nothing; keys
// are added, listed, removed (its password no longer opens) and changed
// while the daemon serves; a flipped byte is found by check and is EIO
// through the mount; a native image is refused with advice, a tar one
// taken.
func TestEncryption(t *testing.T) {
	e := newEncryptedEnv(t, "correct horse")
	src := filepath.Join(e.dir, "src")
	markedTree(t, src)
	vol := "vol-" + marker
	e.ok("volume", "add", vol, src)
	e.snapshot(vol, "--name", "s1", "--description", "about "+marker)
	// A disk volume: an image file holding the marker.
	disk := filepath.Join(e.dir, "disk.img")
	os.WriteFile(disk, append(append(randomData(9, 3<<20), bytes.Repeat([]byte(marker), 1000)...), randomData(10, 1<<20)...), 0o644)
	e.ok("volume", "add", "d", disk)
	e.snapshot("d", "--name", "s")
	os.WriteFile(filepath.Join(src, "later"), []byte(marker), 0o644)
	e.snapshot(vol, "--name", "s2-"+marker)
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", vol+"/s2-"+marker, dst)
	rsyncSame(t, src, dst)
	e.ok("check", "--read-data")
	if !strings.Contains(e.ok("snapshot", "list", vol), "about "+marker) {
		t.Error("the description does not read back")
	}

	d := e.serve(filepath.Join(e.dir, "mnt"))
	rsyncSame(t, src, d.snapDir(vol, "s2-"+marker))
	if got, err := os.ReadFile(filepath.Join(d.snapDir("d", "s"), "disk.img")); err != nil || !bytes.Equal(got, mustRead(t, disk)) {
		t.Errorf("the disk through the mount: %d bytes, %v", len(got), err)
	}
	// Keys change while the daemon holds the repository.
	second := writePassword(t, e.dir, "second", "battery staple")
	var added struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.ok("key", "add", "--new-password-file", second, "--json")), &added); err != nil || added.ID == "" {
		t.Fatalf("key add: %+v %v", added, err)
	}
	var keys []struct {
		ID      string `json:"id"`
		Current bool   `json:"current"`
	}
	if err := json.Unmarshal([]byte(e.ok("key", "list", "--json")), &keys); err != nil || len(keys) != 2 {
		t.Fatalf("key list: %+v %v", keys, err)
	}
	first := keys[0].ID
	if !keys[0].Current {
		first = keys[1].ID
	}
	e.fails(2, "change its password with 'chainfs key passwd'", "key", "remove", first)
	e.ok("--password-file", second, "key", "remove", first)
	d.stop()

	if found := holding(t, e.repo, []byte(marker)); len(found) > 0 {
		t.Errorf("the marker is readable without the key in %v", found)
	}

	before := treeDigest(t, e.repo)
	e.fails(1, "no key opens with this password", "snapshot", "list") // the removed key's
	e.fails(1, "no key opens with this password", "--password-command", "echo nope", "restore", vol+"/s1", filepath.Join(e.dir, "no"))
	r := e.runAs([]string{"env", "-u", "CHAINFS_PASSWORD_FILE"}, "snapshot", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "needs a password") {
		t.Errorf("no password: exit %d %s", r.code, r.stderr)
	}
	twoLines := filepath.Join(e.dir, "two-lines")
	os.WriteFile(twoLines, []byte("x\ny\n"), 0o600)
	e.fails(1, "holds more than one line", "--password-file", twoLines, "snapshot", "list")
	e.fails(2, "not both", "--password-file", second, "--password-command", "echo x", "snapshot", "list")
	e.fails(2, "only with --encrypt", "--repo", filepath.Join(e.dir, "plain-repo"), "--password-file", second, "init")
	if after := treeDigest(t, e.repo); after != before {
		t.Error("a refused password changed the repository")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "no")); err == nil {
		t.Error("a restore with a wrong password made its target")
	}
	e.vars = []string{"CHAINFS_PASSWORD_FILE=" + second}
	third := writePassword(t, e.dir, "third", "tr0ub4dor")
	e.ok("key", "passwd", "--new-password-file", third)
	e.fails(1, "no key opens with this password", "snapshot", "list")
	e.vars = []string{"CHAINFS_PASSWORD_COMMAND=cat " + third}
	e.ok("snapshot", "list")

	// Images: native and tar out in the clear and in again, the tree the
	// same under plain names after a round through the encrypted
	// repository's keyed ones; and a file sealed with a password of its
	// own.
	e.ok("image", "create", "img", "--from", vol+"/s1")
	native := filepath.Join(e.dir, "img.native")
	e.ok("image", "export", "img", native)
	plain := newEnv(t)
	plain.ok("image", "import", "from-encrypted", native)
	again := filepath.Join(e.dir, "again.native")
	plain.ok("image", "export", "from-encrypted", again)
	e.ok("image", "import", "native-in", again)
	back := filepath.Join(e.dir, "back.native")
	e.ok("image", "export", "native-in", back)
	plain.ok("image", "import", "round-trip", back)
	if a, b := imageRoot(plain, "from-encrypted"), imageRoot(plain, "round-trip"); a != b {
		t.Errorf("a tree through an encrypted repository and back: root %s, was %s", b, a)
	}
	// image copy out of it renames the tree as export does; into it, the
	// copier's password opens the target. A copy again under the same
	// name is refused, since the two trees' names cannot be compared.
	e.ok("image", "copy", "img", "--to-repo", plain.repo, "--as", "copied-out")
	if a, b := imageRoot(plain, "from-encrypted"), imageRoot(plain, "copied-out"); a != b {
		t.Errorf("image copy out of an encrypted repository: root %s, an export gives %s", b, a)
	}
	e.fails(1, "with an encrypted repository on either side it cannot be told from img without reading both",
		"image", "copy", "img", "--to-repo", plain.repo, "--as", "copied-out")
	plain.vars = e.vars
	plain.ok("image", "copy", "round-trip", "--to-repo", e.repo, "--as", "copied-in")
	plain.vars = nil
	copiedIn := filepath.Join(e.dir, "copied-in.native")
	e.ok("image", "export", "copied-in", copiedIn)
	plain.ok("image", "import", "copied-in", copiedIn)
	if a, b := imageRoot(plain, "from-encrypted"), imageRoot(plain, "copied-in"); a != b {
		t.Errorf("image copy into an encrypted repository and out: root %s, was %s", b, a)
	}
	tarFile := filepath.Join(e.dir, "img.tar")
	e.ok("image", "export", "img", tarFile, "--format", "tar")
	e.ok("image", "import", "tar-in", tarFile)
	e.ok("check", "--read-data")

	sealed := filepath.Join(e.dir, "img.sealed")
	imagePW := writePassword(t, e.dir, "image-password", "for the recipient")
	var exported struct {
		Stats struct {
			StreamBytes int64 `json:"stream_bytes"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(e.ok("image", "export", "img", sealed, "--encrypt", "--image-password-file", imagePW, "--json")), &exported); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sealed); err != nil {
		t.Error(err)
	} else if st.Size() != exported.Stats.StreamBytes {
		t.Errorf("a sealed export reports %d bytes written; the file has %d", exported.Stats.StreamBytes, st.Size())
	}
	if bytes.Contains(mustRead(t, sealed), []byte(marker)) {
		t.Error("the marker shows in an image file sealed with a password")
	}
	plain.fails(1, "sealed with a password", "image", "import", "x", sealed)
	plain.fails(1, "the password does not open this file", "image", "import", "x", sealed, "--image-password-file", second)
	plain.ok("image", "import", "unsealed", sealed, "--image-password-file", imagePW)
	if a, b := imageRoot(plain, "from-encrypted"), imageRoot(plain, "unsealed"); a != b {
		t.Errorf("an image sealed and opened again: root %s, was %s", b, a)
	}

	// Through a daemon the password travels beside the request, never
	// in what the daemon logs or lists.
	d = e.serve(filepath.Join(e.dir, "mnt"), "--log-level", "debug")
	viaDaemon := filepath.Join(e.dir, "img.daemon.sealed")
	e.ok("image", "export", "img", viaDaemon, "--encrypt", "--image-password-file", imagePW)
	e.fails(1, "the password does not open this file", "image", "import", "y", viaDaemon, "--image-password-file", second)
	e.ok("image", "import", "via-daemon", viaDaemon, "--image-password-file", imagePW)
	d.stop()
	for _, secret := range []string{"for the recipient", base64.StdEncoding.EncodeToString([]byte("for the recipient"))} {
		if strings.Contains(d.log.String(), secret) {
			t.Errorf("the daemon's log shows the image's password (%q)", secret)
		}
	}

	// A flipped byte in the middle of the packs.
	flipPackByte(t, e.repo, 200)
	if r := e.run("check", "--read-data"); r.code != 1 || !strings.Contains(r.stderr, "problem") {
		t.Errorf("check --read-data over a flipped byte: exit %d\n%s", r.code, r.stderr)
	}
	// Through the mount every file reads as the source's or fails with
	// EIO, and one does.
	d = e.serve(filepath.Join(e.dir, "mnt"))
	eio := 0
	filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		got, err := os.ReadFile(filepath.Join(d.snapDir(vol, "s2-"+marker), rel))
		switch {
		case err != nil && strings.Contains(err.Error(), "input/output error"):
			eio++
		case err != nil:
			t.Errorf("%s through the mount: %v", rel, err)
		case !bytes.Equal(got, mustRead(t, path)):
			t.Errorf("%s through the mount: other bytes than the source's", rel)
		}
		return nil
	})
	if eio == 0 {
		t.Error("no file of the damaged pack failed with EIO through the mount")
	}
}

// TestEncryptionInABucket: an encrypted repository in a bucket of a real
// MinIO, snapshotted from one host and read on a second (a replica made
// from the bucket, its checkpoint and journal opened with the key): no
// object holds the marker, and the second host without the password
// opens nothing.
func TestEncryptionInABucket(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "sealed")
	dir := t.TempDir()
	pw := "CHAINFS_PASSWORD_FILE=" + writePassword(t, dir, "password", "s3 password")
	host := func(name string) *env {
		return &env{t: t, dir: dir, repo: "s3://sealed/repo", encrypted: true,
			vars: append(srv.Env(), "CHAINFS_CACHE="+filepath.Join(dir, name), pw)}
	}
	a, b := host("a"), host("b")
	a.ok("init", "--encrypt")
	src := filepath.Join(dir, "src")
	markedTree(t, src)
	vol := "vol-" + marker
	a.ok("volume", "add", vol, src)
	a.snapshot(vol, "--name", "s1", "--description", "about "+marker)
	a.ok("gc") // and a checkpoint, sealed
	dst := filepath.Join(dir, "restored")
	if r := b.run("--log-level", "info", "restore", vol+"/s1", dst); r.code != 0 || !strings.Contains(r.stderr, "replica made from a checkpoint") {
		t.Fatalf("restore on a second host: exit %d\n%s", r.code, r.stderr)
	}
	rsyncSame(t, src, dst)
	nopw := &env{t: t, dir: dir, repo: b.repo, vars: append(srv.Env(), "CHAINFS_CACHE="+filepath.Join(dir, "c"))}
	nopw.fails(1, "needs a password", "snapshot", "list")

	ctx := context.Background()
	var objects int
	for obj, err := range bucket.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		objects++
		data := make([]byte, obj.Size)
		if err := bucket.ReadAt(ctx, obj.Key, data, 0); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(marker)) {
			t.Errorf("object %s holds the marker", obj.Key)
		}
	}
	if objects < 5 {
		t.Errorf("only %d objects in the bucket", objects)
	}
	for _, h := range []string{"a", "b"} {
		if found := holding(t, filepath.Join(dir, h), []byte(marker)); len(found) > 0 {
			t.Errorf("host %s's replica holds the marker in %v", h, found)
		}
	}
}
