// Package identity runs file-system work as the user who asked for it.
//
// The daemon runs as root and acts for callers that are not: a restore or
// an export asked for over the socket or through .control/ must be able to
// create, chown and chmod only what the caller could by hand. The kernel
// judges that when the work runs with the caller's file-system uid, gid and
// groups and without root's capabilities. Linux keeps these per thread, so
// Do runs the work on an OS thread of its own, changed for the caller and
// thrown away afterwards: the thread is never handed back to Go's
// scheduler, so no other goroutine ever runs with the caller's identity,
// and the caller's work never runs with root's.
package identity

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Identity is the user file-system work is done for.
type Identity struct {
	UID, GID uint32
	// Groups are the supplementary groups.
	Groups []uint32
}

// String names the identity for logs.
func (id *Identity) String() string {
	if id == nil {
		return "the daemon"
	}
	return fmt.Sprintf("uid %d gid %d", id.UID, id.GID)
}

// OfProcess is the identity of process pid, whose uid and gid the kernel
// vouched for (SO_PEERCRED, a FUSE request's header); its supplementary
// groups are read from /proc. A process that is gone by then gets no
// supplementary groups, which can only deny, never grant.
func OfProcess(pid, uid, gid uint32) *Identity {
	id := &Identity{UID: uid, GID: gid}
	f, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return id
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		for _, g := range strings.Fields(rest) {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				id.Groups = append(id.Groups, uint32(n))
			}
		}
		break
	}
	return id
}

// Privileged reports whether work for id runs as this process is: id is
// nil or root, or this process is not root and so cannot act as anybody
// else (the daemon's socket and control directory admit only root and
// the repository's owner).
func (id *Identity) Privileged() bool {
	return id == nil || id.UID == 0 || os.Geteuid() != 0
}

// Do runs fn as id and returns its error. When id is not Privileged, fn
// runs on a thread of its own with id's file-system uid, gid and groups
// and no capabilities, which the thread never gets back. fn must do its
// file-system work itself: a goroutine it starts runs as this process.
func (id *Identity) Do(fn func() error) error {
	if id.Privileged() {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		if err := id.assume(); err != nil {
			done <- fmt.Errorf("act as %s: %w", id, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// assume changes the calling thread to id. The order matters: groups and
// the file-system gid need CAP_SETGID and the uid CAP_SETUID, and the
// capabilities go last.
func (id *Identity) assume() error {
	var groups unsafe.Pointer
	if len(id.Groups) > 0 {
		groups = unsafe.Pointer(&id.Groups[0])
	}
	// RawSyscall, not unix.Setgroups: that changes every thread of the process.
	if _, _, errno := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(id.Groups)), uintptr(groups), 0); errno != 0 {
		return fmt.Errorf("setgroups: %w", errno)
	}
	// setfsuid and setfsgid report failure only by not changing the
	// value; read it back.
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(id.GID), 0, 0)
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0); uint32(got) != id.GID {
		return fmt.Errorf("setfsgid %d: not changed", id.GID)
	}
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(id.UID), 0, 0)
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(got) != id.UID {
		return fmt.Errorf("setfsuid %d: not changed", id.UID)
	}
	// A non-zero fsuid already clears the file capabilities (CAP_CHOWN,
	// CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_MKNOD, ...), but not CAP_SETFCAP
	// or CAP_SYS_ADMIN, which let a restore set security.capability or
	// trusted.* attributes: the thread keeps none.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Effective, data[1].Effective = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

type contextKey struct{}

// NewContext returns ctx carrying the identity of whoever asked for the
// work done under it.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext is the identity ctx carries; nil when the work is the
// process's own.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(contextKey{}).(*Identity)
	return id
}
