//go:build linux

package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/chainfs/chainfs/store"
)

// errno maps an error to the errno a FUSE call returns. Corruption is
// logged with what was being read, since the caller sees only EIO.
func errno(log *slog.Logger, err error, op string, attrs ...any) syscall.Errno {
	var e syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e
	case errors.Is(err, store.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, store.ErrBusy), errors.Is(err, store.ErrInUse):
		return syscall.EBUSY
	case errors.Is(err, store.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, store.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, store.ErrHasSnapshots):
		return syscall.ENOTEMPTY
	case errors.Is(err, store.ErrHeld):
		return syscall.EPERM
	case errors.Is(err, syscall.ENOSPC):
		return syscall.ENOSPC
	case errors.Is(err, store.ErrCorrupt):
		log.Error("corrupt data: returning EIO", append([]any{"op", op, "err", err}, attrs...)...)
		return syscall.EIO
	}
	log.Error("I/O error", append([]any{"op", op, "err", err}, attrs...)...)
	return syscall.EIO
}
