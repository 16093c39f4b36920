package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// The manual page and the shell completion scripts, made from the app
// itself, so they never disagree with --help.

func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Usage:     "print the manual page (roff) on stdout",
		UsageText: "mailroute man",
		Description: `Examples:
   mailroute man | man -l -                      # read it now
   mailroute man > /usr/local/share/man/man1/mailroute.1`,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usage(fmt.Errorf("unexpected argument %q", c.Args().First()), "mailroute man takes no arguments")
			}
			// Section 1: mailroute is a user command (ToMan's default is 8).
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return problem(fmt.Errorf("making the manual page: %w", err))
			}
			_, err = io.WriteString(c.App.Writer, page)
			return err
		},
	}
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		UsageText: "mailroute completion bash|zsh|fish",
		Description: `Completes commands and flags, asking mailroute itself
(--generate-bash-completion), so the completion follows the installed version.

Examples:
   source <(mailroute completion bash)           # this shell; add it to ~/.bashrc to keep it
   mailroute completion zsh > "${fpath[1]}/_mailroute"
   mailroute completion fish > ~/.config/fish/completions/mailroute.fish`,
		Action: func(c *cli.Context) error {
			shell := c.Args().First()
			if c.NArg() != 1 {
				return usage(fmt.Errorf("completion needs one shell, got %d arguments", c.NArg()), "mailroute completion bash, zsh or fish")
			}
			var script string
			switch shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return problem(fmt.Errorf("making the fish completion: %w", err))
				}
				script = s
			default:
				return usage(fmt.Errorf("unknown shell %q", shell), "mailroute completion bash, zsh or fish")
			}
			_, err := io.WriteString(c.App.Writer, strings.ReplaceAll(script, "PROG", c.App.Name))
			return err
		},
	}
}

// bashCompletion asks the program for the words that may follow what is
// typed (urfave/cli's --generate-bash-completion). Unlike urfave/cli's
// sample script it needs no bash-completion package: COMP_WORDS is enough.
const bashCompletion = `# bash completion for PROG: source <(PROG completion bash)
_PROG_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  return 0
}
complete -o bashdefault -o default -F _PROG_complete PROG
`

// zshCompletion works both ways zsh loads completions: sourced (it calls
// compdef) and autoloaded from a file _PROG in $fpath (it runs itself).
const zshCompletion = `#compdef PROG
# zsh completion for PROG: source <(PROG completion zsh), or save it as _PROG in $fpath
_PROG() {
  local -a opts
  local cur=${words[CURRENT]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[1,CURRENT-1]} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[1,CURRENT-1]} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n "${opts[1]}" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if [[ "${funcstack[1]}" == "_PROG" ]]; then
  _PROG "$@"
else
  compdef _PROG PROG
fi
`
