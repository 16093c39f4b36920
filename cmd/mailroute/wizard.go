package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/probe"
)

// defaultConfigFile is the wizard's answer to "save the config as".
const defaultConfigFile = "mailroute.toml"

func wizardCommand() *cli.Command {
	var flags []cli.Flag
	for _, f := range probeFlags() {
		if f.Names()[0] != "json" { // the wizard talks to a person
			flags = append(flags, f)
		}
	}
	flags = append(flags, adviseFlagsOnly()...)
	flags = append(flags,
		&cli.BoolFlag{Name: "no-measure", Usage: "do not measure the relay's limits (and do not ask)"},
		&cli.BoolFlag{Name: "no-login", Usage: "the relay takes mail without a login (do not ask for one)"},
		&cli.BoolFlag{Name: "test-message", Usage: "send a test message to yourself at the end (do not ask)"},
		&cli.BoolFlag{Name: "no-test-message", Usage: "send no test message (do not ask)"},
		&cli.StringFlag{Name: "test-to", Usage: "`ADDRESS` for the test message (default: your sender address)"},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "take the recommended answer to every question a flag does not answer; ask nothing"},
		&cli.BoolFlag{Name: "accessible", EnvVars: []string{"ACCESSIBLE"}, Usage: "ask line by line, for screen readers (always so when stdin is not a terminal)"},
	)
	return &cli.Command{
		Name:  "wizard",
		Usage: "find out how this machine can send mail, step by step: probe, explain, log in, measure, write the config, send a test",
		UsageText: "mailroute wizard [--from ADDRESS] [--relay HOST[:PORT]] [--user NAME] [--password-env VAR | --password-cmd CMD]\n" +
			"                 [--measure | --no-measure] [--list-size N] [--write FILE] [--force]\n" +
			"                 [--test-message | --no-test-message] [--test-to ADDRESS] [--yes] [probe flags]",
		Description: `The wizard asks for your address (and your mail provider's SMTP server, if
you know it; otherwise it looks for it), tests every way out of this machine,
explains each finding in plain words, checks your login, measures the relay's
limits (without sending anything), writes the config and sends you a test
message. Every question has a flag; --yes takes the recommended answer for the
rest, so it can run unattended.

Examples:
   mailroute wizard                                       # asks everything
   mailroute wizard --from me@example.com --write mailroute.toml
   mailroute wizard --yes --from me@example.com --relay smtp.example.com \
                    --password-env SMTP_PW --list-size 2000
   mailroute wizard --accessible                          # one plain question per line

The password is kept in memory only; the config names where it comes from.
Ctrl-C stops at any question and leaves no config behind (the file is
written at once, at the end, or not at all).

Exit status: 0 a config was written (and the test message, if sent, was
accepted), 1 nothing can send, the login was refused, the test message failed,
or the wizard was stopped, 2 bad input.`,
		Flags:  flags,
		Action: runWizard,
	}
}

// wizardArgs are the wizard's flags: every one answers a question.
type wizardArgs struct {
	*adviseArgs
	from, relay, testTo string
	yes, accessible     bool
	noLogin             bool
	measure, testMsg    *bool // nil: ask
}

func wizardFlags(c *cli.Context) (*wizardArgs, error) {
	if c.NArg() > 0 {
		return nil, usage(fmt.Errorf("unexpected argument %q", c.Args().First()), "every answer is a flag: --from, --relay, --user, …")
	}
	aa, err := parseAdviseArgs(c, true)
	if err != nil {
		return nil, err
	}
	a := &wizardArgs{adviseArgs: aa, from: c.String("from"), testTo: c.String("test-to"),
		yes: c.Bool("yes"), accessible: c.Bool("accessible"), noLogin: c.Bool("no-login")}
	if r := c.StringSlice("relay"); len(r) > 0 {
		a.relay = r[0]
	}
	both := func(yes, no string) (*bool, error) {
		switch {
		case c.Bool(yes) && c.Bool(no):
			return nil, usage(fmt.Errorf("--%s and --%s both given", yes, no), "keep one")
		case c.Bool(yes):
			return ptr(true), nil
		case c.Bool(no):
			return ptr(false), nil
		}
		return nil, nil
	}
	if a.measure, err = both("measure", "no-measure"); err != nil {
		return nil, err
	}
	if a.testMsg, err = both("test-message", "no-test-message"); err != nil {
		return nil, err
	}
	if a.noLogin && (a.user != "" || a.passEnv != "" || a.passCmd != "") {
		return nil, usage(errors.New("--no-login with --user or a password source"), "keep --no-login only if the relay takes mail without a login")
	}
	if a.testTo != "" {
		if _, err := mail.ParseAddress(a.testTo); err != nil {
			return nil, usage(fmt.Errorf("--test-to %q: not an email address", a.testTo), "e.g. --test-to me@example.com")
		}
	}
	if !a.yes {
		return a, nil
	}
	// --yes asks nothing: what has no recommended answer must be a flag,
	// found now rather than after a minute of probing.
	switch {
	case a.from == "":
		return nil, usage(errors.New("--yes needs --from ADDRESS: your sender address has no default"), "add --from you@example.com")
	case !a.noLogin && a.passEnv == "" && a.passCmd == "":
		return nil, usage(errors.New("--yes needs a password source: the wizard asks nothing with --yes"),
			"add --password-env VAR or --password-cmd CMD (and --user NAME if the login is not your address), or --no-login")
	}
	path := a.write
	if path == "" {
		path = defaultConfigFile
	}
	if _, err := os.Lstat(path); err == nil && !a.force {
		return nil, usage(fmt.Errorf("%s exists, and --yes does not replace files", path), "add --force to replace it, or --write another file")
	}
	return a, nil
}

func ptr[T any](v T) *T { return &v }

func runWizard(c *cli.Context) error {
	a, err := wizardFlags(c)
	if err != nil {
		return err
	}
	p, req, err := proberFromFlags(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	u := newUI(ctx, c.App.Reader, c.App.Writer, a.accessible)
	defer u.restore()
	w := &wizard{c: c, a: a, p: p, req: req, ui: u, out: c.App.Writer}
	err = w.run(ctx)
	if errors.Is(err, errStopped) || (err == nil && ctx.Err() != nil) {
		u.restore()
		fmt.Fprintln(w.out)
		if w.written != "" {
			return problem(fmt.Errorf("stopped: %s was written; the rest was skipped", w.written))
		}
		return problem(errors.New("stopped: nothing was written"))
	}
	return err
}

// wizard is one run: the answers so far and what was found.
type wizard struct {
	c   *cli.Context
	a   *wizardArgs
	p   *probe.Prober
	req probe.Request
	ui  *ui
	out io.Writer

	from, fromDomain string
	listSize         int
	rep              *probe.Report
	liveProbe        bool         // the probe's progress is one line, rewritten
	login            loginTry     // the login being asked for
	meter            *measureView // the measurement's progress
	cred             *probe.Credentials
	typedPassword    bool
	rec              *advisor.Recommendation
	written          string
	steps            int
	testErr          error // the test message's failure: exit 1 after the next steps
}

// loginTry is the login asked for at the relay: the name, whether the
// password was typed (not from --password-env or --password-cmd), and how
// many times it was tried.
type loginTry struct {
	user    string
	typed   bool
	attempt int
}

// run goes through the steps; each returns errStopped when the person
// stops, or a cmdError that ends the wizard with its exit code.
func (w *wizard) run(ctx context.Context) error {
	w.say("mailroute wizard: finds out how this machine can send mail, and sets it up.")
	w.say("Ctrl-C stops at any question; nothing is written until the end.")
	steps := []func(context.Context) error{w.askSender, w.advise, w.writeConfig, w.authCheck, w.testMessage}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return errStopped
		}
	}
	w.nextSteps()
	return w.testErr
}

// domains are the port-25 targets: --to, else large mailbox providers and
// the sender's own domain (where the test message goes).
func (w *wizard) domains() []string {
	if len(w.req.Domains) > 0 {
		return w.req.Domains
	}
	out := slices.Clone(probe.Builtin)
	if !slices.Contains(out, w.fromDomain) {
		out = append(out, w.fromDomain)
	}
	return out
}
