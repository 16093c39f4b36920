package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send"
	"github.com/mailroute/mailroute/send/journal"
)

// The wizard's last steps: the recommendation, the config file, the test
// message and what to run next.

// recommend shows the recommendation with its reasons.
func (w *wizard) recommend() error {
	w.step("Putting it together")
	printAdvice(w.out, w.rec, w.rep, "", true)
	if !w.rec.OK {
		return &cmdError{code: exitProblem, err: errors.New("no way to send was found, so no config was written"), hint: "see \"What to do\" above"}
	}
	return nil
}

// writeConfig writes the recommended config: a temporary file renamed into
// place (writeConfigFile), so an interrupt leaves either no file or a whole
// one.
func (w *wizard) writeConfig(ctx context.Context) error {
	w.step("The config file")
	path, force, err := w.configPath()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errStopped
	}
	header := w.rec.Header(time.Now())
	header[0] = strings.Replace(header[0], "mailroute advise", "mailroute wizard", 1)
	if err := writeConfigFile(path, w.rec.Config, header, force); err != nil {
		return err
	}
	w.written = path
	w.say("Wrote %s (readable only by you). Check it any time with:", path)
	fmt.Fprintf(w.out, "  mailroute config check %s\n", path)
	if w.passwordEnv() == advisor.DefaultPasswordEnv && w.typedPassword {
		env := advisor.DefaultPasswordEnv
		w.say("The password is not in the file: before sending, put it in $%s (or set password_cmd in the file to a command that prints it):", env)
		fmt.Fprintf(w.out, "  read -rs %s && export %s\n", env, env)
	}
	return nil
}

// passwordEnv is the variable the written config reads the password from.
func (w *wizard) passwordEnv() string {
	if c := w.rec.Config; c != nil && len(c.Relay) > 0 {
		return c.Relay[0].PasswordEnv
	}
	return ""
}

// testRetryFor is how long the test message is tried again when the
// relay defers it after a measurement used up its allowance.
const testRetryFor = 2 * time.Minute

// testMessage offers a message to the user's own address, sent the way the
// mailing will be, and reports its fate in the server's words.
func (w *wizard) testMessage(ctx context.Context) error {
	to := w.testTo()
	consent := w.a.testMsg
	switch {
	case consent != nil:
		w.given("Send a test message to "+to+" now", yesNo(*consent), map[bool]string{true: "--test-message", false: "--no-test-message"}[*consent])
	case w.a.yes:
		consent = ptr(true)
		w.given("Send a test message to "+to+" now", "yes", "--yes")
	}
	if consent == nil {
		ok, err := w.ui.confirm("Send a test message to "+to+" now?",
			"One short message, sent the way the mailing will be: it shows that the whole way works.", true)
		if err != nil {
			return err
		}
		consent = &ok
	}
	if !*consent {
		w.say("No test message sent.")
		return nil
	}
	w.step("Test message")
	cfg := *w.rec.Config
	via := "directly to the recipient's mail server"
	if len(cfg.Relay) > 0 {
		r := cfg.Relay[0]
		via = fmt.Sprintf("through %s:%d", r.Host, r.Port)
		if w.cred != nil {
			// The password is in memory: hand it over as such, in a copy
			// that is never written.
			r.Password, r.PasswordEnv, r.PasswordCmd = w.cred.Secret, "", ""
		}
		cfg.Relay = []config.Relay{r}
	}
	w.say("Sending a test message from %s to %s, %s…", w.from, to, via)
	host, _ := os.Hostname()
	text := fmt.Sprintf("This is a test message from mailroute wizard on %s, sent %s %s.\n\n"+
		"If you can read it, mail from that machine reaches this mailbox. You can delete it.\n",
		host, via, time.Now().Format("2006-01-02 15:04 MST"))
	single := send.Single{From: w.from, To: to, Subject: "mailroute test message", Text: text,
		Resolver: w.p.Resolver, Timeouts: send.Timeouts{Connect: w.p.Timeout, Command: 30 * time.Second, Data: time.Minute},
		Trace:  w.p.Trace, // --trace: the test message too
		Notify: func(msg string) { w.say("%s", msg) }}
	// The measurement may have used up the relay's allowance, and when it
	// found no window nobody knows when the relay takes mail again: a 4xx
	// then says so, not that the way does not work. Try again for a while,
	// saying so, rather than end on a deferral the wizard caused itself.
	m := w.rep.Measure
	usedUp := m != nil && m.Error == "" && m.Transactions > 0 && !m.TransactionsCapped
	deadline := time.Now().Add(testRetryFor)
	var res *send.SingleResult
	var err error
	for pause := 2 * time.Second; ; pause = min(2*pause, 15*time.Second) {
		res, err = send.SendSingle(ctx, &cfg, single)
		if ctx.Err() != nil {
			return errStopped
		}
		if err != nil || res.State != journal.StateDeferred || !usedUp || time.Now().Add(pause).After(deadline) {
			break
		}
		w.say("The relay answered %q: the measurement used up its allowance. Trying again in %s…", res.Reply, pause)
		select {
		case <-ctx.Done():
			return errStopped
		case <-time.After(pause):
		}
	}
	f := advisor.Finding{Topic: "test"}
	switch {
	case err != nil:
		var se *send.Error
		hint := ""
		if errors.As(err, &se) {
			hint = se.Hint
		}
		f.Severity, f.Title, f.Meaning, f.Action = advisor.SevProblem, "The test message could not be sent", err.Error()+".", hint
		w.testErr = &cmdError{code: exitProblem, err: fmt.Errorf("test message: %w", err), hint: hint}
	case res.State == journal.StateSent && len(cfg.Relay) > 0:
		f.Severity, f.Title = advisor.SevOK, "Accepted by the relay "+strings.TrimPrefix(via, "through ")
		f.Meaning = fmt.Sprintf("It answered %q. That is as far as mailroute can see: the relay now delivers it. Look for it in %s's inbox (and its spam folder) in a minute or two.", res.Reply, to)
	case res.State == journal.StateSent:
		f.Severity, f.Title = advisor.SevOK, "Delivered to "+to+"'s mail server"
		f.Meaning = fmt.Sprintf("It answered %q: the recipient's own server has the message now. Look for it in the inbox (and the spam folder).", res.Reply)
	case res.State == journal.StateDeferred:
		f.Severity, f.Title = advisor.SevWarning, "The server asked to try later"
		f.Meaning = fmt.Sprintf("It answered %q: a temporary refusal. A mailing retries such messages by itself, but the same answer for every message would mean waiting.", res.Reply)
		f.Action = "Try again in a few minutes with: mailroute send (see below) on a one-line list, or run the wizard again."
		w.testErr = &cmdError{code: exitProblem, err: fmt.Errorf("the test message was deferred: %s", res.Reply)}
	case res.State == journal.StateFailed:
		f.Severity, f.Title = advisor.SevProblem, "The test message was refused"
		f.Meaning = fmt.Sprintf("The server answered %q: a permanent refusal. The mailing would meet the same answer.", res.Reply)
		f.Action = "The server's words say why; often the sender address is not allowed for this login, or the recipient does not exist."
		w.testErr = &cmdError{code: exitProblem, err: fmt.Errorf("the test message was refused: %s", res.Reply)}
	default:
		f.Severity, f.Title = advisor.SevWarning, "The test message may or may not have arrived"
		f.Meaning = "The connection was lost just after the message was handed over (" + res.Reply + "): the server may have it."
		f.Action = "Look in " + to + "'s mailbox before sending again."
		w.testErr = &cmdError{code: exitProblem, err: errors.New("the test message's fate is unknown: " + res.Reply)}
	}
	printFindings(w.out, []advisor.Finding{f})
	return nil
}

// nextSteps ends with the exact command to run, and the shape of the two
// files it needs.
func (w *wizard) nextSteps() {
	w.heading("Next: send your mailing")
	cfg := w.written
	fmt.Fprintf(w.out, `  1. Put the recipients in a CSV file with a header row, e.g. list.csv:
       email,name
       ann@example.com,Ann
       bob@example.org,Bob
  2. Write the message in a text file: header lines, an empty line, the body.
     {{.name}} is replaced by each row's name column. E.g. message.txt:
       From: %s
       Subject: Hello {{.name}}

       Hi {{.name}}, …
`, w.from)
	n := 3
	if w.passwordEnv() != "" {
		fmt.Fprintf(w.out, "  %d. Put the password in $%s: read -rs %s && export %s\n", n, w.passwordEnv(), w.passwordEnv(), w.passwordEnv())
		n++
	}
	fmt.Fprintf(w.out, "  %d. Check everything without sending, then send:\n", n)
	fmt.Fprintf(w.out, "       mailroute send --config %s --list list.csv --message message.txt --dry-run\n", cfg)
	fmt.Fprintf(w.out, "       %s\n", bold.Sprintf("mailroute send --config %s --list list.csv --message message.txt", cfg))
}

// authCheck shows, before the test message goes out, how receivers will
// judge mail from the sender's address over the chosen route: SPF and
// DMARC of its domain (check.go). A fail here is why a test message may
// land in spam or bounce.
func (w *wizard) authCheck(ctx context.Context) error {
	fs := adviceAuth(ctx, w.p, w.rec, w.rep, w.from, w.req.IdentityOptions)
	if len(fs) == 0 {
		return nil
	}
	w.step("Will receivers accept mail from " + w.from + "?")
	printFindings(w.out, asFindings(fs))
	cfg := w.written
	if cfg == "" {
		cfg = "CONFIG"
	}
	w.say("For a whole mailing, DKIM and the bulk-sender rules included: mailroute check --config %s --message message.txt --list list.csv", cfg)
	return nil
}
