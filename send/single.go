package send

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/address"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/quota"
	"github.com/mailroute/mailroute/internal/replies"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/send/journal"
	"github.com/mailroute/mailroute/send/list"
	"github.com/mailroute/mailroute/send/message"
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
	Trace    *smtpclient.Trace // the conversation, secrets hidden (--trace)
	// Notify, when set, is told at once what holds the message back: a
	// relay that does not answer is tried again for retry.unreachable.
	Notify func(msg string)
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

// SendSingle sends m the way a mailing would: one call of the mode's
// deliverer (deliver.go), so the same sessions, TLS, login and reply
// policy, with no list and no journal. There is one attempt: a temporary
// failure is reported as deferred at once rather than retried for the
// config's retry.within, because a person is waiting for the answer. No
// rate applies and the quota ledger is not written: one message.
//
// cfg is not modified. A relay's password comes from cfg as usual; a caller
// holding the password in memory sets Relay.Password on a copy. Errors are
// *Error: setup errors (nothing was sent; Setup set) and a relay that
// could not be used, such as a refused login, with the relay's words.
func SendSingle(ctx context.Context, cfg *config.Config, m Single) (*SingleResult, error) {
	setup := func(err error) (*SingleResult, error) { return nil, &Error{Err: err, Setup: true} }
	for _, h := range []struct{ name, v string }{{"From", m.From}, {"To", m.To}, {"Subject", m.Subject}} {
		if strings.ContainsAny(h.v, "\r\n") {
			return setup(fmt.Errorf("%s contains a line break", h.name))
		}
	}
	c := *cfg
	c.Relay = append([]config.Relay(nil), cfg.Relay...)
	c.Threads, c.Rate = 1, nil
	for i := range c.Relay {
		c.Relay[i].Threads, c.Relay[i].Rate = 0, nil
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return setup(err)
	}
	addr, domain, why := address.Normalize(m.To)
	if why != "" {
		return setup(fmt.Errorf("%s: %s", m.To, why))
	}
	// The text is made literal for the template engine: "{{" would
	// otherwise start an action.
	literal := func(s string) string { return strings.ReplaceAll(s, "{{", `{{"{{"}}`) }
	tmpl, err := message.ParseTemplate("the test message",
		fmt.Sprintf("From: %s\nSubject: %s\n\n%s", literal(m.From), literal(m.Subject), literal(m.Text)))
	if err != nil {
		return setup(err)
	}
	if err := tmpl.SetUnsubscribe(c.Unsubscribe); err != nil {
		return setup(err)
	}
	e := &Engine{cfg: &c, opts: Options{Resolver: m.Resolver, Timeouts: m.Timeouts.WithDefaults(), Trace: m.Trace, Notify: m.Notify},
		now: time.Now, tmpl: tmpl, hard: ctx, soft: ctx, tally: newTally(), refusals: replies.NewBreakers(), sessions: quota.NewSemaphore(1)}
	if e.helo, err = heloName(&c); err != nil {
		return setup(err)
	}
	if c.DKIM != nil {
		if e.signer, err = message.NewSigner(c.DKIM); err != nil {
			return setup(err)
		}
	}
	if err := e.prepareTargets(); err != nil {
		return nil, err
	}
	rcpt := &list.Recipient{Line: 2, Email: m.To, Addr: addr, Domain: domain, Fields: map[string]string{"email": m.To}}
	r, err := tmpl.Render(rcpt, message.RenderOptions{Now: e.now(), Signer: e.signer})
	if err != nil {
		return setup(err)
	}
	from := c.From
	if from == "" {
		from = r.From
	}
	d := e.deliverer()
	defer d.close()
	start := time.Now()
	res := d.deliver(ctx, &job{rcpt: rcpt}, &txn{From: from, To: addr, Data: r.Data})
	out := &SingleResult{State: res.state, Reply: res.reason, Elapsed: time.Since(start)}
	switch {
	case res.relayFault != nil:
		return nil, e.relayDown(e.relays[0], res.relayFault)
	case res.held:
		// Held back by a refusal that is not the recipient's fault: for
		// one message that is its outcome, with the server's words.
		out.State = journal.StateDeferred
		if res.se != nil && res.se.Permanent {
			out.State = journal.StateFailed
		}
	case res.interrupted:
		return nil, &Error{Err: errors.New("the send was stopped before the server answered")}
	}
	return out, nil
}
