package main

import (
	"context"
	"fmt"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

func keyCommand() *cli.Command {
	newPasswordFlag := &cli.StringFlag{Name: "new-password-file", Usage: "file that holds the new password (default: asked twice at the terminal)"}
	return &cli.Command{
		Name:  "key",
		Usage: "list, add, remove the keys of an encrypted repository, or change a password",
		Description: "Each key is the repository's master key sealed with a password; any key opens the\n" +
			"repository. The password of the command (--password-file, --password-command, the terminal)\n" +
			"opens one key; keys change while a daemon serves the repository.",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list the keys: id, created when, by whom on which host, the KDF's parameters",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if err := wantArgs(c, 0, 0); err != nil {
						return err
					}
					keys, err := openKeyFiles(c)
					if err != nil {
						return err
					}
					list, err := keys.List(c.Context)
					if err != nil {
						return err
					}
					return cliEnv(c).output(list, func() {
						t := newTable(c.App.Writer, "", "ID", "CREATED", "USER", "HOST", "KDF")
						for _, k := range list {
							mark := ""
							if k.Current {
								mark = "*"
							}
							if k.Damaged != "" {
								t.row("!", k.ID, "-", "-", "-", "damaged: "+k.Damaged)
								continue
							}
							t.row(mark, k.ID, k.Created.Local().Format(time.DateTime), k.User, k.Host, k.KDF)
						}
						t.flush()
					})
				},
			},
			{
				Name:      "add",
				Usage:     "add a key with a new password",
				ArgsUsage: " ",
				Flags:     []cli.Flag{newPasswordFlag, jsonFlag},
				Action:    newKeyAction((*store.KeyFiles).Add, "added key %s"),
			},
			{
				Name:      "remove",
				Usage:     "remove a key: its password no longer opens the repository",
				ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					if err := wantArgs(c, 1, 1); err != nil {
						return err
					}
					keys, err := openKeyFiles(c)
					if err != nil {
						return err
					}
					if err := keys.Remove(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed key %s\n", c.Args().First())
					return nil
				},
			},
			{
				Name:      "passwd",
				Usage:     "change the password of the key the password opens (a new key replaces it)",
				ArgsUsage: " ",
				Flags:     []cli.Flag{newPasswordFlag, jsonFlag},
				Action:    newKeyAction((*store.KeyFiles).ChangePassword, "password changed: key %s replaces the old one"),
			},
		},
	}
}

// newKeyAction is the action of a command that makes a key with a new
// password (add, passwd): make makes it, said reports it, %s its id.
func newKeyAction(make func(*store.KeyFiles, context.Context, []byte) (store.KeyInfo, error), said string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := wantArgs(c, 0, 0); err != nil {
			return err
		}
		keys, err := openKeyFiles(c)
		if err != nil {
			return err
		}
		pw, err := newPasswords(c).readNew(c.Context)
		if err != nil {
			return err
		}
		k, err := make(keys, c.Context, pw)
		if err != nil {
			return err
		}
		return cliEnv(c).output(k, func() { fmt.Fprintf(c.App.Writer, said+"\n", k.ID) })
	}
}

// openKeyFiles opens the keys of the repository a command names with its
// password.
func openKeyFiles(c *cli.Context) (*store.KeyFiles, error) {
	opts, err := commandRepoOptions(c)
	if err != nil {
		return nil, err
	}
	return store.OpenKeyFiles(c.Context, opts)
}
