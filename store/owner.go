package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrUntrusted: root was asked to open a repository another user can
// change.
var ErrUntrusted = errors.New("repository another user can change")

// CheckTrusted refuses, when this process is root, a repository directory
// that another user could change under it. Whoever can rename or replace a
// repository's folders, or its files' folders, chooses what root opens,
// writes and truncates there: badger's tables and logs and the packs could
// be symlinks to any file on the machine, and the sources of that user's
// volumes would be read with root's rights into files the user reads. So
// the repository's directory, its metadata and packs folders and every
// folder above it must belong to root and be writable by nobody else; an
// ancestor writable by others (/tmp) passes when it is sticky, since then
// only the owner of an entry may rename it. A user's repository is served
// by that user's own daemon and used by that user's own commands.
func CheckTrusted(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for _, p := range []string{abs, filepath.Join(abs, metaDir), filepath.Join(abs, packsDir)} {
		if err := trustedPath(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// Folders made root's after a user had them may still hold what the
	// user left: a symlink as the lock or a table, a hard link to a file
	// elsewhere. Root opens those files for writing. (Packs are made
	// anew, never opened for writing, and read with every block checked.)
	for _, d := range []string{abs, filepath.Join(abs, metaDir)} {
		if err := trustedEntries(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// trustedEntries checks every entry of folder dir: root's, no symlink, and
// a file of one link.
func trustedEntries(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone meanwhile (a log badger rotated)
			}
			return fmt.Errorf("open repository: %s: %w", p, err)
		}
		switch {
		case st.Uid != 0:
			return untrusted(p, fmt.Sprintf("belongs to uid %d", st.Uid))
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return untrusted(p, "is a symlink")
		case st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink != 1:
			return untrusted(p, fmt.Sprintf("is a file of %d links", st.Nlink))
		}
	}
	return nil
}

// trustedPath checks the directory at abs and every folder above it, both
// as written and as resolved: a symlink on the way (/var/lib/chainfs →
// /srv/chainfs) must be root's, and so must the folders above where it
// leads.
func trustedPath(abs string) error {
	for _, p := range []string{abs, ""} {
		if p == "" {
			real, err := filepath.EvalSymlinks(abs)
			if err != nil {
				return fmt.Errorf("open repository: %w", err)
			}
			p = real
		}
		if err := trustedDir(p, false); err != nil {
			return err
		}
		for d := filepath.Dir(p); ; d = filepath.Dir(d) {
			if err := trustedDir(d, true); err != nil {
				return err
			}
			if d == "/" {
				break
			}
		}
	}
	return nil
}

// trustedDir checks one folder: root's, and writable by nobody else (but
// for a sticky ancestor); a symlink must be root's, and where it leads is
// checked by trustedPath.
func trustedDir(dir string, ancestor bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("open repository: %s: %w", dir, err)
	}
	switch {
	case st.Uid != 0 && st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return untrusted(dir, fmt.Sprintf("is a symlink of uid %d", st.Uid))
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return nil
	case st.Uid != 0:
		return untrusted(dir, fmt.Sprintf("belongs to uid %d", st.Uid))
	case st.Mode&0o022 != 0 && !(ancestor && st.Mode&unix.S_ISVTX != 0):
		return untrusted(dir, fmt.Sprintf("is writable by others (mode %04o)", st.Mode&0o7777))
	}
	return nil
}

func untrusted(dir, why string) error {
	return fmt.Errorf("%s %s: root does not open a repository another user can change "+
		"(its files could point root's writes anywhere); run the command as that user, or make the repository root's (chown -R) and its folders writable by nobody else: %w",
		dir, why, ErrUntrusted)
}
