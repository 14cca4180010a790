package source

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chainfs/chainfs/store"
	"golang.org/x/sys/unix"
)

// ErrSourceReplaced is a tree volume's source that is empty where its
// previous snapshot was not, or that lies on another file system than when
// the volume was added, or a disk volume's source that became empty or all
// zeros: most likely a mount point whose disk is not mounted, or a wiped
// disk. The snapshot is refused unless Options.AllowEmpty is set.
var ErrSourceReplaced = errors.New("source empty or replaced")

// mountInfo is where the mounts of this process's namespace are listed.
var mountInfo = "/proc/self/mountinfo"

// FileSystemOf identifies the file system holding path (store.SourceFS
// says why mount point and type).
func FileSystemOf(path string) (*store.SourceFS, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_MNT_ID, &stx); err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	f, err := os.Open(mountInfo)
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	defer f.Close()
	// Without STATX_MNT_ID (Linux before 5.8) the mount is the deepest
	// mount point above the resolved path; the last one listed is on top.
	byID := stx.Mask&unix.STATX_MNT_ID != 0
	resolved := path
	if !byID {
		if resolved, err = filepath.EvalSymlinks(path); err != nil {
			return nil, fmt.Errorf("source %s: %w", path, err)
		}
	}
	var best *store.SourceFS
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /root /mnt/point rw,noatime shared:1 - ext4 /dev/sda1 rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(fields) {
			continue
		}
		m := &store.SourceFS{Mount: unescapeMount(fields[4]), Type: fields[sep+1], Device: unescapeMount(fields[sep+2])}
		if byID {
			if id, err := strconv.ParseUint(fields[0], 10, 64); err == nil && id == stx.Mnt_id {
				return m, nil
			}
			continue
		}
		if under(resolved, m.Mount) && (best == nil || len(m.Mount) >= len(best.Mount)) {
			best = m
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	if best == nil {
		return nil, fmt.Errorf("source %s: its mount is not in %s", path, mountInfo)
	}
	return best, nil
}

// under reports whether path is dir or below it.
func under(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash (\040).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
