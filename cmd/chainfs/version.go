package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/urfave/cli/v2"
)

// Set by the Makefile: go build -ldflags "-X main.version=... -X main.commit=...".
var (
	version = ""
	commit  = ""
)

// buildInfo is what chainfs version reports.
type buildInfo struct {
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	Go          string `json:"go"`
	Format      int    `json:"repository_format"`
	Schema      int    `json:"metadata_schema"`
	ImageFormat int    `json:"image_format"`
	Encryption  string `json:"encryption"`
}

// currentBuild fills in what the linker was not told from what the Go
// toolchain recorded in the binary (the module version, the VCS revision).
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: runtime.Version(),
		Format: store.FormatVersion, Schema: store.SchemaVersion, ImageFormat: imagefile.Version, Encryption: store.EncryptionScheme}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && commit == "" && b.Commit != "" {
			b.Commit += "-dirty"
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// versionString is the one-line version, as metrics and logs give it.
func versionString() string {
	b := currentBuild()
	return b.Version + " (" + shortCommit(b.Commit) + ")"
}

func shortCommit(c string) string {
	if len(c) > 12 && c != "unknown" {
		return c[:12]
	}
	return c
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version, commit and the formats this build reads and writes",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0); err != nil {
				return err
			}
			b := currentBuild()
			return cliEnv(c).output(b, func() {
				fmt.Fprintf(c.App.Writer, "chainfs %s\n", b.Version)
				fmt.Fprintf(c.App.Writer, "  commit            %s\n", b.Commit)
				fmt.Fprintf(c.App.Writer, "  go                %s\n", b.Go)
				fmt.Fprintf(c.App.Writer, "  repository format %d (metadata schema %d)\n", b.Format, b.Schema)
				fmt.Fprintf(c.App.Writer, "  image format      %d\n", b.ImageFormat)
				fmt.Fprintf(c.App.Writer, "  encryption        %s (init --encrypt)\n", b.Encryption)
			})
		},
	}
}
