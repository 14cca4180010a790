package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chainfs/chainfs/cmd/chainfs/config"
	"github.com/chainfs/chainfs/store/s3"
	"github.com/urfave/cli/v2"
)

// setting ties a key of the configuration file to the flag it stands in
// for. Precedence: the flag, then its environment variable, then the
// file, then the flag's default.
type setting struct {
	config.Setting
	// Command is the command whose flag it is ("" for a global flag).
	Command string
	Flag    string
}

// settings are every key the configuration file may hold.
var settings = []setting{
	{config.Setting{Key: "repository", Type: config.String, Check: checkRepository}, "", "repo"},
	{config.Setting{Key: "cache", Type: config.String, Check: checkAbsolute}, "", "cache"},
	{config.Setting{Key: "log_level", Type: config.String, Check: checkLevel}, "", "log-level"},
	{config.Setting{Key: "catalog", Type: config.String, Check: checkAbsolute}, "", "catalog"},
	{config.Setting{Key: "cache_size", Type: config.String | config.Integer, Check: checkSize}, "", "cache-size"},
	{config.Setting{Key: "s3.endpoint", Type: config.String, Check: checkEndpoint}, "", "s3-endpoint"},
	{config.Setting{Key: "s3.region", Type: config.String}, "", "s3-region"},
	{config.Setting{Key: "s3.profile", Type: config.String}, "", "s3-profile"},
	{config.Setting{Key: "s3.timeout", Type: config.String, Check: checkDuration}, "", "s3-timeout"},
	{config.Setting{Key: "serve.mount", Type: config.String, Check: checkAbsolute}, "serve", "mount"},
	{config.Setting{Key: "serve.allow_other", Type: config.Bool}, "serve", "allow-other"},
	{config.Setting{Key: "serve.metrics", Type: config.String, Check: checkAddress}, "serve", "metrics"},
	{config.Setting{Key: "cache.trees", Type: config.Integer, Check: checkCount(1)}, "serve", "tree-cache"},
	{config.Setting{Key: "cache.read_ahead", Type: config.Integer, Check: checkCount(0)}, "serve", "read-ahead"},
	{config.Setting{Key: "cache.metadata", Type: config.String | config.Integer, Check: checkSize}, "serve", "metadata-cache"},
	{config.Setting{Key: "cache.memory_limit", Type: config.String | config.Integer, Check: checkSize}, "serve", "memory-limit"},
}

// session is what one run of a command line learns besides its flags:
// the configuration file in effect and where each setting came from, and
// an unknown command that --help met.
type session struct {
	loaded bool
	// config is the configuration file in effect; nil when there is none.
	config *config.File
	// configErr is why the configuration file did not load, for doctor,
	// which reports it among its findings.
	configErr error
	// sources say where each setting applied so far came from.
	sources map[string]string
	// unknown is an unknown command met by --help, which urfave/cli's
	// hook cannot return (see commandNotFound).
	unknown error
}

func configSchema() []config.Setting {
	out := make([]config.Setting, len(settings))
	for i, s := range settings {
		out[i] = s.Setting
	}
	return out
}

// defaultConfigPath is where the configuration file is looked for
// without --config: beside the system's repository for root, in the
// user's configuration directory otherwise.
func defaultConfigPath() string {
	if os.Geteuid() == 0 {
		return "/etc/chainfs/config.toml"
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "chainfs", "config.toml")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".config", "chainfs", "config.toml")
}

// loadConfig reads the configuration file that path names (--config,
// $CHAINFS_CONFIG) or the default one. A default file that does not
// exist is no configuration; a named one is an error.
func loadConfig(path string) (*config.File, error) {
	named := path != ""
	if !named {
		path = defaultConfigPath()
	}
	f, err := config.Load(path, configSchema())
	if !named && errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// configPath is the configuration file in effect, or where one would be
// read from.
func (s *session) configPath(c *cli.Context) string {
	if f := s.config; f != nil {
		return f.Path
	}
	if p := c.String("config"); p != "" {
		return p
	}
	return defaultConfigPath()
}

// applyConfig is the Before of the app and of each command that has
// settings: it fills each of the command's flags that the command line
// and the environment left unset from the configuration file, loading the
// file first, once.
func (ss *session) applyConfig(command string) cli.BeforeFunc {
	return func(c *cli.Context) error {
		if !ss.loaded {
			f, err := loadConfig(c.String("config"))
			if err != nil {
				switch c.Args().First() {
				case "doctor":
					// It reports the mistake among its findings.
					ss.configErr = err
				case "version", "completion", "man":
					// They need no settings, and make install runs them.
				default:
					return err
				}
			}
			ss.config, ss.loaded = f, true
		}
		if ss.sources == nil {
			ss.sources = map[string]string{}
		}
		file := ss.config
		for _, s := range settings {
			if s.Command != command {
				continue
			}
			source := settingSource(c, file, s)
			if source == "config" {
				v, _ := file.Get(s.Key)
				if err := c.Set(s.Flag, v.Text); err != nil {
					return fmt.Errorf("config %s:%d: %s: %w", file.Path, v.Line, s.Key, err)
				}
				source = fmt.Sprintf("config %s:%d", file.Path, v.Line)
			}
			ss.sources[s.Key] = source
		}
		if command == "" {
			if err := exportS3Settings(c); err != nil {
				return err
			}
		}
		return nil
	}
}

// s3Environment are the variables the object store's client reads
// (s3.ConfigFromEnv), by the global flag that stands for each.
var s3Environment = map[string]string{"s3-endpoint": "AWS_ENDPOINT_URL", "s3-region": "AWS_REGION",
	"s3-profile": "AWS_PROFILE", "s3-timeout": "CHAINFS_S3_TIMEOUT"}

// exportS3Settings puts the object store's settings, given by flag or
// configuration file, in the process's environment, where the client
// reads them and where a daemon this process starts finds them.
func exportS3Settings(c *cli.Context) error {
	for flag, check := range map[string]func(string) error{"s3-endpoint": checkEndpoint, "s3-timeout": checkDuration} {
		if v := c.String(flag); v != "" {
			if err := check(v); err != nil {
				return usageError{fmt.Errorf("--%s (or %s): %w", flag, s3Environment[flag], err)}
			}
		}
	}
	for flag, name := range s3Environment {
		if v := c.String(flag); v != "" {
			os.Setenv(name, v)
		}
	}
	return nil
}

// settingSource says where the value of s's flag comes from before the
// configuration file is applied: "flag", "env NAME", "config" or
// "default".
func settingSource(c *cli.Context, file *config.File, s setting) string {
	_, inFile := file.Get(s.Key)
	env, fromEnv := envOf(c, s.Flag)
	switch {
	case c.IsSet(s.Flag) && fromEnv:
		return "env " + env
	case c.IsSet(s.Flag):
		return "flag --" + s.Flag
	case inFile:
		return "config"
	}
	return "default"
}

// envOf names the environment variable the flag's value came from, if it
// did (urfave/cli tells set from unset, not how).
func envOf(c *cli.Context, name string) (string, bool) {
	f, ok := lookupFlag(c, name).(*cli.StringFlag)
	if !ok {
		return "", false
	}
	for _, env := range f.EnvVars {
		if v, ok := os.LookupEnv(env); ok && v != "" && v == c.String(name) {
			return env, true
		}
	}
	return "", false
}

// lookupFlag finds the definition of flag name among the running
// command's flags, then the global ones.
func lookupFlag(c *cli.Context, name string) cli.Flag {
	if c.Command != nil {
		if f := flagIn(c.Command.Flags, name); f != nil {
			return f
		}
	}
	return flagIn(c.App.Flags, name)
}

func flagIn(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// flagDefault is the text of a flag's default value.
func flagDefault(f cli.Flag) string {
	switch f := f.(type) {
	case *cli.StringFlag:
		return f.Value
	case *cli.IntFlag:
		return strconv.Itoa(f.Value)
	case *cli.BoolFlag:
		return strconv.FormatBool(f.Value)
	}
	return ""
}

// effective is one setting as config show reports it.
type effective struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Source string `json:"source"` // flag --NAME, env NAME, config FILE:LINE, default
}

func configCommand(ss *session) *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "the configuration file and the settings in effect",
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "print each setting's value in effect and where it comes from",
			Description: "Precedence: a flag, then its environment variable, then the configuration file,\n" +
				"then the default. Global flags given with config show count: chainfs --repo DIR config show.",
			ArgsUsage: " ",
			Flags:     []cli.Flag{jsonFlag},
			Action: func(c *cli.Context) error {
				if err := wantArgs(c, 0, 0); err != nil {
					return err
				}
				out := struct {
					File     string      `json:"file"`
					Loaded   bool        `json:"loaded"`
					Settings []effective `json:"settings"`
				}{File: ss.configPath(c), Loaded: ss.config != nil}
				for _, s := range settings {
					e := effective{Key: s.Key, Source: ss.sources[s.Key]}
					switch {
					case s.Command == "":
						e.Value = c.String(s.Flag)
						if s.Flag == "repo" {
							e.Value = repoName(c)
						}
					default:
						// Another command's flag: only the file and the
						// default apply here.
						if v, ok := ss.config.Get(s.Key); ok {
							e.Value, e.Source = v.Text, fmt.Sprintf("config %s:%d", ss.config.Path, v.Line)
						} else {
							e.Value, e.Source = flagDefault(flagIn(findCommand(c.App.Commands, s.Command).Flags, s.Flag)), "default"
						}
					}
					out.Settings = append(out.Settings, e)
				}
				return cliEnv(c).output(out, func() {
					state := "read"
					if !out.Loaded {
						state = "none there: defaults apply"
					}
					fmt.Fprintf(c.App.Writer, "configuration file %s (%s)\n", out.File, state)
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "KEY\tVALUE\tFROM")
					for _, e := range out.Settings {
						v := e.Value
						if v == "" {
							v = "-"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Key, v, e.Source)
					}
					tw.Flush()
				})
			},
		}},
	}
}

// checkRepository takes an absolute directory or s3://BUCKET[/PREFIX].
func checkRepository(s string) error {
	if s3.IsURL(s) {
		_, err := s3.ParseURL(s)
		return err
	}
	if err := misspeltURL(s); err != nil {
		return err
	}
	return checkAbsolute(s)
}

// misspeltURL refuses what looks like an s3:// location mistyped (S3://,
// s3:/), which would be taken for a relative directory.
func misspeltURL(s string) error {
	if rest, ok := strings.CutPrefix(strings.ToLower(s), "s3:"); ok && !strings.HasPrefix(s, s3.Scheme) {
		return fmt.Errorf("%q: a repository in a bucket is written %s%s", s, s3.Scheme, strings.TrimLeft(rest, "/"))
	}
	return nil
}

func checkAbsolute(s string) error {
	if !filepath.IsAbs(s) {
		return fmt.Errorf("want an absolute path, not %q", s)
	}
	return nil
}

func checkEndpoint(s string) error {
	_, _, err := s3.ParseEndpoint(s)
	return err
}

func checkDuration(s string) error {
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return fmt.Errorf("want a duration (30s, 2m), not %q", s)
	}
	return nil
}

func checkLevel(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("want debug, info, warn or error, not %q", s)
	}
	return nil
}

func checkAddress(s string) error {
	if s == "" {
		return nil // no metrics
	}
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("want HOST:PORT (localhost:9721, :9721, [::1]:9721), not %q", s)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("host %q: not a host name or address", host)
	}
	return nil
}

func checkCount(min int) func(string) error {
	return func(s string) error {
		if n, err := strconv.Atoi(s); err != nil || n < min {
			return fmt.Errorf("want a whole number of at least %d, not %s", min, s)
		}
		return nil
	}
}

func checkSize(s string) error {
	_, err := parseSize(s)
	return err
}
