package replies

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// A refusal that is not the recipient's fault (the sender's domain fails
// DMARC, the login is refused, the client is blocklisted, a quota is used
// up: internal/replies) must not cost the recipient anything: it stays
// pending, and a re-run sends it once the cause is mended. Asking the rest
// of the list would only draw the same refusal, which real providers count
// against the sender, so after BreakerAfter such refusals in a row from one
// target (a relay, or a recipient domain in direct mode) the target is left
// alone for the rest of the run: a circuit breaker, open until the run ends.
const BreakerAfter = 3

// maxRefusalKinds bounds the kinds of refusal kept; the rest are counted
// together, so a server with ever new words costs no more memory.
const (
	maxRefusalKinds = 500
	otherRefusals   = "(other reasons)"
)

// Breakers hold one circuit breaker per target, and count every refusal
// for the report. Safe for concurrent use.
type Breakers struct {
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
	open *Verdict          // set: the target is left alone for the run
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

// NewBreakers returns breakers that are all closed.
func NewBreakers() *Breakers {
	return &Breakers{by: map[string]*breaker{}, seen: map[refusalKey]*Refusal{}}
}

// OfError says what a reply error means; ok is false for failures that
// were not a reply (network, TLS, local).
func OfError(se *smtpclient.Error) (Verdict, bool) {
	if se == nil || !se.Reply() {
		return Verdict{}, false
	}
	return Classify(Reply{Code: se.Code, Enhanced: se.Enhanced, Text: se.Message, Command: se.Command}), true
}

// Refused counts a refusal by target for the report; held: it was not the
// recipient's fault, and it counts towards the target's breaker, which it
// reports opening (true the one time it opens).
func (b *Breakers) Refused(target string, v Verdict, se *smtpclient.Error) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := refusalKey{target, v.Cause + "/" + string(v.Fault)}
	r := b.seen[k]
	if r == nil {
		if len(b.seen) >= maxRefusalKinds {
			k = refusalKey{target, otherRefusals}
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
	if br.open == nil && br.row >= BreakerAfter {
		vv := v
		br.open, br.err = &vv, se
		r.Paused = true
		return true
	}
	return false
}

// OK resets target's count of held refusals in a row: it took a message.
func (b *Breakers) OK(target string) {
	if !b.any.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if br := b.by[target]; br != nil {
		br.row = 0
	}
}

// Paused returns the verdict that opened target's breaker and the refusal
// that did, or nil: the target is left alone for the run.
func (b *Breakers) Paused(target string) (*Verdict, *smtpclient.Error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.by[target]
	if br == nil || br.open == nil {
		return nil, nil
	}
	return br.open, br.err
}

// Hold counts a recipient left pending by a refusal of target.
func (b *Breakers) Hold(target string, v *Verdict) {
	if v == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.seen[refusalKey{target, v.Cause + "/" + string(v.Fault)}]; r != nil {
		r.Held++
	}
}

// Report lists the refusals, most first.
func (b *Breakers) Report() []Refusal {
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
