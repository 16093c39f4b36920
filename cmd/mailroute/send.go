package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send"
	"github.com/mailroute/mailroute/send/list"
)

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "send a personalised message to every recipient of a CSV list, resuming where a previous run stopped",
		UsageText: "mailroute send --config FILE --list FILE.csv --message FILE [--html FILE] [--journal FILE] [--dry-run] [--json] [--trace]",
		Description: `The list is a CSV file with a header row; the message is a text template whose
header fields and body use the list's columns as {{.column}}.

Every recipient's state is kept in a journal (default: the list's name + ".journal").
Running the same command again resumes: recipients sent or failed are never sent again,
deferred ones are retried at once, and "unknown" ones (the connection was lost after the
message was handed over, RFC 1047) only with --retry-unknown. After a crash (kill -9,
power loss; not Ctrl-C) a few recipients that were never sent may also be listed as
unknown: so that no message waits for the disk, each session records its next
recipients as possibly handed over before sending them: as many as it sends while the
journal commits (2 or 3 to a distant relay, up to 16 to one nearby; 1 in direct mode).
No recipient is ever sent twice; --retry-unknown sends to all listed ones, and the few
that really were handed over may then get the message twice.

In direct mode, a recipient domain's MTA-STS policy (RFC 8461) is honoured: under
"enforce" its mail goes only to the MX hosts the policy names, over STARTTLS with a
verified certificate, or waits (deferred); it is never sent in plaintext.

Limits: rate = "30/m" (or several, ["30/m", "300/h", "500/d"]) means at most that many
messages in ANY window of that length, as relays count them (a window is kept 1 s longer
for counters that keep whole seconds). What was sent through a relay account (host, port,
user), or by this machine in direct mode, is kept in a ledger under
$XDG_STATE_HOME/mailroute/quota (default ~/.local/state/mailroute/quota) and counts in
every later run and every list, and in runs going on at the same time. While a limit holds
the run back the progress line says which and until when; when the next slot is more
than --max-wait away (default 1h) the run stops, everything not sent stays pending, and
it says when to run again. --dry-run says how long the limits make the mailing take at the
least, counting what the ledger holds, and when its last message may go.

A refusal that is not the recipient's fault (the sender's domain fails DMARC, the login
is refused, a blocklist, a quota) never fails the recipient: it stays pending, and after a
few such refusals the relay or recipient domain is left alone for the run; the report
names the cause and the fix. --retry-failed sends again to recipients that failed.

Ctrl-C or SIGTERM stops taking recipients and lets the messages in flight finish (up to
30s); a second one stops at once.

Examples:
   mailroute send --config mailroute.toml --list list.csv --message message.txt --dry-run
   mailroute send --config mailroute.toml --list list.csv --message message.txt
   mailroute send --config mailroute.toml --list list.csv --message message.txt --html message.html --json

   list.csv:              message.txt:
     email,name             From: Carol <carol@example.com>
     ann@example.com,Ann    Subject: Hello {{.name}}
     bob@example.org,Bob
                            Hi {{.name}}, ...

Exit status: 0 all sent, 1 some failed or are still deferred, unknown or pending (or the run stopped), 2 bad input (nothing sent).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "mailing configuration `FILE` (TOML; see 'mailroute config describe')"},
			&cli.StringFlag{Name: "list", Usage: "recipients `FILE.csv` with a header row"},
			&cli.StringFlag{Name: "message", Usage: "message template `FILE`: header fields, an empty line, the body"},
			&cli.StringFlag{Name: "html", Usage: "HTML body template `FILE` (makes the message multipart/alternative)"},
			&cli.StringFlag{Name: "journal", Usage: "journal `FILE` (default: the list's name + \".journal\")"},
			&cli.StringFlag{Name: "email-column", Value: "email", Usage: "the list's address column `NAME`"},
			&cli.BoolFlag{Name: "skip-bad-rows", Usage: "leave out bad rows of the list instead of refusing it"},
			&cli.BoolFlag{Name: "dry-run", Usage: "render every message, check the config and secrets, resolve MX hosts, say how long the limits make the mailing take at the least; send nothing"},
			&cli.BoolFlag{Name: "new-run", Usage: "start the journal over (needed after changing the list or the message)"},
			&cli.BoolFlag{Name: "retry-unknown", Usage: "send again to recipients whose outcome is unknown (they may get it twice)"},
			&cli.BoolFlag{Name: "retry-failed", Usage: "send again to recipients that failed (after mending the cause); never to those sent"},
			&cli.DurationFlag{Name: "max-wait", Value: send.DefaultMaxWait, Usage: "longest a rate limit or quota may hold the run back: when the next slot is further away, stop (everything not sent stays pending) and say when to run again; 0: wait as long as it takes"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "longest wait for one server reply (RFC 5321 §4.5.3.2: 5m)"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 30 * time.Second, Usage: "longest wait for a TCP connect and TLS handshake; an MX that times out is tried last for the next 5 minutes"},
			&cli.BoolFlag{Name: "json", Usage: "print the whole report as JSON on stdout"},
			traceFlag(),
			// Hidden: for comparing DATA with streaming (.ci/bench); a relay
			// that misbehaves with BDAT is met with DATA on its own.
			&cli.BoolFlag{Name: "no-streaming", Hidden: true, Usage: "one transaction in flight per session, with DATA, even where the relay offers CHUNKING"},
		},
		Action: runSend,
	}
}

func runSend(c *cli.Context) error {
	if c.NArg() > 0 {
		return usage(fmt.Errorf("unexpected argument %q", c.Args().First()), "every input is a flag: --config, --list, --message")
	}
	for _, f := range []struct{ name, hint string }{
		{"config", "write one with 'mailroute advise --write FILE' or 'mailroute wizard'"},
		{"list", "pass the recipients as --list FILE.csv (a header row, one recipient per row)"},
		{"message", "pass the message template as --message FILE"},
	} {
		if c.String(f.name) == "" {
			return usage(fmt.Errorf("--%s is required", f.name), f.hint)
		}
	}
	if c.Duration("timeout") <= 0 {
		return usage(fmt.Errorf("--timeout %s: must be positive", c.Duration("timeout")), "")
	}
	stderr := c.App.ErrWriter
	if os.Getenv("GOMEMLIMIT") == "" {
		// Memory must not grow with the list: see send.SoftMemoryLimit.
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(send.SoftMemoryLimit))
	}
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(send.GCPercent))
	}
	cfg, warnings, err := config.Load(c.String("config"))
	if err != nil {
		return configProblem(err)
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "mailroute: warning: %s: %s\n", c.String("config"), w)
	}
	eng, err := send.New(cfg, send.Options{
		ListPath:     c.String("list"),
		TextPath:     c.String("message"),
		HTMLPath:     c.String("html"),
		JournalPath:  c.String("journal"),
		List:         list.Options{EmailColumn: c.String("email-column"), SkipBadRows: c.Bool("skip-bad-rows")},
		DryRun:       c.Bool("dry-run"),
		NewRun:       c.Bool("new-run"),
		RetryUnknown: c.Bool("retry-unknown"),
		RetryFailed:  c.Bool("retry-failed"),
		NoStreaming:  c.Bool("no-streaming"),
		MaxWait:      maxWait(c.Duration("max-wait")),
		Notify:       func(msg string) { fmt.Fprintf(stderr, "mailroute: %s\n", msg) },
		Timeouts:     send.Timeouts{Connect: c.Duration("connect-timeout"), Command: c.Duration("timeout"), Data: 2 * c.Duration("timeout")},
		Trace:        traceFromFlag(c),
	})
	if err != nil {
		return sendProblem(err)
	}

	// First Ctrl-C (or SIGTERM, as service managers stop a process): finish
	// what is in flight; second: stop now.
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(stderr, "\nmailroute: stopping: finishing the messages in flight (Ctrl-C again to stop at once)")
				eng.Drain()
				continue
			}
			cancel()
			return
		}
	}()

	var stop func()
	if !c.Bool("dry-run") {
		// With --trace the progress bar would land in the middle of it.
		stop = showProgress(eng, stderr, isTerminal(stderr) && !c.Bool("trace"))
	}
	rep, runErr := eng.Run(ctx)
	if stop != nil {
		stop()
	}
	if rep == nil {
		return sendProblem(runErr)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return problem(err)
		}
	} else if err := writeReport(c.App.Writer, rep); err != nil {
		return problem(err)
	} else if rep.DryRun {
		// The receivers' side of the mailing, in one line (check.go).
		fmt.Fprintln(c.App.Writer, dryRunCheck(ctx, cfg, c.String("config"), c.String("message"), c.String("list"), c.String("email-column")))
	}
	if runErr != nil {
		return sendProblem(runErr)
	}
	if !rep.DryRun && rep.ExitCode() != 0 {
		return problem(nil)
	}
	return nil
}

// maxWait turns the flag's 0 ("as long as it takes") into the engine's
// negative; the engine's zero is its default.
func maxWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// sendProblem maps the engine's errors to exit codes: setup errors are
// usage errors (nothing was sent), others say the run hit a problem.
func sendProblem(err error) error {
	var se *send.Error
	if errors.As(err, &se) {
		var ce *config.Error
		if errors.As(se.Err, &ce) || se.Setup {
			if r := configProblem(se.Err); se.Hint == "" {
				return r
			}
			return usage(flatten(se.Err), se.Hint)
		}
		return &cmdError{code: exitProblem, err: se.Err, hint: se.Hint}
	}
	return problem(err)
}

// configProblem reports config and list errors, one "error:" line each,
// with the first hint found.
func configProblem(err error) error {
	hint := ""
	var ce *config.Error
	var le *list.Error
	switch {
	case errors.As(err, &ce):
		hint = ce.Hint
	case errors.As(err, &le):
		hint = le.Hint
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok && hint == "" {
		for _, e := range joined.Unwrap() {
			if errors.As(e, &ce) && ce.Hint != "" {
				hint = ce.Hint
				break
			}
		}
	}
	return usage(flatten(err), hint)
}

// flatten makes a multi-line error print as several "mailroute: error:"
// lines.
func flatten(err error) error {
	msg := strings.TrimRight(err.Error(), "\n")
	if !strings.Contains(msg, "\n") {
		return err
	}
	return errors.New(strings.ReplaceAll(msg, "\n", "\nmailroute: error: "))
}
