package send

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
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

// writeText is the estimate's line of a dry run.
func (est *Estimate) writeText(b *strings.Builder, n int, now time.Time) {
	if est.AtOnce {
		fmt.Fprintf(b, "time: the limits let all %d %s go at once; threads and the server's replies set the pace\n", n, plural(n, "message", "messages"))
	} else {
		d := time.Duration(est.Seconds * float64(time.Second))
		fmt.Fprintf(b, "time: about %s at the least (last message %s), set by %s; threads and the server's replies can only make it longer\n",
			aboutDuration(d), aroundTime(est.LastMessage, now), est.Limit)
	}
	if len(est.Used) > 0 {
		fmt.Fprintf(b, "already used (quota ledger): %s\n", strings.Join(est.Used, ", "))
	}
}

// aboutDuration writes d as a person would say it: "40 s", "25 min",
// "3 h", "2 h 30 min", "2 days".
func aboutDuration(d time.Duration) string {
	switch {
	case d < 90*time.Second:
		return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
	case d < 10*time.Hour:
		d = d.Round(10 * time.Minute)
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	case d < 36*time.Hour:
		return fmt.Sprintf("%d h", int(d.Round(time.Hour)/time.Hour))
	}
	days := int(d.Round(time.Hour*24) / (24 * time.Hour))
	return fmt.Sprintf("%d days", days)
}

// aroundTime writes when t is, seen at now: "around 23:10", "tomorrow
// around 09:14", or "on Tue 1 Dec around 09:14".
func aroundTime(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	clock := t.Format("15:04")
	switch {
	case t.Format(time.DateOnly) == now.Format(time.DateOnly):
		return "around " + clock
	case t.Format(time.DateOnly) == now.AddDate(0, 0, 1).Format(time.DateOnly):
		return "tomorrow around " + clock
	case t.Year() == now.Year():
		return "on " + t.Format("Mon 2 Jan") + " around " + clock
	}
	return "on " + t.Format("Mon 2 Jan 2006") + " around " + clock
}
