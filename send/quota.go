package send

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

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
	dir := e.opts.QuotaDir
	if dir == "" {
		var err error
		if dir, err = quota.StateDir(); err != nil {
			return &Error{Err: err, Hint: "set XDG_STATE_HOME to a directory mailroute may write", Setup: true}
		}
	}
	limiter := func(name, key string, r Rates) (*quota.Limiter, error) {
		if r.IsZero() {
			return nil, nil
		}
		led, err := quota.OpenLedger(dir, key)
		if err != nil {
			return nil, &Error{Err: fmt.Errorf("quota ledger: %w", err), Hint: "the ledger keeps quotas between runs in " + dir + "; check its permissions, or set XDG_STATE_HOME", Setup: true}
		}
		e.ledgers = append(e.ledgers, led)
		l, err := quota.New(name, r.Limits(), led, e.now)
		if err != nil {
			return nil, &Error{Err: fmt.Errorf("quota ledger %s: %w", led.Path(), err), Setup: true}
		}
		return l, nil
	}
	var err error
	if e.cfg.Mode == ModeDirect {
		e.global, err = limiter("this machine", "direct", e.cfg.Rate)
		return err
	}
	var accounts, hosts []string
	for _, t := range e.relays {
		accounts = append(accounts, t.account)
		hosts = append(hosts, t.spec.ServerName)
	}
	sort.Strings(accounts)
	if e.global, err = limiter(strings.Join(hosts, " and "), "relays "+strings.Join(accounts, ", "), e.cfg.Rate); err != nil {
		return err
	}
	for i, t := range e.relays {
		if t.rate, err = limiter(t.spec.ServerName, "relay "+t.account, e.cfg.Relay[i].Rate); err != nil {
			return err
		}
	}
	return nil
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
// the run still has recipients, a limit held them all back past
// --max-wait (or a relay went down, which has failed the run already):
// the run stops with the time to run it again.
func (e *Engine) workerGone() {
	if e.live.Add(-1) > 0 || e.soft.Err() != nil {
		return
	}
	tl := e.hold.tooLongErr()
	if tl == nil {
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
