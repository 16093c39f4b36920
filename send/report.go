package send

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/replies"
	"github.com/mailroute/mailroute/send/journal"
)

// Report is what a run did, for people (cmd/mailroute writes it as text)
// and programs (JSON).
// Counts cover the whole list, this run and earlier ones: a recipient sent
// by an earlier run counts as sent.
type Report struct {
	Mode       config.Mode `json:"mode"`
	DryRun     bool        `json:"dry_run"`
	Journal    string      `json:"journal,omitempty"`
	Run        uint32      `json:"run,omitempty"` // this run's number in the journal
	Started    time.Time   `json:"started"`
	Finished   time.Time   `json:"finished"`
	Seconds    float64     `json:"seconds"`
	Recipients int         `json:"recipients"` // good rows in the list
	BadRows    int         `json:"bad_rows"`   // rows left out (--skip-bad-rows)
	Counts     Counts      `json:"counts"`
	ThisRun    Counts      `json:"this_run"`        // outcomes reached by this run
	PerSecond  float64     `json:"rate_per_second"` // this run's sent messages per second
	// NextRetry is the earliest next_at among deferred recipients: a re-run
	// retries them at once, but a run before this time may meet the same
	// refusal.
	NextRetry    *time.Time `json:"next_retry,omitempty"`
	TLSFallbacks int        `json:"tls_fallbacks"` // recipients sent in plaintext after a failed TLS handshake
	// MTASTSUnread names the domains (the first few) that announce MTA-STS
	// but whose policy could not be read, with why: their mail went as
	// without MTA-STS (RFC 8461 §5).
	MTASTSUnread []string      `json:"mta_sts_unread,omitempty"`
	Domains      []DomainCount `json:"domains"` // the ten domains with most recipients
	Reasons      []ReasonCount `json:"reasons"` // the ten commonest reasons for failed, deferred and unknown
	// UnknownRecipients names the recipients whose outcome is unknown (the
	// first 100): each may or may not have the message.
	UnknownRecipients []string `json:"unknown_recipients,omitempty"`
	Interrupted       bool     `json:"interrupted"`
	Error             string   `json:"error,omitempty"`
	Hint              string   `json:"hint,omitempty"`
	Plan              *Plan    `json:"plan,omitempty"` // dry run only
	// Refusals counts every refusal a relay or MX made in this run, by
	// target and cause, retried or not, with what it means and the fix.
	Refusals []replies.Refusal `json:"refusals,omitempty"`
	// Streamed is how many transactions went with BDAT, several in flight
	// per session (stream.go); MaxInFlight the most in flight at once on
	// one session.
	Streamed    int `json:"streamed,omitempty"`
	MaxInFlight int `json:"max_in_flight,omitempty"`
}

// Counts is recipients per state.
type Counts struct {
	Sent     int `json:"sent"`
	Deferred int `json:"deferred"`
	Failed   int `json:"failed"`
	Unknown  int `json:"unknown"`
	Pending  int `json:"pending"` // not sent yet: not tried, or held back by a refusal that is not the recipient's fault
}

func (c *Counts) add(s journal.State, n int) {
	switch s {
	case journal.StateSent:
		c.Sent += n
	case journal.StateDeferred:
		c.Deferred += n
	case journal.StateFailed:
		c.Failed += n
	case journal.StateUnknown:
		c.Unknown += n
	default:
		c.Pending += n
	}
}

// DomainCount is one recipient domain's outcomes.
type DomainCount struct {
	Domain string `json:"domain"`
	Counts
}

// ReasonCount is how many recipients ended in State for the same reason.
type ReasonCount struct {
	State  journal.State `json:"state"`
	Reason string        `json:"reason"`
	Count  int           `json:"count"`
}

// ExitCode is 0 when every recipient is sent, else 1.
func (r *Report) ExitCode() int {
	c := r.Counts
	if r.Error != "" || c.Deferred+c.Failed+c.Unknown+c.Pending > 0 {
		return 1
	}
	return 0
}

// tally caps: a list may have a million domains; the report shows ten.
// Past the cap, new domains and reasons are summed under one "other" row,
// which keeps memory flat and the top rows right for any list whose big
// domains appear before the cap is reached (they nearly always do).
const (
	maxTallyDomains = 20000
	maxTallyReasons = 500
	otherDomains    = "(other domains)"
	otherReasons    = "(other reasons)"
)

type reasonKey struct {
	state  journal.State
	reason string
}

// tally aggregates outcomes as they happen, in bounded memory.
type tally struct {
	mu        sync.Mutex
	all, run  Counts
	domains   map[string]*Counts
	reasons   map[reasonKey]int
	nextRetry time.Time
	fallbacks int
	unknown   []string // the first maxListed unknown recipients
}

// maxListed bounds the unknown recipients named in a report: they need a
// person's attention one by one, and the list must not grow with the list.
const maxListed = 100

func newTally() *tally {
	return &tally{domains: map[string]*Counts{}, reasons: map[reasonKey]int{}}
}

// add counts one recipient. thisRun says whether this run reached the
// outcome; addr is taken out of the reason so that "550 <a@x> unknown"
// and "550 <b@x> unknown" count together.
func (t *tally) add(domain string, st journal.State, reason string, next time.Time, fallback bool, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all.add(st, 1)
	if st == journal.StateUnknown && len(t.unknown) < maxListed && addr != "" {
		t.unknown = append(t.unknown, addr)
	}
	d := t.domains[domain]
	if d == nil {
		if len(t.domains) >= maxTallyDomains {
			domain = otherDomains
			d = t.domains[domain]
		}
		if d == nil {
			d = &Counts{}
			t.domains[domain] = d
		}
	}
	d.add(st, 1)
	if fallback {
		t.fallbacks++
	}
	if st == journal.StateDeferred && !next.IsZero() && (t.nextRetry.IsZero() || next.Before(t.nextRetry)) {
		t.nextRetry = next
	}
	if st == journal.StateSent || st == journal.StatePending {
		return
	}
	if addr != "" {
		reason = strings.ReplaceAll(strings.ReplaceAll(reason, "<"+addr+">", addr), addr, "<recipient>")
	}
	k := reasonKey{st, reason}
	if _, ok := t.reasons[k]; !ok && len(t.reasons) >= maxTallyReasons {
		k.reason = otherReasons
	}
	t.reasons[k]++
}

func (t *tally) addRun(st journal.State) {
	t.mu.Lock()
	t.run.add(st, 1)
	t.mu.Unlock()
}

// fill copies the tally into rep: counts, the top ten domains and reasons.
func (t *tally) fill(rep *Report) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rep.Domains, rep.Reasons = []DomainCount{}, []ReasonCount{} // [] rather than null in JSON
	rep.Counts, rep.ThisRun, rep.TLSFallbacks = t.all, t.run, t.fallbacks
	rep.UnknownRecipients = slices.Clone(t.unknown)
	slices.Sort(rep.UnknownRecipients)
	if !t.nextRetry.IsZero() {
		nr := t.nextRetry
		rep.NextRetry = &nr
	}
	for d, c := range t.domains {
		rep.Domains = append(rep.Domains, DomainCount{Domain: d, Counts: *c})
	}
	total := func(c Counts) int { return c.Sent + c.Deferred + c.Failed + c.Unknown + c.Pending }
	slices.SortFunc(rep.Domains, func(a, b DomainCount) int {
		return cmp.Or(cmp.Compare(total(b.Counts), total(a.Counts)), cmp.Compare(a.Domain, b.Domain))
	})
	rep.Domains = rep.Domains[:min(len(rep.Domains), 10)]
	for k, n := range t.reasons {
		rep.Reasons = append(rep.Reasons, ReasonCount{State: k.state, Reason: k.reason, Count: n})
	}
	slices.SortFunc(rep.Reasons, func(a, b ReasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Reason, b.Reason))
	})
	rep.Reasons = rep.Reasons[:min(len(rep.Reasons), 10)]
}

func (e *Engine) report(start time.Time) *Report {
	end := e.now()
	rep := &Report{
		Mode: e.cfg.Mode, Journal: e.opts.JournalPath, Run: e.journal.Run(),
		Started: start, Finished: end, Seconds: end.Sub(start).Seconds(),
		Recipients: e.stats.Good, BadRows: e.stats.BadCount,
		Interrupted: e.interrupted.Load(),
	}
	e.tally.fill(rep)
	if e.mx != nil {
		rep.MTASTSUnread = e.mx.Unread()
	}
	// Rows the run never reached are pending.
	counted := rep.Counts.Sent + rep.Counts.Deferred + rep.Counts.Failed + rep.Counts.Unknown + rep.Counts.Pending
	if counted < rep.Recipients {
		rep.Counts.Pending += rep.Recipients - counted
	}
	if rep.Seconds > 0 {
		rep.PerSecond = float64(rep.ThisRun.Sent) / rep.Seconds
	}
	if e.fatal != nil {
		rep.Error, rep.Hint = e.fatal.Error(), e.fatal.Hint
	}
	rep.Refusals = e.refusals.Report()
	rep.Streamed, rep.MaxInFlight = int(e.streamed.Load()), int(e.maxInFlight.Load())
	return rep
}
