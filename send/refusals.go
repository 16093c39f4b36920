package send

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mailroute/mailroute/internal/replies"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/send/journal"
)

// A refusal that is not the recipient's fault (the sender's domain fails
// DMARC, the login is refused, the client is blocklisted, a quota is used
// up: internal/replies) must not cost the recipient anything: it stays
// pending, and a re-run sends it once the cause is mended. Asking the rest
// of the list would only draw the same refusal, which real providers count
// against the sender, so after breakerAfter such refusals in a row from one
// target (a relay, or a recipient domain in direct mode) the target is left
// alone for the rest of the run: a circuit breaker, open until the run ends.
const breakerAfter = 3

// breakers hold one circuit breaker per target.
type breakers struct {
	// any is set once a held refusal was counted: until then a sent
	// message (the common case, tens of thousands a second to a nearby
	// relay) need not take the lock to reset a count that is zero.
	any  atomic.Bool
	mu   sync.Mutex
	by   map[string]*breaker
	seen map[refusalKey]*Refusal // every refusal, by cause, for the report
}

type breaker struct {
	row  int               // held refusals in a row
	open *replies.Verdict  // set: the target is left alone for the run
	err  *smtpclient.Error // the refusal that opened it
}

type refusalKey struct {
	target, cause string
}

// Refusal is one kind of refusal a relay or MX made during the run, with
// what it means and how to mend it, counted whether the recipient was
// retried or not.
type Refusal struct {
	Target   string `json:"target"` // relay host:port, or recipient domain (direct)
	Fault    string `json:"fault"`  // recipient, sender, auth, policy, reputation, quota, message, transient, unknown
	Cause    string `json:"cause"`
	Provider string `json:"provider,omitempty"`
	Words    string `json:"words"`
	Fix      string `json:"fix,omitempty"`
	Source   string `json:"source,omitempty"`
	Example  string `json:"example"` // the server's words, the first time
	Code     int    `json:"code"`    // its reply code
	Count    int    `json:"count"`
	// Paused: the target was left alone for the rest of the run after
	// these refusals; Held recipients stayed pending because of it.
	Paused bool `json:"paused,omitempty"`
	Held   int  `json:"held,omitempty"`
}

func newBreakers() *breakers {
	return &breakers{by: map[string]*breaker{}, seen: map[refusalKey]*Refusal{}}
}

// classify says what a reply error means; ok is false for failures that
// were not a reply (network, TLS, local).
func classify(se *smtpclient.Error) (replies.Verdict, bool) {
	if se == nil || !se.Reply() {
		return replies.Verdict{}, false
	}
	return replies.Classify(replies.Reply{Code: se.Code, Enhanced: se.Enhanced, Text: se.Message, Command: se.Command}), true
}

// refused counts a refusal by target for the report; held: it was not the
// recipient's fault, and it counts towards the target's breaker, which it
// reports opening (true the one time it opens).
func (b *breakers) refused(target string, v replies.Verdict, se *smtpclient.Error) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := refusalKey{target, v.Cause + "/" + string(v.Fault)}
	r := b.seen[k]
	if r == nil {
		if len(b.seen) >= maxTallyReasons {
			k = refusalKey{target, otherReasons}
			r = b.seen[k]
		}
		if r == nil {
			r = &Refusal{Target: target, Fault: string(v.Fault), Cause: v.Cause, Provider: v.Provider,
				Words: v.Words, Fix: v.Fix, Source: v.Source, Example: se.Error(), Code: se.Code}
			b.seen[k] = r
		}
	}
	r.Count++
	if !v.HoldsRecipient() {
		return false
	}
	br := b.by[target]
	if br == nil {
		br = &breaker{}
		b.by[target] = br
		b.any.Store(true)
	}
	br.row++
	if br.open == nil && br.row >= breakerAfter {
		vv := v
		br.open, br.err = &vv, se
		r.Paused = true
		return true
	}
	return false
}

// ok resets target's count of held refusals in a row: it took a message.
func (b *breakers) ok(target string) {
	if !b.any.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if br := b.by[target]; br != nil {
		br.row = 0
	}
}

// paused returns the verdict that opened target's breaker and the refusal
// that did, or nil: the target is left alone for the run.
func (b *breakers) paused(target string) (*replies.Verdict, *smtpclient.Error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.by[target]
	if br == nil || br.open == nil {
		return nil, nil
	}
	return br.open, br.err
}

// hold counts a recipient left pending by a refusal of target.
func (b *breakers) hold(target string, v *replies.Verdict) {
	if v == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.seen[refusalKey{target, v.Cause + "/" + string(v.Fault)}]; r != nil {
		r.Held++
	}
}

// report lists the refusals, most first.
func (b *breakers) report() []Refusal {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Refusal, 0, len(b.seen))
	for _, r := range b.seen {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(x, y Refusal) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Target, y.Target), cmp.Compare(x.Cause, y.Cause))
	})
	return out
}

// counted tells the breakers what the target said to one attempt.
func (e *Engine) counted(target string, res *result) {
	switch {
	case res.verdict != nil:
		if e.refusals.refused(target, *res.verdict, res.se) && e.opts.Notify != nil {
			msg := e.sentence(target, res.verdict)
			if res.verdict.Provider != "" {
				msg = target + ": " + msg
			}
			e.opts.Notify(fmt.Sprintf("%s, %d times in a row: left alone for this run (%s)", msg, breakerAfter, res.se))
		}
	case res.state == journal.StateSent:
		e.refusals.ok(target)
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
