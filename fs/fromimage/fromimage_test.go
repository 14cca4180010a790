package fromimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/storetest"
)

// TestClearTargetFollowsNothing: a volume from an image that fails takes
// back what it wrote through the directory it checked, not by its path,
// which whoever can write the parent may have swapped for a symlink.
func TestClearTargetFollowsNothing(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	os.Mkdir(victim, 0o700)
	os.WriteFile(filepath.Join(victim, "precious"), []byte("keep"), 0o600)
	for _, existed := range []bool{true, false} {
		target := filepath.Join(base, "site")
		if existed {
			os.Mkdir(target, 0o755)
		}
		dir, made, err := prepareTarget(target)
		if err != nil {
			t.Fatal(err)
		}
		if made == existed {
			t.Errorf("made %v for a target that existed %v", made, existed)
		}
		os.MkdirAll(filepath.Join(target, "written", "deeper"), 0o755)
		os.WriteFile(filepath.Join(target, "written", "deeper", "f"), []byte("x"), 0o644)
		moved := filepath.Join(base, "site.real")
		if err := os.Rename(target, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, target); err != nil {
			t.Fatal(err)
		}
		clearTarget(dir, made)
		dir.Close()
		if b, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(b) != "keep" {
			t.Errorf("existed %v: the symlink's target lost its file: %q %v", existed, b, err)
		}
		if names, _ := os.ReadDir(moved); len(names) != 0 {
			t.Errorf("existed %v: what was written is still there: %v", existed, names)
		}
		os.Remove(target)
		os.RemoveAll(moved)
	}
}

// imageOf is a repository holding image golden, made from a snapshot of
// src as volume base.
func imageOf(t *testing.T, src string) (*store.Repo, *images.Image) {
	t.Helper()
	ctx := context.Background()
	r := storetest.Repo(t, store.Volume{Name: "base", Source: src})
	snap, err := source.Snapshot(ctx, r, "base", store.SnapshotOptions{}, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.Create(ctx, r, "golden", "base", snap.Snapshot.Name, images.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return r, img
}

// TestMake: a volume made from an image holds the image's tree, byte for
// byte and with its metadata, and its first snapshot stores nothing new;
// a taken name or a target that is not empty is refused and leaves
// nothing; a target it made is removed again when the volume cannot be.
func TestMake(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc"), 0o750)
	os.WriteFile(filepath.Join(src, "etc", "conf"), []byte("setting=1\n"), 0o640)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
	os.WriteFile(filepath.Join(src, "big"), big, 0o644)
	when := time.Date(2022, 2, 2, 2, 2, 2, 222222222, time.UTC)
	os.Chtimes(filepath.Join(src, "big"), when, when)
	r, img := imageOf(t, src)

	target := filepath.Join(t.TempDir(), "site")
	res, err := Make(ctx, r, store.Volume{Name: "site", Source: target}, img, r, Options{Progress: new(restore.Progress)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Volume.Name != "site" || res.Snapshot.Stats.LogicalBytes != img.Snapshot.Stats.LogicalBytes || res.Snapshot.Stats.StoredBytes != 0 || res.Snapshot.Tags["image"] != "golden" {
		t.Errorf("volume %+v, first snapshot %+v", res.Volume, res.Snapshot)
	}
	for _, p := range []string{"etc/conf", "big"} {
		want, _ := os.ReadFile(filepath.Join(src, p))
		got, err := os.ReadFile(filepath.Join(target, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v", p, len(got), err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(target, "big"), &st); err != nil || st.Mtim.Nsec != 222222222 || st.Mode&0o777 != 0o644 {
		t.Errorf("big's metadata: mode %o mtime %d.%09d, %v", st.Mode, st.Mtim.Sec, st.Mtim.Nsec, err)
	}

	// A name taken: nothing is written.
	other := filepath.Join(t.TempDir(), "other")
	if _, err := Make(ctx, r, store.Volume{Name: "site", Source: other}, img, r, Options{}); !errors.Is(err, store.ErrExists) {
		t.Errorf("a taken name: %v", err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("a refused volume left its target: %v", err)
	}
	// A target that is not empty.
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "mine"), []byte("x"), 0o600)
	if _, err := Make(ctx, r, store.Volume{Name: "full", Source: full}, img, r, Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a target that is not empty: %v", err)
	}
	// A volume that cannot be added (a bad block size): the target made
	// is removed, no volume is left.
	undone := filepath.Join(t.TempDir(), "undone")
	if _, err := Make(ctx, r, store.Volume{Name: "bad", Source: undone, BlockSize: 3}, img, r, Options{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a bad block size: %v", err)
	}
	if _, err := os.Stat(undone); !os.IsNotExist(err) {
		t.Errorf("the target of a volume that failed is left: %v", err)
	}
	if _, err := r.Volume(ctx, "bad"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a volume that failed is left: %v", err)
	}
}

// TestMakeUndoneAfterTheVolume: a failure after the volume was added (its
// first snapshot cancelled) removes the volume and clears the target
// through the held directory: a target made is removed, one that existed
// is left empty.
func TestMakeUndoneAfterTheVolume(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), bytes.Repeat([]byte("x"), 100<<10), 0o644)
	ctx := context.Background()
	r, img := imageOf(t, src)
	existing := t.TempDir()
	for i, target := range []string{filepath.Join(t.TempDir(), "new"), existing} {
		name := fmt.Sprintf("late%d", i)
		cctx, cancel := context.WithCancel(ctx)
		// Cancelled as soon as the volume is added: its first snapshot
		// fails.
		r.Watch(store.Watcher{Changed: func(volume, snapshot string) {
			if volume == name && snapshot == "" {
				cancel()
			}
		}})
		_, err := Make(cctx, r, store.Volume{Name: name, Source: target}, img, r, Options{})
		r.Watch(store.Watcher{})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: %v, want the cancellation", target, err)
		}
		if _, err := r.Volume(ctx, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the volume stays: %v", target, err)
		}
		names, err := os.ReadDir(target)
		if target == existing {
			if err != nil || len(names) != 0 {
				t.Errorf("the existing target after the undo: %v %v", names, err)
			}
		} else if !os.IsNotExist(err) {
			t.Errorf("the target made is left: %v %v", names, err)
		}
	}
}
