package send

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/quota"
)

// openLimits makes the run's limiters (README.md, "Limits and quotas"): the
// mailing's rate, and each relay account's, each with its ledger so that
// what earlier runs sent, and what runs going on at the same time send,
// counts too. Direct mode's global rate is kept for this machine as a
// whole; relay mode's for the set of relay accounts it uses.
func (e *Engine) openLimits() error {
	if e.cfg.Rate.IsZero() && !e.relayRates() {
		return nil
	}
	dir, err := e.quotaDir()
	if err != nil {
		return &Error{Err: err, Hint: "set XDG_STATE_HOME to a directory mailroute may write", Setup: true}
	}
	for _, sp := range e.limitSpecs() {
		led, err := quota.OpenLedger(dir, sp.key)
		if err != nil {
			return &Error{Err: fmt.Errorf("quota ledger: %w", err), Hint: "the ledger keeps quotas between runs in " + dir + "; check its permissions, or set XDG_STATE_HOME", Setup: true}
		}
		e.ledgers = append(e.ledgers, led)
		l, err := quota.New(sp.name, sp.rates.Limits(), led, e.now)
		if err != nil {
			return &Error{Err: fmt.Errorf("quota ledger %s: %w", led.Path(), err), Setup: true}
		}
		if sp.relay < 0 {
			e.global = l
		} else {
			e.relays[sp.relay].rate = l
		}
	}
	return nil
}

func (e *Engine) quotaDir() (string, error) {
	if e.opts.QuotaDir != "" {
		return e.opts.QuotaDir, nil
	}
	return quota.StateDir()
}

// limitSpec is one limiter of a run: whose limits (for words), the key of
// its ledger, and the rates.
type limitSpec struct {
	name, key string
	rates     config.Rates
	relay     int // index in e.relays; -1 for the mailing's own rate
}

// limitSpecs are the run's limiters that have a limit. Direct mode's
// global rate is kept for this machine as a whole; relay mode's for the
// set of relay accounts it uses; each relay's for its account.
func (e *Engine) limitSpecs() []limitSpec {
	var out []limitSpec
	add := func(sp limitSpec) {
		if !sp.rates.IsZero() {
			out = append(out, sp)
		}
	}
	if e.cfg.Mode == config.ModeDirect {
		add(limitSpec{name: "this machine", key: "direct", rates: e.cfg.Rate, relay: -1})
		return out
	}
	var accounts, hosts []string
	for _, t := range e.relays {
		accounts = append(accounts, t.account)
		hosts = append(hosts, t.spec.ServerName)
	}
	sort.Strings(accounts)
	add(limitSpec{name: strings.Join(hosts, " and "), key: "relays " + strings.Join(accounts, ", "), rates: e.cfg.Rate, relay: -1})
	for i, t := range e.relays {
		add(limitSpec{name: t.spec.ServerName, key: "relay " + t.account, rates: e.cfg.Relay[i].Rate, relay: i})
	}
	return out
}

func (e *Engine) relayRates() bool {
	for _, r := range e.cfg.Relay {
		if !r.Rate.IsZero() {
			return true
		}
	}
	return false
}

func (e *Engine) closeLimits() {
	for _, l := range e.ledgers {
		l.Close()
	}
}

// slot waits until set lets one more message go and takes the slot. When
// the next slot is further away than --max-wait, it says so to the run
// (heldBack) and returns nil: the worker stops.
func (e *Engine) slot(set quota.Set) *quota.Token {
	tok, err := set.Wait(e.soft, e.opts.MaxWait, e.hold.waiter())
	if err == nil {
		return tok
	}
	if tl, ok := quota.IsTooLong(err); ok {
		e.hold.tooLong(tl)
	} else if e.soft.Err() == nil {
		e.fail(&Error{Err: err, Hint: "the quota ledger could not be read or written; check the disk"})
	}
	return nil
}

// workerGone is called as each worker ends. When the last one ends while
// the run still has recipients (in the list or waiting for a retry),
// nothing else would end the run: it stops, saying why. Either a limit
// held every worker back past --max-wait (the time to run again), or every
// relay went down (its error; a worker that met it with a recipient in
// hand has failed the run already, one whose recipient was held back by a
// refusal has not).
func (e *Engine) workerGone() {
	if e.live.Add(-1) > 0 || e.soft.Err() != nil {
		return
	}
	tl := e.hold.tooLongErr()
	if tl == nil {
		for _, t := range e.relays {
			if err := t.isDown(); err != nil {
				e.fail(e.relayDown(t, err))
				return
			}
		}
		return
	}
	e.fail(&Error{
		Err: fmt.Errorf("%s holds the mailing: the next message may go at %s, more than --max-wait %s away",
			tl.Hold, when(tl.Hold.Open, e.now()), e.opts.MaxWait),
		Hint: "run the same command again after " + when(tl.Hold.Open, e.now()) +
			": recipients not sent are still pending (or give --max-wait a longer time to wait)",
	})
}

// holdState is what holds the run back now, for the progress line: the
// last limit a waiting worker was told about, while any waits.
type holdState struct {
	mu      sync.Mutex
	waiting int
	hold    quota.Hold
	longest *quota.ErrTooLong // the latest slot that was too far away
}

// waiter returns the callback for one Wait.
func (h *holdState) waiter() quota.Waiting {
	counted := false
	return func(x quota.Hold) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if x.Limit.N == 0 {
			if counted {
				h.waiting--
				counted = false
			}
			return
		}
		if !counted {
			h.waiting++
			counted = true
		}
		h.hold = x
	}
}

func (h *holdState) tooLong(tl *quota.ErrTooLong) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.longest == nil || tl.Hold.Open.After(h.longest.Hold.Open) {
		h.longest = tl
	}
}

func (h *holdState) tooLongErr() *quota.ErrTooLong {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.longest
}

// current is the hold to show, or false when nothing waits.
func (h *holdState) current() (quota.Hold, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hold, h.waiting > 0
}

// Waiting is what holds the run back now, in words ("waiting for
// smtp.relay.example's 500/d: next at 09:14 tomorrow"), or "".
func (e *Engine) Waiting() string {
	h, ok := e.hold.current()
	if !ok {
		return ""
	}
	if h.Open.IsZero() {
		return fmt.Sprintf("waiting for %s: a reply in flight first", h)
	}
	return fmt.Sprintf("waiting for %s: next at %s", h, when(h.Open, e.now()))
}

// when writes t for a person reading it at now: the time of day, with
// "tomorrow" or the date when it is not today.
func when(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	clock := t.Format("15:04:05")
	y1, m1, d1 := now.Date()
	y2, m2, d2 := t.Date()
	switch {
	case y1 == y2 && m1 == m2 && d1 == d2:
		return clock
	case now.AddDate(0, 0, 1).Format(time.DateOnly) == t.Format(time.DateOnly):
		return clock + " tomorrow"
	}
	return t.Format("2006-01-02 15:04:05")
}
