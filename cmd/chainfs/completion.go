package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is urfave/cli's request for the words that may come
// next; the shell scripts below end the command line typed so far with it.
const completionFlag = "--generate-bash-completion"

// The bash and zsh scripts hold no list of commands or flags: they ask
// chainfs, which answers from its command definitions (urfave/cli's
// completion protocol), so they never fall behind the binary.
const bashCompletion = `# bash completion for chainfs: the candidates come from chainfs itself.
_chainfs_complete() {
	local cur="${COMP_WORDS[COMP_CWORD]}" IFS=$'\n'
	local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
	# urfave/cli completes nothing after a bare "--"; "-" asks for the same flags.
	[[ $cur == -* ]] && words+=("${cur/#--/-}")
	COMPREPLY=($(compgen -W "$("${words[@]}" ` + completionFlag + ` 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _chainfs_complete chainfs
`

const zshCompletion = `#compdef chainfs
# zsh completion for chainfs: the candidates come from chainfs itself.
_chainfs() {
	local cur=${words[CURRENT]}
	local -a args opts
	args=("${(@)words[1,CURRENT-1]}")
	# urfave/cli completes nothing after a bare "--"; "-" asks for the same flags.
	[[ $cur == -* ]] && args+=("${cur/#--/-}")
	opts=("${(@f)$("${args[@]}" ` + completionFlag + ` 2>/dev/null)}")
	if [[ -n ${opts[1]} ]]; then
		_describe 'chainfs' opts
	else
		_files
	fi
}
if [[ ${funcstack[1]} == _chainfs ]]; then
	_chainfs "$@"
else
	compdef _chainfs chainfs
fi
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash:  source <(chainfs completion bash)   (make install puts it in bash-completion's directory)\n" +
			"zsh:   source <(chainfs completion zsh)    (or save it as _chainfs in a directory of $fpath)\n" +
			"fish:  chainfs completion fish | source    (or save it in ~/.config/fish/completions/chainfs.fish)",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 1, 1); err != nil {
				return err
			}
			var script string
			switch shell := c.Args().First(); shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				// fish's completions are static: generated from the command
				// definitions by urfave/cli.
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				script = s
			default:
				return usagef("completion %q: want bash, zsh or fish", shell)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Usage:     "print the manual page chainfs(1), made from the command definitions (man -l <(chainfs man))",
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0); err != nil {
				return err
			}
			manSynopses(c.App.Commands, c.App.Name)
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, strings.TrimLeft(page, "\n"))
			return err
		},
	}
}

// manSynopses gives each command that has none a usage text for the
// manual page: its command line and its description, which the page
// would otherwise leave out. It changes the definitions: for man only.
func manSynopses(cmds []*cli.Command, prefix string) {
	for _, cmd := range cmds {
		path := prefix + " " + cmd.Name
		if cmd.UsageText == "" && len(cmd.Subcommands) == 0 {
			text := path
			if args := strings.TrimSpace(cmd.ArgsUsage); args != "" {
				text += " " + args
			}
			if cmd.Description != "" {
				text += "\n\n" + cmd.Description
			}
			cmd.UsageText = text
		}
		manSynopses(cmd.Subcommands, path)
	}
}
