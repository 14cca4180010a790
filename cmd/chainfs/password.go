package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// passwordSource says where a password comes from: a command's output, a
// file, a systemd credential, or the terminal, in that order.
type passwordSource struct {
	file, command string
	// fileFlag names the flag that gives file, for messages.
	fileFlag string
	// credential: a repository's password, which its systemd credential
	// may give (a new password or an image file's never is).
	credential bool
	// none is the error when nothing gives a password.
	none error
	// of names, at the terminal's prompt, what the password opens.
	of string
}

// forRepo is p asking at the terminal for the password of repo.
func (p passwordSource) forRepo(repo string) passwordSource {
	p.of = repo
	return p
}

// credentialName is the systemd credential (LoadCredential=,
// LoadCredentialEncrypted=) a unit gives a daemon the password as.
const credentialName = "chainfs-password"

// passwordCommandTimeout bounds a password command: one that waits for
// input nobody gives would hang the daemon's start.
const passwordCommandTimeout = time.Minute

// errNoPassword: an encrypted repository, and nowhere to read its
// password from.
var errNoPassword = errors.New("an encrypted repository needs a password: give it with --password-file FILE, --password-command CMD " +
	"(or CHAINFS_PASSWORD_FILE, CHAINFS_PASSWORD_COMMAND), a systemd credential " + credentialName + ", or at a terminal")

// passwordsOf is where the repository's password comes from for a
// command: its flags, or the variables they stand for. A flag given
// beats the other's variable; two given alike are a usage error (get).
func passwordsOf(c *cli.Context) passwordSource {
	p := passwordSource{file: c.String("password-file"), command: c.String("password-command"), fileFlag: "--password-file",
		credential: true, none: errNoPassword}
	switch file, command := flagGiven(c, "password-file"), flagGiven(c, "password-command"); {
	case file && !command:
		p.command = ""
	case command && !file:
		p.file = ""
	}
	return p
}

// passwordsFromEnv is passwordsOf for what runs without a parsed command
// line (mount -t fuse.chainfs, a copy's target): the variables alone.
func passwordsFromEnv() passwordSource {
	return passwordSource{file: os.Getenv("CHAINFS_PASSWORD_FILE"), command: os.Getenv("CHAINFS_PASSWORD_COMMAND"),
		fileFlag: "CHAINFS_PASSWORD_FILE", credential: true, none: errNoPassword}
}

// newPasswords is where a new key's password comes from: a file, or the
// terminal, asked twice.
func newPasswords(c *cli.Context) passwordSource {
	return passwordSource{file: c.String("new-password-file"), fileFlag: "--new-password-file",
		none: errors.New("a new password is needed: give it with --new-password-file FILE, or at a terminal")}
}

// read reads the password of an existing repository.
func (p passwordSource) read(ctx context.Context) ([]byte, error) {
	prompt := "password: "
	if p.of != "" {
		prompt = "password of " + p.of + ": "
	}
	return p.get(ctx, prompt, false)
}

// readNew reads the password of a new key: asked twice at a terminal.
func (p passwordSource) readNew(ctx context.Context) ([]byte, error) {
	return p.get(ctx, "new password: ", true)
}

func (p passwordSource) get(ctx context.Context, prompt string, confirm bool) ([]byte, error) {
	switch {
	case p.command != "" && p.file != "":
		return nil, usagef("give one of --password-file and --password-command (or of CHAINFS_PASSWORD_FILE and CHAINFS_PASSWORD_COMMAND), not both")
	case p.command != "":
		ctx, cancel := context.WithTimeout(ctx, passwordCommandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", p.command)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("--password-command %q: %v: it must print the password and exit 0", p.command, err)
		}
		return oneLine(out, "--password-command's output")
	case p.file != "":
		b, err := readPasswordFile(p.file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.fileFlag, err)
		}
		return oneLine(b, p.file)
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" && p.credential && !confirm {
		path := filepath.Join(dir, credentialName)
		if b, err := readPasswordFile(path); err == nil {
			return oneLine(b, "credential "+credentialName)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("credential %s: %w", credentialName, err)
		}
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, p.none
	}
	pw, err := askTerminal(ctx, prompt)
	if err != nil {
		return nil, err
	}
	if len(pw) == 0 {
		return nil, errors.New("an empty password is refused")
	}
	if confirm {
		again, err := askTerminal(ctx, "again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passwords differ")
		}
	}
	return pw, nil
}

// askTerminal reads a line from the terminal without echo. Ctrl-C
// (which cancels ctx) ends it at once, with the terminal as it was.
func askTerminal(ctx context.Context, prompt string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	fmt.Fprint(os.Stderr, prompt)
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		done <- read{b, err}
	}()
	select {
	case r := <-done:
		fmt.Fprintln(os.Stderr)
		if r.err != nil {
			return nil, fmt.Errorf("read the password: %w", r.err)
		}
		return r.b, nil
	case <-ctx.Done():
		// The read goes on until the process exits; the echo is back.
		term.Restore(fd, state)
		fmt.Fprintln(os.Stderr)
		return nil, ctx.Err()
	}
}

// readPasswordFile reads a password file, of a bounded size.
func readPasswordFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > 4096 {
		return nil, fmt.Errorf("%s: more than 4 KiB, not a password", path)
	}
	return b, nil
}

// oneLine is a password given as a line: without the line breaks that
// end it. An empty one, or one of several lines (which nobody could type
// at a terminal), is refused.
func oneLine(b []byte, what string) ([]byte, error) {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty: an empty password is refused", what)
	}
	if bytes.ContainsAny(b, "\r\n") {
		return nil, fmt.Errorf("%s holds more than one line: a password is one line", what)
	}
	return b, nil
}

// passwordFlags are the global flags that give an encrypted repository's
// password.
var passwordFlags = []cli.Flag{
	&cli.StringFlag{Name: "password-file", Usage: "file that holds an encrypted repository's password (one line)", EnvVars: []string{"CHAINFS_PASSWORD_FILE"}},
	&cli.StringFlag{Name: "password-command", Usage: "shell command that prints an encrypted repository's password", EnvVars: []string{"CHAINFS_PASSWORD_COMMAND"}},
}

// flagGiven reports whether a flag was given on the command line, not
// only by the variable it stands for.
func flagGiven(c *cli.Context, name string) bool {
	if !c.IsSet(name) {
		return false
	}
	if f, ok := flagIn(c.App.Flags, name).(*cli.StringFlag); ok {
		for _, env := range f.EnvVars {
			if v, set := os.LookupEnv(env); set && v == c.String(name) {
				return false
			}
		}
	}
	return true
}
