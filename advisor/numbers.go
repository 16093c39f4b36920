package advisor

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/probe"
)

// The numbers come from evidence, strongest first: what the relay itself
// did when measured, what its provider publishes, the size of the list, and
// only then a default. Each keeps a margin below the limit it was read from,
// because a limit met exactly turns every window's last messages into
// deferrals (and some providers suspend accounts that hit limits often).

const (
	// defaultThreads is send's default: most relays allow two sessions.
	defaultThreads = 2
	// marginPercent is how far below a measured or published rate we stay.
	// 15%: enough to absorb clock skew and the relay's window boundaries
	// (30 per minute becomes 25/m), small enough not to waste the allowance.
	marginPercent = 15
	// recipientsPerThread sizes threads to the list: one session per this
	// many recipients. A small list gains nothing from many sessions and
	// looks like a burst to the relay.
	recipientsPerThread = 250
)

// maxThreads by provider kind: personal mailboxes and ISP relays are built
// for people, not mailings (small lists stay at 1-5 sessions there);
// sending services expect concurrency.
var maxThreads = map[string]int{"mailbox": 3, "isp": 3, "business": 5, "esp": 10, "": 5}

// numbers derives threads and rate for mode from the evidence.
func numbers(mode config.Mode, in Input, m *Match, meas *probe.Measurement) (Number, RateChoice) {
	var prov *Provider
	kind := ""
	if m != nil {
		prov, kind = m.Provider, m.Provider.Kind
	}
	if mode == config.ModeDirect {
		return directThreads(in.ListSize), RateChoice{Source: "default",
			Reason: "direct delivery spreads over many receivers, each with its own limits; send slows down on their 4xx replies"}
	}
	if meas != nil && meas.Error != "" {
		meas = nil
	}
	return relayThreads(in.ListSize, kind, prov, meas), relayRate(in.ListSize, prov, meas)
}

// headroom keeps one session free when the limit allows it: a session the
// relay has not yet noticed closing would otherwise make the next one fail.
func headroom(limit int) int {
	if limit >= 3 {
		return limit - 1
	}
	return limit
}

func listThreads(list, ceiling int) int {
	n := int(math.Ceil(float64(list) / recipientsPerThread))
	return min(max(n, 1), ceiling)
}

func directThreads(list int) Number {
	if list <= 0 {
		return Number{defaultThreads, "default", fmt.Sprintf("%d sessions in all (send's default); direct.per_domain_threads keeps it to 2 per receiving domain", defaultThreads)}
	}
	n := min(max(listThreads(list, 10), defaultThreads), 10)
	return Number{n, "list size", fmt.Sprintf("%d recipients: %d sessions in all, at most 2 per receiving domain (direct.per_domain_threads)", list, n)}
}

func relayThreads(list int, kind string, prov *Provider, meas *probe.Measurement) Number {
	// The ceiling: what the relay allows.
	capN, capSrc, capWhy := 0, "", ""
	switch {
	case meas != nil && meas.SessionLimit > 0 && !meas.SessionCapped:
		capN, capSrc = headroom(meas.SessionLimit), "measured"
		capWhy = fmt.Sprintf("the relay accepted %d sessions at once and refused the next", meas.SessionLimit)
		if meas.SessionReply != "" {
			capWhy += fmt.Sprintf(" (%q)", meas.SessionReply)
		}
		if capN < meas.SessionLimit {
			capWhy += "; one session is kept free as headroom"
		}
	case meas != nil && meas.SessionLimit > 0:
		capN, capSrc = meas.SessionLimit, "measured"
		capWhy = fmt.Sprintf("the relay accepted %d sessions at once (the measurement's cap) without refusing one", meas.SessionLimit)
	default:
		if ls := prov.limits(LimitSessions, false); len(ls) > 0 {
			capN, capSrc = headroom(ls[0].N), "catalog: "+ls[0].Source
			capWhy = fmt.Sprintf("%s publishes %s", prov.Name, ls[0])
		}
	}
	// What the mailing wants.
	ceiling := maxThreads[kind]
	want, wantSrc, wantWhy := defaultThreads, "default", fmt.Sprintf("%d sessions (send's default; most relays allow it)", defaultThreads)
	switch {
	case list > 0:
		want, wantSrc = listThreads(list, ceiling), "list size"
		wantWhy = fmt.Sprintf("%d recipients need %s (one per %d, at most %d for this kind of relay)", list, count(want, "session"), recipientsPerThread, ceiling)
	case capSrc == "measured":
		// Measured evidence with no list size: use what the relay allows.
		want, wantSrc, wantWhy = min(capN, 10), "measured", ""
	}
	if capN > 0 && capN <= want {
		why := capWhy
		if wantWhy != "" && want > capN {
			why += "; " + wantWhy
		}
		return Number{capN, capSrc, why}
	}
	why := wantWhy
	if capWhy != "" {
		if why == "" {
			why = fmt.Sprintf("%s; using %d", capWhy, want)
		} else {
			why += "; " + capWhy
		}
	}
	return Number{want, wantSrc, why}
}

// relayRate takes the strictest of the measured and the published rates
// that bind this mailing, with the margin.
func relayRate(list int, prov *Provider, meas *probe.Measurement) RateChoice {
	type cand struct {
		n      int
		window time.Duration
		src    string
		why    string
	}
	var cands []cand
	var notes []string
	if meas != nil && meas.Transactions > 0 && !meas.TransactionsCapped {
		switch {
		case meas.PerSession:
			notes = append(notes, fmt.Sprintf("the relay allows %d messages per session, then a new session (messages_per_session, not a rate)", meas.Transactions))
		case meas.Window > 0:
			cands = append(cands, cand{meas.Transactions, time.Duration(meas.Window), "measured",
				fmt.Sprintf("the relay accepts %d messages per %s window, then refuses until the window ends", meas.Transactions, meas.Window)})
		default:
			note := fmt.Sprintf("the relay refused after %d messages but its window was not found within the measurement time", meas.Transactions)
			if meas.WindowNote != "" {
				note += " (" + meas.WindowNote + ")"
			}
			notes = append(notes, note+"; a longer --measure-time finds it")
		}
	}
	for _, kind := range []string{LimitMessages, LimitRecipients} {
		for _, l := range prov.limits(kind, false) {
			// A daily allowance the whole list fits in (with the margin)
			// does not bind this mailing; spreading it over a day would
			// only make it slow.
			if list > 0 && l.Window() >= 24*time.Hour && list*100 <= l.N*(100-marginPercent) {
				notes = append(notes, fmt.Sprintf("the list fits in %s's %s", prov.Name, l))
				continue
			}
			cands = append(cands, cand{l.N, l.Window(), "catalog: " + l.Source, fmt.Sprintf("%s publishes %s", prov.Name, l)})
		}
	}
	if len(cands) == 0 {
		const after = " (the relay's 4xx replies slow the mailing down, and send retries them)"
		if len(notes) == 0 {
			return RateChoice{Source: "default", Reason: "no limit was measured or published for this relay: no rate limit" + after}
		}
		return RateChoice{Source: "default", Reason: "no rate limit: " + strings.Join(notes, "; ") + after}
	}
	best := cands[0]
	for _, c := range cands[1:] {
		if float64(c.n)/c.window.Seconds() < float64(best.n)/best.window.Seconds() {
			best = c
		}
	}
	var r config.Rate
	var why string
	if best.src == "measured" {
		// send holds a rate exactly (any window, 1 s longer for counters
		// that keep whole seconds: README "Limits and quotas"), so a
		// measured limit needs no cut in the count; the window is rounded
		// up to whole seconds, the measurement's precision.
		r = exactRate(best.n, best.window)
		why = fmt.Sprintf("%s; held exactly (send counts any window, 1 s longer for whole-second counters), the window rounded up: %s", best.why, r)
	} else {
		// A published limit is the account's, which the user's own mail
		// program shares: stay below it.
		r = withMargin(best.n, best.window)
		why = fmt.Sprintf("%s; %d%% below, as the account also sends your other mail: %s", best.why, marginPercent, r)
	}
	for _, n := range notes {
		why += "; " + n
	}
	return RateChoice{Rate: r, Source: best.src, Reason: why}
}

// niceWindows are the windows people and providers use; a measured window
// is rounded up to one of them when it is close, so "9.6s" reads "10s".
var niceWindows = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// niceWindow rounds a window up, never down: a longer window at the same
// count is a slower, safer rate.
func niceWindow(w time.Duration) time.Duration {
	for _, n := range niceWindows {
		if w <= n && float64(n) <= float64(w)*1.25 {
			return n
		}
	}
	if w < time.Second {
		return time.Second
	}
	c := w.Truncate(time.Second)
	if c < w {
		c += time.Second
	}
	return c
}

// exactRate is n per w with w rounded up to a nice window (whole seconds
// at least): what a measurement of n per w says, at its precision.
func exactRate(n int, w time.Duration) config.Rate {
	return config.Rate{N: max(n, 1), Window: niceWindow(w)}
}

// withMargin is n per w less the margin: floor(n × 85%), at least 1. When
// that is n itself (n = 1), the window is stretched by 20% instead.
func withMargin(n int, w time.Duration) config.Rate {
	w = niceWindow(w)
	m := n * (100 - marginPercent) / 100
	if m >= 1 && m < n {
		return config.Rate{N: m, Window: w}
	}
	return config.Rate{N: max(n, 1), Window: (w * 6 / 5).Round(100 * time.Millisecond)}
}

// sessionCap is how many messages one session to the relay may carry, the
// lower of the measured and the published caps; zero when neither says.
// It is a count, not a rate: exact, with no margin taken off.
func sessionCap(m *Match, meas *probe.Measurement) Number {
	var best Number
	if meas != nil && meas.Error == "" && meas.PerSession && meas.Transactions > 0 && !meas.TransactionsCapped {
		best = Number{meas.Transactions, "measured",
			fmt.Sprintf("the relay took %d messages in one session and refused the next until a new session", meas.Transactions)}
	}
	if m != nil {
		for _, l := range m.Provider.limits(LimitMessagesPerSession, false) {
			if best.Value == 0 || l.N < best.Value {
				best = Number{l.N, "catalog: " + l.Source, fmt.Sprintf("%s publishes %s", m.Provider.Name, l)}
			}
		}
	}
	return best
}
