package send

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/journal"
)

// Single is one message to one address, for a test before a mailing (the
// wizard's "send a test message to yourself").
type Single struct {
	From    string // the From header and, unless the config sets from, the envelope sender
	To      string
	Subject string
	Text    string // the plain-text body, taken literally (not a template)
	// Resolver finds MX hosts in direct mode; nil: the config's resolver,
	// else /etc/resolv.conf.
	Resolver MXResolver
	Timeouts Timeouts
}

// SingleResult is what became of a Single.
type SingleResult struct {
	// State is StateSent, StateDeferred, StateFailed or StateUnknown.
	State journal.State
	// Reply is the server's words: its acceptance line when sent, its
	// refusal (or what went wrong) otherwise.
	Reply   string
	Elapsed time.Duration
}

// SendSingle sends m the way a mailing would (the same Engine, sessions,
// TLS and login), through a one-row list and a journal in a temporary
// directory that is removed afterwards. There is one attempt: a temporary
// failure is reported as deferred at once rather than retried for the
// config's retry.within, because a person is waiting for the answer.
//
// cfg is not modified. A relay's password comes from cfg as usual; a caller
// holding the password in memory sets Relay.Password on a copy. Errors are
// *Error, as from New and Engine.Run: setup errors (nothing was sent) and
// run errors such as a refused login.
func SendSingle(ctx context.Context, cfg *config.Config, m Single) (*SingleResult, error) {
	c := *cfg
	c.Relay = append([]config.Relay(nil), cfg.Relay...)
	c.Threads, c.Rate = 1, nil
	for i := range c.Relay {
		c.Relay[i].Threads, c.Relay[i].Rate = 0, nil
	}
	c.Retry.Attempts = 1

	dir, err := os.MkdirTemp("", "mailroute-single-*")
	if err != nil {
		return nil, &Error{Err: err, Setup: true}
	}
	defer os.RemoveAll(dir)
	list, msg := filepath.Join(dir, "list.csv"), filepath.Join(dir, "message.txt")
	if err := writeSingle(list, msg, m); err != nil {
		return nil, &Error{Err: err, Setup: true}
	}
	start := time.Now()
	e, err := New(&c, Options{ListPath: list, TextPath: msg, Resolver: m.Resolver, Timeouts: m.Timeouts})
	if err != nil {
		return nil, err
	}
	rep, err := e.Run(ctx)
	if err != nil {
		return nil, err
	}
	res := &SingleResult{State: journal.StatePending, Elapsed: time.Since(start)}
	meta, err := e.journalMeta()
	if err != nil {
		return nil, &Error{Err: err}
	}
	j, err := journal.OpenReadOnly(e.opts.JournalPath, meta)
	if err != nil {
		return nil, &Error{Err: err}
	}
	defer j.Close()
	err = j.Each(func(_ int, rec journal.Record) error {
		res.State, res.Reply = rec.State, rec.Reason
		return nil
	})
	if err != nil {
		return nil, &Error{Err: err}
	}
	if res.State == journal.StatePending && res.Reply != "" && len(rep.Refusals) > 0 {
		// Held back by a refusal that is not the recipient's fault: for
		// one message that is its outcome, with the server's words.
		res.State = journal.StateDeferred
		if rep.Refusals[0].Code >= 500 {
			res.State = journal.StateFailed
		}
		return res, nil
	}
	if res.State == journal.StatePending || res.State == journal.StateSending {
		// Not tried to the end: the run was stopped.
		why := "the send was stopped before the server answered"
		if rep.Error != "" {
			why = rep.Error
		}
		return nil, &Error{Err: errors.New(why), Hint: rep.Hint}
	}
	return res, nil
}

// writeSingle writes the one-row list and the message file. The text is
// made literal for the template engine: "{{" would otherwise start an action.
func writeSingle(listPath, msgPath string, m Single) error {
	for _, h := range []struct{ name, v string }{{"From", m.From}, {"To", m.To}, {"Subject", m.Subject}} {
		if strings.ContainsAny(h.v, "\r\n") {
			return fmt.Errorf("%s contains a line break", h.name)
		}
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"email"})
	_ = w.Write([]string{m.To})
	w.Flush()
	if err := os.WriteFile(listPath, []byte(b.String()), 0o600); err != nil {
		return err
	}
	literal := func(s string) string { return strings.ReplaceAll(s, "{{", `{{"{{"}}`) }
	text := fmt.Sprintf("From: %s\nSubject: %s\n\n%s", literal(m.From), literal(m.Subject), literal(m.Text))
	return os.WriteFile(msgPath, []byte(text), 0o600)
}
