//go:build linux

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SocketName is the daemon's socket, inside the repository directory.
const SocketName = "daemon.sock"

// maxRequest bounds a request line.
const maxRequest = 1 << 20

// Frames of the reply: a type byte, a big-endian u32 length, the data.
const (
	frameStdout = 'o'
	frameStderr = 'e'
	frameExit   = 'x' // data: big-endian u32 exit status
)

// Caller is who sent a request over the socket, with the CLI's own
// standard input and output, which travel with the request (SCM_RIGHTS):
// "image import NAME -" reads the CLI's input, "image export NAME -"
// writes its output.
type Caller struct {
	UID    uint32
	Stdin  *os.File // nil when the CLI passed none
	Stdout *os.File
	// StderrTTY says the CLI's stderr is a terminal.
	StderrTTY bool
}

// listen serves the CLI on the repository's socket. Only the daemon's own
// user and root may connect (checked with SO_PEERCRED). jobs, when set,
// records each request for .control/status; role names the server in
// what it tells callers.
func listen(ctx context.Context, repoDir string, run Handler, jobs *runner, log *slog.Logger, role string) (*socketServer, error) {
	path := filepath.Join(repoDir, SocketName)
	// The repository's lock is ours, so a socket file here is stale.
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	s := &socketServer{l: l, active: map[net.Conn]struct{}{}}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				conn.Close()
				return
			}
			s.conns.Add(1)
			s.active[conn] = struct{}{}
			s.mu.Unlock()
			go func() {
				defer s.conns.Done()
				serveConn(ctx, conn.(*net.UnixConn), run, jobs, log, role)
				s.mu.Lock()
				delete(s.active, conn)
				s.mu.Unlock()
			}()
		}
	}()
	return s, nil
}

// Lend serves other commands' requests on the repository's socket while
// this process, a command run without a daemon, holds the repository
// (badger lets one process open it): run answers them. Closing it stops
// listening and returns once no request runs, so that the repository can
// be closed after it.
func Lend(ctx context.Context, repoDir string, run Handler, log *slog.Logger) (io.Closer, error) {
	ctx, cancel := context.WithCancel(ctx)
	s, err := listen(ctx, repoDir, run, nil, log, "the command holding this repository")
	if err != nil {
		cancel()
		return nil, err
	}
	s.lent = cancel
	return s, nil
}

// socketServer is the listening socket and the requests it runs.
type socketServer struct {
	l     net.Listener
	conns sync.WaitGroup
	// lent, set when the server is a command's (Lend), cancels the
	// requests that outlive closeWait: the repository closes after.
	lent context.CancelFunc

	mu     sync.Mutex
	closed bool // no request is started once set
	active map[net.Conn]struct{}
}

// closeWait bounds how long Close waits for cancelled requests: one
// blocked reading its caller's input does not see the cancellation.
const closeWait = 10 * time.Second

// Close stops listening and waits a while for the requests running,
// which the daemon's context has cancelled, to send their callers their
// end. A command's server (Lend) then cancels what still runs, cuts its
// connections, and waits for it to end.
func (s *socketServer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.l.Close()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-time.After(closeWait):
	}
	if s.lent != nil {
		s.lent()
		s.mu.Lock()
		for c := range s.active {
			c.SetDeadline(time.Now())
		}
		s.mu.Unlock()
		<-done
	}
	return err
}

// frameWriter writes one stream of a reply.
type frameWriter struct {
	mu   *sync.Mutex
	conn io.Writer
	kind byte
}

func (w frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	hdr := [5]byte{w.kind}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.conn.Write(hdr[:]); err != nil {
		return 0, err
	}
	return w.conn.Write(p)
}

func serveConn(ctx context.Context, conn *net.UnixConn, run Handler, jobs *runner, log *slog.Logger, role string) {
	defer conn.Close()
	var mu sync.Mutex
	stdout := frameWriter{&mu, conn, frameStdout}
	stderr := frameWriter{&mu, conn, frameStderr}
	exit := func(code int) {
		stdout.kind = frameExit
		stdout.Write(binary.BigEndian.AppendUint32(nil, uint32(code)))
	}
	uid, err := peerUID(conn)
	if err != nil || (uid != 0 && uid != uint32(os.Geteuid())) {
		fmt.Fprintf(stderr, "chainfs: %s refuses uid %d: %s\n", role, uid, whoMay(uint32(os.Geteuid())))
		exit(1)
		return
	}
	caller := Caller{UID: uid}
	first, files, err := readWithFiles(conn)
	for _, f := range files {
		defer f.Close()
	}
	if len(files) == 2 {
		caller.Stdin, caller.Stdout = files[0], files[1]
	}
	br := bufio.NewReaderSize(io.LimitReader(io.MultiReader(bytes.NewReader(first), conn), maxRequest), 64<<10)
	var line []byte
	if err == nil {
		line, err = br.ReadBytes('\n')
	}
	var req Request
	if err == nil {
		req, err = parseRequest(line)
	}
	caller.StderrTTY = req.StderrTTY
	if err != nil {
		fmt.Fprintf(stderr, "%s%v\n", RefusalPrefix, err)
		exit(2)
		return
	}
	// The client hangs up (Ctrl-C) → the command's context is canceled.
	daemonCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, conn)
		cancel()
	}()
	command := req.String()
	var j *job
	if jobs != nil {
		j = jobs.add("cli", command, "running", uid)
	}
	start := time.Now()
	code := run(ctx, req, stdout, stderr, caller)
	var jerr error
	if code != 0 {
		jerr = fmt.Errorf("exit status %d", code)
		if daemonCtx.Err() != nil {
			fmt.Fprintf(stderr, "chainfs: %s stopped while the command ran; it did not finish\n", role)
		}
	}
	if jobs != nil {
		jobs.finish(j, nil, jerr)
	}
	level := slog.LevelInfo
	if code != 0 {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "request", "request", command, "uid", uid, "exit", code, "took", time.Since(start).Round(time.Millisecond))
	exit(code)
}

// readWithFiles reads the first bytes of a request and the descriptors
// sent with them.
func readWithFiles(conn *net.UnixConn) ([]byte, []*os.File, error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(2*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	var files []*os.File
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "caller"))
		}
	}
	if len(files) != 2 {
		for _, f := range files {
			f.Close()
		}
		files = nil
	}
	return buf[:n], files, nil
}

func peerUID(conn *net.UnixConn) (uint32, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}

// refusedByFiles says who may use a repository whose socket the file
// system kept the caller from.
func refusedByFiles(repoDir string) error {
	var st unix.Stat_t
	if err := unix.Stat(repoDir, &st); err != nil {
		return fmt.Errorf("the daemon serving %s: its socket is not for uid %d: %w", repoDir, os.Geteuid(), err)
	}
	return fmt.Errorf("the daemon serving %s refuses uid %d: %s", repoDir, os.Geteuid(), whoMay(st.Uid))
}

// whoMay says who may use a repository owned by uid: root and its owner.
func whoMay(uid uint32) string {
	if uid == 0 {
		return "only root may use it (run the command as root)"
	}
	owner := fmt.Sprintf("uid %d", uid)
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		owner = fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return "only root and its owner, " + owner + ", may use it (run the command as one of them)"
}

// Streams are a sent request's standard streams: In and Out go to the
// daemon as descriptors, for commands that read or write data there
// ("image import NAME -"); what the operation prints comes back to Stdout
// and Stderr. StderrTTY says Stderr is a terminal, for progress bars.
type Streams struct {
	In, Out        *os.File
	Stdout, Stderr io.Writer
	StderrTTY      bool
}

// Send runs a request in the daemon serving repoDir and copies its
// output. served is false when no daemon serves the repository, and the
// caller runs the operation itself.
func Send(ctx context.Context, repoDir string, req Request, s Streams) (code int, served bool, err error) {
	c, err := net.Dial("unix", filepath.Join(repoDir, SocketName))
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTDIR) {
			return 0, false, nil
		}
		if errors.Is(err, syscall.EACCES) {
			return 0, false, refusedByFiles(repoDir)
		}
		return 0, false, fmt.Errorf("daemon socket: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	req.V, req.StderrTTY = RequestVersion, s.StderrTTY
	b, err := json.Marshal(req)
	if err != nil {
		return 0, false, fmt.Errorf("request %s: %w", req.Op, err)
	}
	// The daemon may refuse the caller before reading the request, so its
	// answer is read even when sending failed.
	var rights []byte
	if s.In != nil && s.Out != nil {
		rights = unix.UnixRights(int(s.In.Fd()), int(s.Out.Fd()))
	}
	_, _, werr := conn.WriteMsgUnix(append(b, '\n'), rights, nil)
	if errors.Is(werr, syscall.EBADF) {
		// A closed standard input or output cannot travel; the command
		// then runs without them.
		_, _, werr = conn.WriteMsgUnix(append(b, '\n'), nil, nil)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReader(conn)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if ctx.Err() != nil {
				return 130, true, nil
			}
			if werr != nil {
				return 0, true, fmt.Errorf("daemon: %w", werr)
			}
			return 0, true, fmt.Errorf("daemon hung up: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		data := make([]byte, n)
		if _, err := io.ReadFull(br, data); err != nil {
			return 0, true, fmt.Errorf("daemon hung up: %w", err)
		}
		switch hdr[0] {
		case frameStdout:
			s.Stdout.Write(data)
		case frameStderr:
			s.Stderr.Write(data)
		case frameExit:
			if n != 4 {
				return 0, true, fmt.Errorf("daemon: malformed reply")
			}
			return int(binary.BigEndian.Uint32(data)), true, nil
		default:
			return 0, true, fmt.Errorf("daemon: malformed reply")
		}
	}
}
