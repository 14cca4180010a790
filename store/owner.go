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

// checkTrusted refuses, when this process is root, a repository directory
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
func checkTrusted(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for _, sub := range []string{metaDir, packsDir} {
		if err := trustedDir(filepath.Join(abs, sub), false); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := trustedDir(abs, false); err != nil {
		return err
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if err := trustedDir(d, true); err != nil {
			return err
		}
		if d == "/" {
			return nil
		}
	}
}

// trustedDir checks one directory: root's, and writable by nobody else
// (but for a sticky ancestor).
func trustedDir(dir string, ancestor bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("open repository: %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// A symlink the admin made (/var/lib/chainfs → /srv/chainfs) is
		// judged by where it points, and by who may change the link.
		target, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return fmt.Errorf("open repository: %s: %w", dir, err)
		}
		if st.Uid != 0 {
			return untrusted(dir, fmt.Sprintf("is a symlink of uid %d", st.Uid))
		}
		return trustedDir(target, ancestor)
	}
	switch {
	case st.Uid != 0:
		return untrusted(dir, fmt.Sprintf("belongs to uid %d", st.Uid))
	case st.Mode&0o022 != 0 && !(ancestor && st.Mode&unix.S_ISVTX != 0):
		return untrusted(dir, fmt.Sprintf("is writable by others (mode %04o)", st.Mode&0o7777))
	}
	return nil
}

func untrusted(dir, why string) error {
	return fmt.Errorf("%s %s: root does not open a repository another user can change "+
		"(its files could point root's writes anywhere); run the command as that user, or make the folders root's and not writable by others: %w",
		dir, why, ErrUntrusted)
}
