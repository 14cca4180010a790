//go:build linux

package fs

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"

	"github.com/chainfs/chainfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxCommand bounds a control-file write: a command is one short line.
const maxCommand = 4096

// controlFile is one file of .control/.
type controlFile struct {
	gofs.Inode
	readOnlyNode
	fs   *FS
	name string
	mode uint32
}

var (
	_ = (gofs.NodeGetattrer)((*controlFile)(nil))
	_ = (gofs.NodeSetattrer)((*controlFile)(nil))
	_ = (gofs.NodeOpener)((*controlFile)(nil))
)

// Getattr (NodeGetattrer).
func (c *controlFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | c.mode
	out.Nlink = 1
	out.Uid = c.fs.owner
	out.SetTimes(&c.fs.started, &c.fs.started, &c.fs.started)
	out.SetTimeout(0)
	return 0
}

// Setattr accepts the truncation a shell's '>' asks for of a command
// file; nothing else (NodeSetattrer).
func (c *controlFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); c.name == "status" || !ok || sz != 0 || in.Valid&^(fuse.FATTR_SIZE|fuse.FATTR_FH|fuse.FATTR_LOCKOWNER|fuse.FATTR_MTIME|fuse.FATTR_MTIME_NOW|fuse.FATTR_CTIME) != 0 {
		return syscall.EPERM
	}
	return c.Getattr(ctx, fh, out)
}

// Open checks the caller may act; status may be read by all, each reader
// seeing the jobs the controller shows its uid (NodeOpener).
func (c *controlFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	write := flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0
	if c.name == "status" {
		if write {
			return nil, 0, syscall.EACCES
		}
		return &statusHandle{data: c.fs.ctl.Status(callerUID(ctx))}, fuse.FOPEN_DIRECT_IO, 0
	}
	if !write {
		return nil, 0, syscall.EACCES
	}
	if errno := c.fs.mayControl(ctx); errno != 0 {
		return nil, 0, errno
	}
	return &commandHandle{c: c}, fuse.FOPEN_DIRECT_IO, 0
}

// statusHandle reads the job list as it was at open.
type statusHandle struct{ data []byte }

var _ = (gofs.FileReader)((*statusHandle)(nil))

// Read (FileReader).
func (s *statusHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(s.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(s.data[off:min(int64(len(s.data)), off+int64(len(dest)))]), 0
}

// commandHandle runs each write as one command. The kernel holds the
// file's lock during write(), so write() only starts the job and returns
// what is known at once (EINVAL, ENOENT, EBUSY, EEXIST); the job's outcome
// comes back from close(), whose FLUSH the kernel sends without the lock.
// Concurrent writers thus never queue behind each other.
type commandHandle struct {
	c *controlFile

	mu      sync.Mutex
	pending []func(context.Context) error
}

var (
	_ = (gofs.FileWriter)((*commandHandle)(nil))
	_ = (gofs.FileFlusher)((*commandHandle)(nil))
)

// Write starts the command (FileWriter).
func (h *commandHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	wait, err := h.run(ctx, data)
	if err != nil {
		return 0, errno(h.c.fs.log, err, "control "+h.c.name)
	}
	if wait != nil {
		h.mu.Lock()
		h.pending = append(h.pending, wait)
		h.mu.Unlock()
	}
	return uint32(len(data)), 0
}

// Flush waits for the jobs this open file started and returns the first
// failure (FileFlusher).
func (h *commandHandle) Flush(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	pending := h.pending
	h.pending = nil
	h.mu.Unlock()
	var first error
	for _, wait := range pending {
		if err := wait(ctx); err != nil && first == nil {
			first = err
		}
	}
	return errno(h.c.fs.log, first, "control "+h.c.name)
}

// command is one parsed control-file write.
type command struct {
	volume, snapshot, image string
	// file is where export writes the image, "" for nowhere.
	file string
}

// parseCommand reads one write to control file `file`: one line, at most
// maxCommand bytes, no NUL.
func parseCommand(file string, data []byte) (command, error) {
	invalid := func(format string, a ...any) (command, error) {
		return command{}, fmt.Errorf(format+": %w", append(a, store.ErrInvalid)...)
	}
	if len(data) > maxCommand {
		return invalid("command of %d bytes: at most %d", len(data), maxCommand)
	}
	line := string(bytes.TrimRight(data, "\n"))
	if strings.ContainsAny(line, "\n\x00") {
		return invalid("one command a write, one line, no NUL")
	}
	fields := strings.Fields(line)
	snapPath := func(s string) (string, string, bool) {
		vol, snap, ok := strings.Cut(s, "/")
		return vol, snap, ok && vol != "" && snap != "" && !strings.Contains(snap, "/")
	}
	switch file {
	case "snapshot":
		if len(fields) < 1 || len(fields) > 2 {
			return invalid("snapshot: want \"VOLUME [NAME]\"")
		}
		c := command{volume: fields[0]}
		if len(fields) == 2 {
			c.snapshot = fields[1]
		}
		return c, nil
	case "delete":
		if len(fields) != 1 {
			return invalid("delete: want \"VOLUME/SNAPSHOT\"")
		}
		vol, snap, ok := snapPath(fields[0])
		if !ok {
			return invalid("delete: want \"VOLUME/SNAPSHOT\"")
		}
		return command{volume: vol, snapshot: snap}, nil
	case "export":
		const want = "export: want \"VOLUME/SNAPSHOT IMAGE [/ABSOLUTE/FILE]\""
		if len(fields) != 2 && len(fields) != 3 {
			return invalid(want)
		}
		vol, snap, ok := snapPath(fields[0])
		if !ok {
			return invalid(want)
		}
		c := command{volume: vol, snapshot: snap, image: fields[1]}
		if len(fields) == 3 {
			if c.file = fields[2]; !strings.HasPrefix(c.file, "/") {
				return invalid("export: the file %q must be an absolute path", c.file)
			}
		}
		return c, nil
	}
	return invalid("unknown control file %s", file)
}

// run parses and starts a command; refused commands are recorded for
// status.
func (h *commandHandle) run(ctx context.Context, data []byte) (wait func(context.Context) error, err error) {
	f := h.c.fs
	c, err := parseCommand(h.c.name, data)
	if err != nil {
		f.ctl.Reject(ctx, h.c.name, string(bytes.TrimRight(data, "\n")), err)
		return nil, err
	}
	switch h.c.name {
	case "snapshot":
		return f.ctl.Snapshot(ctx, c.volume, c.snapshot)
	case "delete":
		return f.ctl.Delete(ctx, c.volume, c.snapshot)
	default:
		return f.ctl.Export(ctx, c.volume, c.snapshot, c.image, c.file)
	}
}
