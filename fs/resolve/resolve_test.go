package resolve

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpen: symlinks of this user and of root are followed, another
// user's is not (on the way or at the end); Create makes what is missing
// and hands each directory made to Made; a loop ends.
func TestOpen(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.MkdirAll(filepath.Join(real, "in"), 0o755)
	os.Symlink(real, filepath.Join(base, "mine"))
	os.Symlink("loop", filepath.Join(base, "loop"))
	fd, _, err := Open(filepath.Join(base, "mine", "in"), Options{DirOnly: true})
	if err != nil {
		t.Fatalf("through this user's symlink: %v", err)
	}
	unix.Close(fd)
	if _, _, err := Open(filepath.Join(base, "loop"), Options{}); !errors.Is(err, unix.ELOOP) {
		t.Errorf("a symlink loop: %v, want ELOOP", err)
	}
	var made []string
	fd, wasMade, err := Open(filepath.Join(base, "a", "b"), Options{Create: true, Mode: 0o700, DirOnly: true,
		Made: func(fd int, st *unix.Stat_t, mode uint32) error {
			made = append(made, strings.TrimPrefix(procName(t, fd), base))
			return nil
		}})
	if err != nil || !wasMade || strings.Join(made, " ") != "/a /a/b" {
		t.Errorf("create a/b: %v, made %v %v", err, wasMade, made)
	}
	unix.Close(fd)
	if _, _, err := Open(filepath.Join(base, "a", "b"), Options{Create: true, Mode: 0o700,
		Made: func(int, *unix.Stat_t, uint32) error { return errors.New("not this one") }}); err != nil {
		t.Errorf("an existing directory went to Made: %v", err)
	}
	if _, _, err := Open(filepath.Join(base, "c"), Options{Create: true, Mode: 0o700,
		Made: func(int, *unix.Stat_t, uint32) error { return errors.New("swapped") }}); err == nil || !strings.Contains(err.Error(), "swapped") {
		t.Errorf("Made's refusal: %v", err)
	}

	if os.Geteuid() != 0 {
		return
	}
	theirs := filepath.Join(base, "theirs")
	os.Symlink(real, theirs)
	os.Lchown(theirs, 1001, 1001)
	for _, p := range []string{theirs, filepath.Join(theirs, "in")} {
		if _, _, err := Open(p, Options{}); err == nil || !strings.Contains(err.Error(), "a symlink of uid 1001") {
			t.Errorf("%s: %v, want uid 1001's symlink refused", p, err)
		}
	}
}

func procName(t *testing.T, fd int) string {
	t.Helper()
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenFailsWithoutLeaking: a path that fails, on the way or at the
// end, leaves no descriptor open (a daemon resolves a vanished source on
// every scheduled snapshot).
func TestOpenFailsWithoutLeaking(t *testing.T) {
	base := t.TempDir()
	os.Mkdir(filepath.Join(base, "d"), 0o755)
	os.WriteFile(filepath.Join(base, "d", "file"), nil, 0o644)
	count := func() int {
		names, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc")
		}
		return len(names)
	}
	before := count()
	for range 50 {
		for _, p := range []string{"d/missing", "d/missing/deeper", "d/file/below"} {
			if _, _, err := Open(filepath.Join(base, p), Options{DirOnly: true}); err == nil {
				t.Fatalf("%s opened", p)
			}
		}
	}
	if after := count(); after > before+2 {
		t.Errorf("%d descriptors before 150 failed opens, %d after", before, after)
	}
}

// TestBeneath: a path below a held directory is opened without
// following a symlink, on the way or at the end, and never out of the
// directory.
func TestBeneath(t *testing.T) {
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(base, "a", "b", "f"), []byte("x"), 0o644)
	os.Symlink(filepath.Join(base, "a"), filepath.Join(base, "link"))
	os.Symlink("f", filepath.Join(base, "a", "b", "g"))
	root, err := unix.Open(base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	fd, err := Beneath(root, "a/b/f")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("a/b/f: mode %o %v", st.Mode, err)
	}
	unix.Close(fd)
	// A symlink at the end is the link itself, never its target.
	if fd, err := Beneath(root, "a/b/g"); err != nil {
		t.Error(err)
	} else {
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("a/b/g: mode %o, want the symlink", st.Mode)
		}
		unix.Close(fd)
	}
	for _, rel := range []string{"link/b/f", "../" + filepath.Base(base) + "/a/b/f", "/etc/passwd"} {
		if fd, err := Beneath(root, rel); err == nil {
			unix.Close(fd)
			t.Errorf("%s: opened", rel)
		}
	}
}
