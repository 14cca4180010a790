package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chainfs/chainfs/cmd/chainfs/config"
	"github.com/chainfs/chainfs/cmd/chainfs/journal"
	"github.com/chainfs/chainfs/store"
)

// Exit statuses. Scripts may rely on them; docs/cli.md lists them.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed; nothing it would have made exists
	exitUsage   = 2 // wrong arguments, flags or configuration file
	exitPartial = 3 // done, but some entries were left out or may be inconsistent (each was named)
	exitBusy    = 4 // the volume or repository is busy with another operation (or another host committed first)
)

// usageError is a mistake in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// partialError reports a command that finished with warnings already
// shown; text, if set, says what instead of the default.
type partialError struct {
	n    int
	text string
}

func (e partialError) Error() string {
	if e.text != "" {
		return e.text
	}
	return fmt.Sprintf("%d entr%s could not be read or written as they were (listed above)", e.n, plural(e.n, "y", "ies"))
}

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitStatus ends a command whose operation the daemon ran: the daemon
// has reported its end already, with this status.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// reportError prints err, if any, as one line and returns the exit status.
func reportError(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var status exitStatus
	if errors.As(err, &status) {
		return int(status)
	}
	prefix := ""
	if stderr == os.Stderr && journal.StderrIsJournal() {
		prefix = "<3>" // the journal's priority: an error, not the default info
	}
	fmt.Fprintln(stderr, prefix+"chainfs:", errorText(err))
	var ue usageError
	var pe partialError
	var ce *config.Error
	var re requestError
	switch {
	case errors.As(err, &re):
		return exitUsage
	case errors.As(err, &ce), errors.Is(err, store.ErrUntrusted):
		return exitUsage
	case errors.As(err, &ue), errors.Is(err, store.ErrInvalid):
		fmt.Fprintln(stderr, "Run 'chainfs --help' or 'chainfs COMMAND --help' for usage.")
		return exitUsage
	case errors.As(err, &pe):
		return exitPartial
	case errors.Is(err, store.ErrBusy), errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrChanged):
		return exitBusy
	}
	return exitFailure
}

// adviceError is an error with a line of advice printed after it.
type adviceError struct {
	err    error
	advice string
}

func (e adviceError) Error() string { return e.err.Error() + "\n" + e.advice }
func (e adviceError) Unwrap() error { return e.err }

// errorText is err as a user reads it. The store's sentinel texts are for
// errors.Is; the context before them already says it in words.
func errorText(err error) string {
	if ae, ok := err.(adviceError); ok {
		return errorText(ae.err) + "\n" + ae.advice
	}
	msg := err.Error()
	for _, s := range []error{store.ErrNotRepository, store.ErrInUse, store.ErrInvalid, store.ErrUntrusted, store.ErrDamagedMetadata, store.ErrWrongPassword} {
		msg = strings.TrimSuffix(msg, ": "+s.Error())
	}
	return msg
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// count formats "1 file", "2 files", "1 directory", "3 directories".
func count(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
