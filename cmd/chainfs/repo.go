package main

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/s3"
	"github.com/urfave/cli/v2"
)

// repoDir is the directory of the command's repository: --repo, else
// $CHAINFS_REPO (urfave reads it), else the default for the user;
// absolute, so that messages name it wherever they are read. For a
// repository in a bucket (s3://BUCKET[/PREFIX]) it is this host's
// replica of it, under the cache directory (replicaDir), where its
// daemon's socket is too.
func repoDir(c *cli.Context) string {
	d := c.String("repo")
	if d == "" {
		return defaultRepoDir()
	}
	if s3.IsURL(d) {
		if loc, err := s3.ParseURL(d); err == nil {
			return replicaDir(cacheDir(c), os.Getenv("AWS_ENDPOINT_URL"), loc)
		}
		return d // openRepo reports it
	}
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}

// repoName is the repository as the command names it, for messages: its
// directory (repoDir), or s3://BUCKET[/PREFIX].
func repoName(c *cli.Context) string {
	if d := c.String("repo"); s3.IsURL(d) {
		return d
	}
	return repoDir(c)
}

// remoteRepo is the bucket location --repo names, or nil for a directory.
func remoteRepo(c *cli.Context) (*s3.Location, error) {
	d := c.String("repo")
	if err := misspeltURL(d); err != nil {
		return nil, usageError{fmt.Errorf("--repo %w", err)}
	}
	if !s3.IsURL(d) {
		return nil, nil
	}
	loc, err := s3.ParseURL(d)
	if err != nil {
		return nil, usageError{fmt.Errorf("--repo: %w", err)}
	}
	loc.Key = strings.Trim(loc.Key, "/")
	return &loc, nil
}

// remoteOf reaches a repository's bucket with the environment's settings
// and says where in it the repository is.
func remoteOf(loc *s3.Location) (*store.Remote, *s3.Bucket, error) {
	return remoteWith(loc, s3.ConfigFromEnv())
}

// remoteWith is remoteOf with the store's settings cfg.
func remoteWith(loc *s3.Location, cfg s3.Config) (*store.Remote, *s3.Bucket, error) {
	b, err := s3.Open(loc.Bucket, cfg)
	if err != nil {
		return nil, nil, usageError{err}
	}
	prefix := ""
	if loc.Key != "" {
		prefix = loc.Key + "/"
	}
	return &store.Remote{Objects: b, Prefix: prefix}, b, nil
}

// cacheDir is --cache, else $CHAINFS_CACHE, else the default for the
// user: where the replicas of repositories in buckets are kept.
func cacheDir(c *cli.Context) string {
	return absCacheDir(c.String("cache"))
}

// absCacheDir is the cache directory d names, absolute; "" is the
// default for the user.
func absCacheDir(d string) string {
	if d == "" {
		if os.Geteuid() == 0 {
			return "/var/cache/chainfs"
		}
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			return filepath.Join(x, "chainfs")
		}
		home, _ := os.UserHomeDir()
		return filepath.Join(home, ".cache", "chainfs")
	}
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}

// replicaDir is where this host keeps its replica of the repository at
// loc: a directory named by a hash of the endpoint, the bucket and the
// prefix, so that the CLI finds it (and its daemon's socket) without
// asking the bucket, and its name stays short (a socket's path is at
// most 107 bytes). The replica's marker names the repository it
// replicates, and Open refuses a replica of another one (a bucket made
// again).
func replicaDir(cache, endpointURL string, loc s3.Location) string {
	endpoint, _, err := s3.ParseEndpoint(endpointURL)
	if err != nil {
		endpoint = endpointURL // opening it says what is wrong
	}
	sum := sha256.Sum256([]byte(endpoint + "\x00" + loc.Bucket + "\x00" + strings.Trim(loc.Key, "/")))
	return filepath.Join(cache, "s3-"+hex.EncodeToString(sum[:8]))
}

func defaultRepoDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/chainfs"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "chainfs")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "chainfs")
}

// leadingGlobals reads the global flags before the command, before the
// command line is parsed: their values by name.
func leadingGlobals(args []string) map[string]string {
	flags := newApp().Flags
	vals := map[string]string{}
	for i := 1; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		name, val, inline := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !inline && takesValue(flags, args[i]) && i+1 < len(args) {
			i++
			val = args[i]
		}
		vals[name] = val
	}
	return vals
}

// repoDirFromArgs finds the repository a command line names, before the
// command line is parsed: --repo, else $CHAINFS_REPO, else the
// configuration file's, else the default.
func repoDirFromArgs(args []string) string {
	return cmp.Or(globalFromArgs(args, "repo"), defaultRepoDir())
}

// globalFromArgs is a global flag's value on a command line, before it
// is parsed: the flag, else its environment variable, else its key in the
// configuration file; "" when none gives one.
func globalFromArgs(args []string, name string) string {
	globals := leadingGlobals(args)
	if v := globals[name]; v != "" {
		return v
	}
	if f, ok := flagIn(newApp().Flags, name).(*cli.StringFlag); ok {
		for _, env := range f.EnvVars {
			if v := os.Getenv(env); v != "" {
				return v
			}
		}
	}
	for _, s := range settings {
		if s.Command != "" || s.Flag != name {
			continue
		}
		if f, err := loadConfig(configPathFromArgs(globals)); err == nil {
			if v, ok := f.Get(s.Key); ok {
				return v.Text
			}
		}
	}
	return ""
}

// configPathFromArgs is --config among the leading global flags, else
// $CHAINFS_CONFIG; "" for the default.
func configPathFromArgs(globals map[string]string) string {
	if p := globals["config"]; p != "" {
		return p
	}
	return os.Getenv("CHAINFS_CONFIG")
}

// commandRepoOptions are the options that open the repository a
// command names, its password included.
func commandRepoOptions(c *cli.Context) (store.Options, error) {
	target := c.String("repo")
	if err := misspeltURL(target); err != nil {
		return store.Options{}, usageError{fmt.Errorf("--repo %w", err)}
	}
	if !s3.IsURL(target) {
		target = repoDir(c)
	}
	opts, err := repoOptions(target, cacheDir(c))
	if err != nil {
		return opts, err
	}
	opts.Logger, opts.Purpose = logger(c), "chainfs "+strings.Join(os.Args[1:], " ")
	opts.Password, opts.Command = passwordsOf(c).forRepo(target).read, "chainfs "+commandName(c)
	return opts, nil
}

// openRepo opens the repository for a command.
func openRepo(c *cli.Context) (*store.Repo, error) {
	opts, err := commandRepoOptions(c)
	if err != nil {
		return nil, err
	}
	if opts.Remote != nil {
		n, err := parseSize(c.String("cache-size"))
		if err == nil && n != 0 && n < 4<<20 {
			err = errors.New("0 (none) or at least one chunk, 4 MiB")
		}
		if err != nil {
			return nil, usageError{fmt.Errorf("--cache-size: %w", err)}
		}
		opts.BlockCache = int64(n)
		if n == 0 {
			opts.BlockCache = -1 // none
		}
	}

	if c.Command.Name == "serve" {
		// A daemon started as the last one unmounts waits for it to go.
		opts.LockWait = 10 * time.Second
	}
	if v := c.String("metadata-cache"); v != "" { // serve's
		n, err := parseSize(v)
		if err == nil && n == 0 {
			err = errors.New("at least one byte")
		}
		if err != nil {
			return nil, usageError{fmt.Errorf("--metadata-cache: %w", err)}
		}
		opts.MetadataCache = int64(n)
	}
	return store.Open(c.Context, opts)
}

// repoOptions are the options that open the repository target names,
// a directory or s3://BUCKET[/PREFIX]; for a bucket, Dir is this host's
// replica of it under cache.
func repoOptions(target, cache string) (store.Options, error) {
	return repoOptionsWith(target, cache, s3.ConfigFromEnv())
}

// repoOptionsWith is repoOptions reaching a bucket with cfg.
func repoOptionsWith(target, cache string, cfg s3.Config) (store.Options, error) {
	if !s3.IsURL(target) {
		return store.Options{Dir: target}, nil
	}
	loc, err := s3.ParseURL(target)
	if err != nil {
		return store.Options{}, usageError{err}
	}
	loc.Key = strings.Trim(loc.Key, "/")
	remote, _, err := remoteWith(&loc, cfg)
	return store.Options{Dir: replicaDir(cache, cfg.Endpoint, loc), Remote: remote}, err
}

// withRepo runs fn on the repository, opened here and closed after.
func withRepo(c *cli.Context, fn func(*store.Repo) error) error {
	r, err := openRepo(c)
	if err != nil {
		return err
	}
	err = fn(r)
	if cerr := r.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close repository: %w", cerr)
	}
	return err
}

// sameDir reports whether two paths name the same directory.
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a repository",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "region", Value: store.DefaultRegion, Usage: "region label of the repository"},
			&cli.StringFlag{Name: "compression", Value: string(store.DefaultCompression), Usage: "what snapshots do with the blocks they store: off, fast (zstd's fastest level) or max"},
			&cli.BoolFlag{Name: "encrypt", Usage: "seal everything the repository keeps with a key that opens with a password (asked twice at a terminal, or --password-file, --password-command)"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0); err != nil {
				return err
			}
			comp, err := store.ParseCompression(c.String("compression"))
			if err != nil {
				return usageError{err}
			}
			if !c.Bool("encrypt") && (flagGiven(c, "password-file") || flagGiven(c, "password-command")) {
				return usagef("a password makes an encrypted repository only with --encrypt")
			}
			dir := repoDir(c)
			opts := store.Options{Dir: dir, Region: c.String("region"), Compression: comp, Encrypt: c.Bool("encrypt"), Password: passwordsOf(c).readNew}
			loc, err := remoteRepo(c)
			if err != nil {
				return err
			}
			if loc != nil {
				// The bucket is made if missing, and must keep what a
				// commit rests on.
				remote, b, err := remoteOf(loc)
				if err != nil {
					return err
				}
				if err := b.Create(c.Context, os.Getenv("AWS_REGION")); err != nil {
					return err
				}
				if err := b.Probe(c.Context, remote.Prefix); err != nil {
					return err
				}
				opts.Remote = remote
			}
			info, err := store.Init(c.Context, opts)
			if err != nil {
				return err
			}
			if loc != nil {
				dir = loc.String() + " (replica " + dir + ")"
			}
			return cliEnv(c).output(struct {
				Dir string `json:"dir"`
				store.Info
			}{dir, *info}, func() {
				fmt.Fprintf(c.App.Writer, "initialised repository %s (region %s)\n", dir, info.Region)
				if info.Encryption != "" {
					fmt.Fprintln(c.App.Writer, "it is encrypted: without a password of its keys (chainfs key list) nothing in it can be read, nor recovered")
				}
			})
		},
	}
}

// wantArgs checks the number of positional arguments.
func wantArgs(c *cli.Context, min, max int) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		if c.Command.ArgsUsage != "" && c.Command.ArgsUsage != " " {
			return usagef("usage: chainfs %s %s", commandName(c), c.Command.ArgsUsage)
		}
		return usagef("%s takes no arguments", commandName(c))
	}
	return nil
}
