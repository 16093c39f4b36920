package send

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/quota"
)

// Estimate is how long the limits make a mailing take at the least: every
// limit that applies (the mailing's rate, each relay account's), with what
// earlier runs already used of them in the quota ledger. It is a lower
// bound: threads, the servers' replies and refusals can only make it
// longer.
type Estimate struct {
	// Seconds from the dry run until the last message may go.
	Seconds float64 `json:"seconds"`
	// LastMessage is when the last message may go, at the earliest.
	LastMessage time.Time `json:"last_message"`
	// Limit is what sets the pace, in words: "the mailing's 30/h",
	// "smtp.relay.example's 500/d"; "" when all may go at once.
	Limit string `json:"limit,omitempty"`
	// Used is what the ledger already counts against each limit, when
	// anything: "smtp.relay.example's 500/d: 120 used".
	Used []string `json:"used,omitempty"`
	// AtOnce: the limits let every message go now; threads and replies
	// set the pace.
	AtOnce bool `json:"at_once,omitempty"`
}

// maxEstimate bounds the search: a mailing the limits stretch further is
// "longer than" this.
const maxEstimate = 100 * 365 * 24 * time.Hour

// estimate works out n messages' time under the run's limits, reading
// (never creating) the quota ledgers. nil when no limit applies or there
// is nothing to send.
func (e *Engine) estimate(n int) (*Estimate, error) {
	specs := e.limitSpecs()
	if len(specs) == 0 || n == 0 {
		return nil, nil
	}
	now := e.now()
	clock := func() time.Time { return now }
	dir, dirErr := e.quotaDir()
	est := &Estimate{}
	type limiter struct {
		name string
		l    *quota.Limiter
	}
	var global *limiter
	var relays []*limiter // nil: the relay has no limit of its own
	if e.cfg.Mode != config.ModeDirect {
		relays = make([]*limiter, len(e.relays))
	}
	for _, sp := range specs {
		var led *quota.Ledger
		// A ledger that does not exist yet counts nothing, and a dry run
		// writes nothing: open only one that is there.
		if dirErr == nil {
			if _, err := os.Stat(filepath.Join(dir, quota.FileName(sp.key))); err == nil {
				var err error
				if led, err = quota.OpenLedger(dir, sp.key); err != nil {
					return nil, fmt.Errorf("quota ledger: %w", err)
				}
				defer led.Close()
			}
		}
		l, err := quota.New(sp.name, sp.rates.Limits(), led, clock)
		if err != nil {
			return nil, fmt.Errorf("quota ledger %s: %w", led.Path(), err)
		}
		word := sp.name + "'s"
		if sp.relay < 0 {
			word = "the mailing's"
			global = &limiter{word, l}
		} else {
			relays[sp.relay] = &limiter{word, l}
		}
		for i, u := range l.Used() {
			if u > 0 {
				est.Used = append(est.Used, fmt.Sprintf("%s %s: %d used", word, l.Limits()[i], u))
			}
		}
	}

	// What the relays together can take by t: each relay's own limits;
	// one without any takes everything.
	relaysCap := func(t time.Time) int {
		if relays == nil {
			return math.MaxInt
		}
		sum := 0
		for _, r := range relays {
			if r == nil {
				return math.MaxInt
			}
			c, _ := r.l.Capacity(t)
			sum += c
		}
		return sum
	}
	globalCap := func(t time.Time) int {
		if global == nil {
			return math.MaxInt
		}
		c, _ := global.l.Capacity(t)
		return c
	}
	// end is the earliest time by which capacity lets n go.
	end := func(capacity func(time.Time) int) (time.Time, bool) {
		if capacity(now) >= n {
			return now, true
		}
		lo, hi := time.Duration(0), maxEstimate
		if capacity(now.Add(hi)) < n {
			return now.Add(hi), false
		}
		// Slots open on whole spans from a message's time: to the
		// nanosecond, some 60 steps.
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			if capacity(now.Add(mid)) >= n {
				hi = mid
			} else {
				lo = mid
			}
		}
		return now.Add(hi), true
	}
	gEnd, gOK := end(globalCap)
	rEnd, rOK := end(relaysCap)
	last := gEnd
	if rEnd.After(last) {
		last = rEnd
	}
	if !gOK || !rOK {
		return nil, fmt.Errorf("the limits stretch %d messages over more than %d years", n, int(maxEstimate.Hours()/24/365))
	}
	est.LastMessage, est.Seconds = last, last.Sub(now).Seconds()
	if !last.After(now) {
		est.AtOnce = true
		return est, nil
	}
	// What sets the pace: the limiter that ends last, and its limit that
	// lets the fewest go just before.
	before := last.Add(-time.Millisecond)
	switch {
	case !gEnd.Before(rEnd):
		_, lim := global.l.Capacity(before)
		est.Limit = global.name + " " + lim.String()
	case len(relays) == 1:
		// Every relay has limits of its own here: one without any would
		// take everything at once.
		_, lim := relays[0].l.Capacity(before)
		est.Limit = relays[0].name + " " + lim.String()
	default:
		est.Limit = "the relays' own limits"
	}
	return est, nil
}
