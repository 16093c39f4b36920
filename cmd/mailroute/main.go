// Command mailroute finds out why a machine can't send email, configures
// the way that works, and sends. The packages do the work; this command
// wires flags, prints, and exits with the codes of README "Design: CLI contract".
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// Exit codes (README "Design: CLI contract").
const (
	exitOK      = 0 // success
	exitProblem = 1 // the job ran and found a problem
	exitUsage   = 2 // usage or config error; nothing was sent
)

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

// run is main without os.Exit, so testscript can run the command in-process.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
	return report(stderr, err)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "mailroute",
		Usage: "find out why mail can't leave this machine, configure the way that works, and send",
		Description: "mailroute probes outbound SMTP (port 25 to the recipients' MX hosts, submission ports of a relay),\n" +
			"says exactly what happens on each, recommends direct delivery or a relay, and sends.",
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// Completion scripts (mailroute completion) ask the program itself
		// for the words that may follow: --generate-bash-completion.
		EnableBashCompletion: true,
		Commands:             commands(),
		// Our own --version (urfave/cli's needs App.Version set before the
		// build info is read, and its printer is a package variable).
		HideVersion: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "version", Usage: "print the version, VCS revision and Go version of this build"},
		},
		Action: runRoot,
		// urfave/cli prints usage errors itself and returns them; we add the
		// exit code and keep its output on stderr. Here the failing command
		// is the program itself: its name once.
		OnUsageError: func(c *cli.Context, err error, isSub bool) error {
			return flagUsage(err, "mailroute", c.App.Flags)
		},
		ExitErrHandler: func(*cli.Context, error) {}, // report() handles exits
	}
}

// runRoot runs for "mailroute" with no command: --version, the help, or a
// word that is not a command (with the nearest one suggested).
func runRoot(c *cli.Context) error {
	if c.Bool("version") {
		_, err := fmt.Fprintln(c.App.Writer, versionLine(debug.ReadBuildInfo()))
		return err
	}
	switch {
	case c.NArg() == 0:
		return cli.ShowAppHelp(c)
	case c.Args().First() != "help":
		return unknownCommand("mailroute", c.Args().First(), c.App.Commands)
	case c.NArg() == 1:
		// "mailroute help": what a newcomer types first.
		return cli.ShowAppHelp(c)
	}
	name := c.Args().Get(1)
	if c.App.Command(name) == nil {
		return unknownCommand("mailroute", name, c.App.Commands)
	}
	return cli.ShowCommandHelp(c, name)
}

// commands lists the subcommands, each in its own file, in the order a
// newcomer needs them: the wizard, then the pipeline (probe, advise, send,
// check), then config and the rest.
func commands() []*cli.Command {
	cmds := []*cli.Command{
		wizardCommand(),
		probeCommand(),
		adviseCommand(),
		sendCommand(),
		checkCommand(),
		configCommand(),
		manCommand(),
		completionCommand(),
		versionCommand(),
	}
	for _, c := range cmds {
		if c.OnUsageError == nil {
			// Without this urfave/cli prints the whole help page to stdout.
			c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
				return flagUsage(err, "mailroute "+c.Name, c.Flags)
			}
		}
	}
	return cmds
}

// cmdError carries an exit code and a hint to report().
type cmdError struct {
	code int
	err  error
	hint string
}

func (e *cmdError) Error() string { return e.err.Error() }
func (e *cmdError) Unwrap() error { return e.err }

// usage is a usage or configuration error: exit 2, nothing was done.
func usage(err error, hint string) error { return &cmdError{code: exitUsage, err: err, hint: hint} }

// problem means the job ran and found a problem: exit 1. A nil err with a
// message-less problem exits 1 silently (the report said it all).
func problem(err error) error { return &cmdError{code: exitProblem, err: err} }

// report prints err as "mailroute: error: …" and "mailroute: hint: …" and
// returns the exit code.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ce *cmdError
	code, hint := exitProblem, ""
	if errors.As(err, &ce) {
		code, hint = ce.code, ce.hint
		if ce.err == nil {
			return code
		}
	} else {
		// Anything urfave/cli returns on its own (unknown command, missing
		// flag value) is a usage error.
		code = exitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "mailroute: error: %s\n", msg)
	}
	if hint != "" {
		fmt.Fprintf(stderr, "mailroute: hint: %s\n", hint)
	}
	return code
}
