package send

import (
	"fmt"
	"strings"

	"github.com/mailroute/mailroute/internal/replies"
	"github.com/mailroute/mailroute/send/journal"
)

// counted tells the breakers what the target said to one attempt.
func (e *Engine) counted(target string, res *result) {
	switch {
	case res.verdict != nil:
		if e.refusals.Refused(target, *res.verdict, res.se) && e.opts.Notify != nil {
			msg := e.sentence(target, res.verdict)
			if res.verdict.Provider != "" {
				msg = target + ": " + msg
			}
			e.opts.Notify(fmt.Sprintf("%s, %d times in a row: left alone for this run (%s)", msg, replies.BreakerAfter, res.se))
		}
	case res.state == journal.StateSent:
		e.refusals.OK(target)
	}
}

// sentence is a refusal in plain words: who refuses what, and why.
func (e *Engine) sentence(target string, v *replies.Verdict) string {
	who := v.Provider
	if who == "" {
		who = target
	}
	what := "the mail"
	if d := e.senderDomain(); d != "" {
		what = "mail from " + d
	}
	return fmt.Sprintf("%s refuses %s: %s", who, what, strings.TrimSuffix(v.Words, "."))
}

// senderDomain is the envelope sender's domain, once a message was made.
func (e *Engine) senderDomain() string {
	if d := e.fromDomain.Load(); d != nil {
		return *d
	}
	return ""
}
