package send

import (
	"errors"
	"io"
	"math"
	"os"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/journal"
	"github.com/mailroute/mailroute/send/message"
)

// Plan is what a dry run found: what a real run would do.
type Plan struct {
	WouldSend   int         `json:"would_send"`   // messages rendered and ready
	AlreadyDone int         `json:"already_done"` // sent, failed or unknown in the journal
	WouldFail   int         `json:"would_fail"`   // the message can't be made, or the domain takes no mail
	DNSTrouble  int         `json:"dns_trouble"`  // direct: MX look-up failed for now (would be deferred)
	Domains     int         `json:"domains"`      // distinct recipient domains
	Threads     int         `json:"threads"`
	Rate        string      `json:"rate,omitempty"`
	Relays      []PlanRelay `json:"relays,omitempty"`
	// MTASTS names the domains (the first maxPlanDomains) whose enforced
	// MTA-STS policy will require verified TLS to the MX hosts it names.
	MTASTS      []string `json:"mta_sts_enforced,omitempty"`
	MTASTSCount int      `json:"mta_sts_enforced_count,omitempty"`
	// Seconds is the least time the limits allow for WouldSend messages
	// (Estimate.Seconds); zero when no limit is set or all may go at once.
	Seconds float64 `json:"min_seconds,omitempty"`
	// Estimate says how long and until when, and which limit sets the
	// pace; absent when no limit applies.
	Estimate *Estimate `json:"estimate,omitempty"`
}

// PlanRelay is one relay as a run would use it.
type PlanRelay struct {
	Addr    string         `json:"addr"`
	TLS     config.TLSMode `json:"tls"`
	Auth    string         `json:"auth"`
	Threads int            `json:"threads"`
	Rate    string         `json:"rate,omitempty"`
}

// maxPlanDomains caps the domains a plan names; the count is whole.
const maxPlanDomains = 20

// dryRun renders every message, resolves every domain (direct mode) and
// reads the journal, but opens no SMTP session and writes nothing.
func (e *Engine) dryRun() (*Report, error) {
	start := e.now()
	plan := &Plan{Threads: e.cfg.Threads, Domains: e.stats.Domains}
	if !e.cfg.Rate.IsZero() {
		plan.Rate = e.cfg.Rate.String()
	}
	for i, t := range e.relays {
		r := e.cfg.Relay[i]
		pr := PlanRelay{Addr: t.name, TLS: r.TLS, Auth: r.Auth, Threads: t.threads}
		if !r.Rate.IsZero() {
			pr.Rate = r.Rate.String()
		}
		plan.Relays = append(plan.Relays, pr)
	}
	var jr *journal.Journal
	if _, err := os.Stat(e.opts.JournalPath); err == nil && !e.opts.NewRun {
		meta, err := e.journalMeta()
		if err != nil {
			return nil, &Error{Err: err, Setup: true}
		}
		if jr, err = journal.OpenReadOnly(e.opts.JournalPath, meta); err != nil {
			hint := ""
			if errors.Is(err, journal.ErrMismatch) {
				hint = "to send this list or message as a new mailing, add --new-run (or pass another --journal)"
			}
			return nil, &Error{Err: err, Hint: hint, Setup: true}
		}
		defer jr.Close()
	}
	lr, err := e.stats.Open(e.opts.ListPath, e.opts.List)
	if err != nil {
		return nil, &Error{Err: err, Setup: true}
	}
	defer lr.Close()
	seenSTS := map[string]bool{} // only domains with a policy: few
	for e.soft.Err() == nil {
		rcpt, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &Error{Err: err, Setup: true}
		}
		if jr != nil {
			rec, ok, err := jr.Get(rcpt.Line)
			if err != nil {
				return nil, &Error{Err: err, Setup: true}
			}
			if ok && !e.sendsAgain(rec.State) { // the run's own rule (engine.go)
				plan.AlreadyDone++
				continue
			}
		}
		if _, err := e.tmpl.Render(rcpt, message.RenderOptions{Now: e.now(), Signer: e.signer}); err != nil {
			plan.WouldFail++
			e.tally.add(rcpt.Domain, journal.StateFailed, "the message could not be made: "+err.Error(), time.Time{}, false, rcpt.Addr)
			continue
		}
		if e.mx != nil {
			mx, policy, err := e.mx.Lookup(e.soft, rcpt.Domain)
			if policy != nil && !seenSTS[rcpt.Domain] {
				seenSTS[rcpt.Domain] = true
				if plan.MTASTSCount++; len(plan.MTASTS) < maxPlanDomains {
					plan.MTASTS = append(plan.MTASTS, rcpt.Domain)
				}
			}
			if r := mxResult(mx, err); r != nil {
				if r.state == journal.StateFailed {
					plan.WouldFail++
				} else {
					plan.DNSTrouble++
				}
				e.tally.add(rcpt.Domain, r.state, r.reason, time.Time{}, false, rcpt.Addr)
				continue
			}
		}
		plan.WouldSend++
		e.tally.add(rcpt.Domain, journal.StatePending, "", time.Time{}, false, "")
	}
	// Every limit that applies, and what the ledger says is used of it.
	est, err := e.estimate(plan.WouldSend)
	if err != nil {
		return nil, &Error{Err: err, Setup: true}
	}
	if est != nil {
		plan.Estimate, plan.Seconds = est, math.Round(est.Seconds)
	}
	end := e.now()
	rep := &Report{
		Mode: e.cfg.Mode, DryRun: true, Journal: e.opts.JournalPath,
		Started: start, Finished: end, Seconds: end.Sub(start).Seconds(),
		Recipients: e.stats.Good, BadRows: e.stats.BadCount, Plan: plan,
		Interrupted: e.interrupted.Load(),
	}
	e.tally.fill(rep)
	rep.Counts, rep.ThisRun = Counts{}, Counts{}
	return rep, nil
}
