package integration

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainfs/chainfs/store/s3"
	"github.com/chainfs/chainfs/store/s3/s3test"
)

// TestImageImportFromBucket: an image file uploaded to a bucket of a
// real MinIO is imported by its s3:// location, with the endpoint and
// credentials of the environment, by the CLI and through a daemon, and
// restores exactly; a missing object, a wrong key and a bucket location
// that names no object are refused and change nothing.
func TestImageImportFromBucket(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t) // the CLI's and the daemon's environment
	a, src := goldenImage(t)
	data := exportFile(t, a, "golden", filepath.Join(a.dir, "golden.img"))
	b, err := s3.Open("images", s3.ConfigFromEnv())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Create(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "golden/golden.img", bytes.NewReader(data), int64(len(data))); err != nil {
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
