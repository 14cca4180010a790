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

// passwordSource says where an encrypted repository's password comes
// from: a command's output, a file, a systemd credential, or the
// terminal, in that order.
type passwordSource struct {
	file, command string
	// imageFile: the password of a sealed image file, which neither a
	// repository's credential nor its variables give.
	imageFile bool
	// none is the error when nothing gives a password (errNoPassword).
	none error
}

// credentialName is the systemd credential (LoadCredential=,
// SetCredentialEncrypted=) a unit gives a daemon the password as.
const credentialName = "chainfs-password"

// passwordCommandTimeout bounds a password command: one that waits for
// input nobody gives would hang the daemon's start.
const passwordCommandTimeout = time.Minute

func passwordsOf(c *cli.Context) passwordSource {
	return passwordSource{file: c.String("password-file"), command: c.String("password-command")}
}

// passwordsFromEnv is passwordsOf for what runs without a parsed command
// line (mount -t fuse.chainfs): the variables the flags stand for.
func passwordsFromEnv() passwordSource {
	return passwordSource{file: os.Getenv("CHAINFS_PASSWORD_FILE"), command: os.Getenv("CHAINFS_PASSWORD_COMMAND")}
}

// errNoPassword: an encrypted repository, and nowhere to read its
// password from.
var errNoPassword = errors.New("an encrypted repository needs a password: give it with --password-file FILE, --password-command CMD " +
	"(or CHAINFS_PASSWORD_FILE, CHAINFS_PASSWORD_COMMAND), a systemd credential " + credentialName + ", or at a terminal")

// read reads the password of an existing repository.
func (p passwordSource) read() ([]byte, error) { return p.get("password: ", false) }

// readNew reads the password of a new key: asked twice at a terminal.
func (p passwordSource) readNew() ([]byte, error) { return p.get("new password: ", true) }

func (p passwordSource) get(prompt string, confirm bool) ([]byte, error) {
	switch {
	case p.command != "":
		ctx, cancel := context.WithTimeout(context.Background(), passwordCommandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", p.command)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("--password-command: %v", err)
		}
		return oneLine(out, "--password-command's output")
	case p.file != "":
		b, err := readPasswordFile(p.file)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		return oneLine(b, p.file)
	}
	// A new password is never the credential, which is there to open.
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" && !p.imageFile && !confirm {
		path := filepath.Join(dir, credentialName)
		if b, err := readPasswordFile(path); err == nil {
			return oneLine(b, "credential "+credentialName)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("credential %s: %w", credentialName, err)
		}
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		if p.none != nil {
			return nil, p.none
		}
		return nil, errNoPassword
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(os.Stderr, prompt)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		return b, err
	}
	pw, err := ask(prompt)
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	if confirm {
		again, err := ask("again: ")
		if err != nil {
			return nil, fmt.Errorf("read the password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passwords differ")
		}
	}
	return oneLine(pw, "the password")
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

// oneLine is a password as given, without the line break that ends it;
// an empty one is refused.
func oneLine(b []byte, what string) ([]byte, error) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty: an empty password is refused", what)
	}
	return b, nil
}

// passwordFlags are the global flags that give an encrypted repository's
// password.
var passwordFlags = []cli.Flag{
	&cli.StringFlag{Name: "password-file", Usage: "file that holds an encrypted repository's password (a line break at its end is not part of it)", EnvVars: []string{"CHAINFS_PASSWORD_FILE"}},
	&cli.StringFlag{Name: "password-command", Usage: "shell command that prints an encrypted repository's password", EnvVars: []string{"CHAINFS_PASSWORD_COMMAND"}},
}
