package probe

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// MeasureOptions bound a relay measurement. Zero values take the defaults
// noted beside them.
type MeasureOptions struct {
	MaxSessions     int // sessions held at once before giving up looking for a limit; 0: 10
	MaxTransactions int // transactions in one burst; 0: 50
	// WindowBudget is how long to keep retrying after a refusal to find
	// how long the relay's window is; 0: 2 minutes; negative: do not
	// measure the window.
	WindowBudget time.Duration
	// From and To are the MAIL FROM and RCPT TO addresses. Nothing is ever
	// delivered (there is never a DATA), but some relays only accept the
	// login's own address as From; the user's own address is a good To.
	// From "": Cred.User if it is an address; To "": From.
	From, To string
	Cred     *Credentials // nil: no AUTH
	// Progress, if set, is told what is happening in a few words:
	// "sessions: 3 open", "transactions: 27 accepted", "window: retrying in 8s".
	Progress func(status string)
}

const (
	defaultMaxSessions     = 10
	defaultMaxTransactions = 50
	// The budget covers a first, coarse cycle and a second, fine one for
	// windows up to about a minute, the common anvil_rate_time_unit.
	defaultWindowBudget = 2 * time.Minute
	// firstRetry is the first wait after a refusal; waits then double, so a
	// window of W costs about log2(W) retries to find.
	firstRetry = time.Second
	// Fine retries are no closer than this: Postfix counts time in whole
	// seconds, and closer retries would only load the relay.
	minFineStep = 250 * time.Millisecond
	// A retry session is replaced after this many refused commands: Postfix
	// delays every reply after smtpd_soft_error_limit (10) errors and hangs
	// up after smtpd_hard_error_limit (20).
	refusalsPerSession = 5
)

// Measure finds what the relay endpoint e allows, without sending a
// message (never DATA, so nothing is delivered):
//
//   - how many sessions it lets this machine hold at once (opened one by
//     one, each set up like a real one: TLS per e.TLSMode, EHLO, AUTH);
//   - how many transactions (MAIL, RCPT, RSET) one burst gets before a
//     refusal, and whether that cap is per session or per client;
//   - for a per-client cap, the window after which it accepts again.
//
// Every number comes with the server's words in Evidence. Every session is
// closed before Measure returns, also when ctx is cancelled. Errors go into
// Measurement.Error; the phases that completed keep their numbers.
func (p *Prober) Measure(ctx context.Context, e *Endpoint, opt MeasureOptions) *Measurement {
	p = p.prepared()
	mm := &measurer{p: p, e: e, opt: opt, ctx: ctx, start: time.Now(),
		m: &Measurement{Host: e.Host, Addr: e.Addr, Port: e.Port, TLSMode: e.TLSMode, MeasuredAt: p.now()}}
	mm.defaults()
	defer mm.finish()
	if err := mm.check(); err != "" {
		mm.m.Error = err
		return mm.m
	}
	if !mm.sessions() {
		return mm.m
	}
	mm.transactions()
	return mm.m
}

// measurer is one measurement in progress.
type measurer struct {
	p     *Prober
	e     *Endpoint
	opt   MeasureOptions
	ctx   context.Context
	m     *Measurement
	start time.Time
	rtts  []time.Duration // accepted MAIL, RCPT and RSET round trips
	open  []*relaySession // every session opened, closed by finish
	mu    sync.Mutex      // guards open
	first bool            // the first session's setup times are taken
}

func (mm *measurer) defaults() {
	o := &mm.opt
	if o.MaxSessions <= 0 {
		o.MaxSessions = defaultMaxSessions
	}
	if o.MaxTransactions <= 0 {
		o.MaxTransactions = defaultMaxTransactions
	}
	if o.WindowBudget == 0 {
		o.WindowBudget = defaultWindowBudget
	}
	if o.From == "" && o.Cred != nil && strings.Contains(o.Cred.User, "@") {
		o.From = o.Cred.User
	}
	if o.To == "" {
		o.To = o.From
	}
}

// check refuses what would make a bad command line: no addresses, or
// addresses that would smuggle another command (CR, LF) into the session.
func (mm *measurer) check() string {
	if mm.opt.Cred != nil {
		if err := mm.opt.Cred.Validate(); err != nil {
			return err.Error()
		}
	}
	for _, a := range []struct{ what, addr string }{{"sender (From)", mm.opt.From}, {"recipient (To)", mm.opt.To}} {
		switch {
		case a.addr == "":
			return "the measurement needs a " + a.what + " address"
		case strings.ContainsAny(a.addr, "\r\n<> "):
			return fmt.Sprintf("the %s address %q is not a plain mail address", a.what, a.addr)
		}
	}
	return ""
}

func (mm *measurer) finish() {
	mm.closeAll(mm.open)
	m := mm.m
	m.Elapsed = Duration(time.Since(mm.start))
	if len(mm.rtts) > 0 {
		s := slices.Clone(mm.rtts)
		slices.Sort(s)
		m.LatencyMedian = Duration(s[len(s)/2])
		m.LatencyP90 = Duration(s[min(len(s)-1, len(s)*9/10)])
		m.Evidence = append(m.Evidence, fmt.Sprintf("latency: MAIL/RCPT/RSET round trip median %s, p90 %s over %d commands; session setup: TLS %s, AUTH %s",
			m.LatencyMedian, m.LatencyP90, len(s), m.SetupTLS, m.SetupAuth))
	}
	if mm.opt.Cred != nil {
		secret := mm.opt.Cred.Secret
		for _, f := range []*string{&m.SessionReply, &m.TransactionReply, &m.WindowNote, &m.Error} {
			*f = redact(*f, secret)
		}
		for i := range m.Evidence {
			m.Evidence[i] = redact(m.Evidence[i], secret)
		}
	}
}

func (mm *measurer) progress(format string, args ...any) {
	if mm.opt.Progress != nil {
		mm.opt.Progress(fmt.Sprintf(format, args...))
	}
}

func (mm *measurer) evidence(format string, args ...any) {
	mm.m.Evidence = append(mm.m.Evidence, fmt.Sprintf(format, args...))
}

// session opens one session, set up like a sender's.
func (mm *measurer) session() (*relaySession, *smtpclient.Error) {
	s, err := mm.p.openSession(mm.ctx, mm.e, mm.opt.Cred)
	if err != nil {
		return nil, err
	}
	mm.mu.Lock()
	mm.open = append(mm.open, s)
	mm.mu.Unlock()
	if !mm.first {
		mm.first = true
		mm.m.SetupTLS, mm.m.SetupAuth = Duration(s.setupTLS()), Duration(s.setupAuth())
	}
	return s, nil
}

// closeAll ends sessions at once: each QUIT waits for the server to hang up.
func (mm *measurer) closeAll(ss []*relaySession) {
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Go(s.Close)
	}
	wg.Wait()
}

// cancelled records a cancelled measurement; true if ctx is done.
func (mm *measurer) cancelled() bool {
	if mm.ctx.Err() == nil {
		return false
	}
	if mm.m.Error == "" {
		mm.m.Error = "measurement cancelled: " + mm.ctx.Err().Error()
	}
	return true
}

// sessions holds sessions open one by one until the relay refuses one or
// the cap is reached, then closes them all; false if none could be opened.
func (mm *measurer) sessions() bool {
	m := mm.m
	var held []*relaySession
	defer func() { mm.closeAll(held) }()
	var refusal *smtpclient.Error
	for len(held) < mm.opt.MaxSessions {
		s, err := mm.session()
		if err != nil {
			refusal = err
			break
		}
		held = append(held, s)
		mm.progress("sessions: %d open", len(held))
	}
	if mm.cancelled() {
		return false
	}
	m.SessionLimit = len(held)
	if refusal == nil {
		m.SessionCapped = true
		mm.evidence("sessions: %d held at once (the cap); none refused", len(held))
		return true
	}
	m.SessionReply = refusal.Words()
	if len(held) == 0 {
		m.Error = "could not open a session" + failedAt(refusal) + ": " + refusal.Words()
		mm.evidence("sessions: none: the first was refused%s: %s", failedAt(refusal), m.SessionReply)
		return false
	}
	mm.evidence("sessions: %d held at once; session %d was refused%s: %s", len(held), len(held)+1, failedAt(refusal), m.SessionReply)
	return true
}

// transaction runs one MAIL / RCPT / RSET (RFC 5321 §3.3) and returns when
// MAIL was sent and the refusal, if any. There is never a DATA.
func (mm *measurer) transaction(s *relaySession) (time.Time, *smtpclient.Error) {
	sent := time.Now()
	c := s.c
	steps := []func() *smtpclient.Error{
		func() *smtpclient.Error { return c.Mail(mm.opt.From) },
		func() *smtpclient.Error { return c.Rcpt(mm.opt.To) },
		c.Rset,
	}
	for i, step := range steps {
		rtt, err := s.timed(step)
		if err != nil {
			if i == 1 {
				_ = c.Rset() // leave no half transaction
			}
			return sent, err
		}
		mm.rtts = append(mm.rtts, rtt)
	}
	return sent, nil
}

// transactions runs the burst in one session, then the per-session check
// and the window measurement.
func (mm *measurer) transactions() {
	m := mm.m
	s, err := mm.session()
	if err != nil {
		if !mm.cancelled() {
			m.Error = "could not open a session for the transactions" + failedAt(err) + ": " + err.Words()
			m.TransactionReply, m.TransactionCommand = err.Words(), err.Command
		}
		return
	}
	var first time.Time // when the burst's first MAIL went out
	var refusal *smtpclient.Error
	for m.Transactions < mm.opt.MaxTransactions {
		sent, err := mm.transaction(s)
		if err != nil {
			refusal = err
			break
		}
		if first.IsZero() {
			first = sent
		}
		m.Transactions++
		mm.progress("transactions: %d accepted", m.Transactions)
	}
	if mm.cancelled() {
		return
	}
	if refusal == nil {
		m.TransactionsCapped = true
		mm.evidence("transactions: %d accepted in one session (MAIL/RCPT/RSET, no DATA; the cap); none refused", m.Transactions)
		return
	}
	refused := time.Now()
	m.TransactionReply, m.TransactionCommand = refusal.Words(), refusal.Command
	mm.evidence("transactions: %d accepted in one session (MAIL/RCPT/RSET, no DATA); transaction %d was refused at %s: %s",
		m.Transactions, m.Transactions+1, refusal.Command, m.TransactionReply)
	if m.Transactions == 0 && refusal.Permanent {
		m.WindowNote = "no transaction was accepted, permanently: this is a refusal, not a limit"
		return
	}

	// Per session or per client? A fresh session right away tells: a cap
	// per session lets it through, a count per client over time does not.
	s.Close()
	f, ferr := mm.session()
	if ferr != nil {
		mm.evidence("per session: unknown: a new session was refused%s: %s", failedAt(ferr), ferr.Words())
	} else {
		sent, err := mm.transaction(f)
		if err == nil {
			m.PerSession = true
			m.WindowNote = "the cap is per session: a new session starts afresh, there is no window"
			mm.evidence("per session: yes: a new session was allowed a transaction right away")
			return
		}
		refused = sent
		mm.evidence("per session: no: a new session was refused at once at %s: %s", err.Command, err.Words())
	}
	if mm.cancelled() {
		return
	}
	if mm.opt.WindowBudget < 0 {
		m.WindowNote = "window not measured (skipped)"
		return
	}
	w := &window{mm: mm, s: f, deadline: refused.Add(mm.opt.WindowBudget)}
	w.measure(first, refused)
}

// window measures how long a per-client count lasts. A first, coarse cycle
// retries at doubling intervals after the refusal until one transaction is
// accepted: that bounds the window within a factor of two. The acceptance
// starts a new count (Postfix's anvil restarts its window at the first
// event after the old one ran out), so a second cycle uses up the count at
// once and retries at a fine step around the bound from the first: the
// window then comes out to within that step, measured from a start we
// know, which the first cycle's was not.
type window struct {
	mm       *measurer
	s        *relaySession // the retry session; nil: open one when needed
	deadline time.Time
}

func (w *window) measure(first, refused time.Time) {
	mm, m := w.mm, w.mm.m
	defer func() {
		if w.s != nil {
			w.s.Close()
		}
	}()

	// Cycle 1: coarse.
	lastNo, interval := refused, firstRetry
	maxInterval := min(max(mm.opt.WindowBudget/8, firstRetry), 30*time.Second)
	var tries []string
	var yes time.Time
	for yes.IsZero() {
		at := lastNo.Add(interval)
		if at.After(w.deadline) {
			m.WindowNote = fmt.Sprintf("still refused %s after the refusal, the end of the budget: the window is longer than that (or the limit is per day)",
				lastNo.Sub(refused).Round(time.Second))
			mm.evidence("window: retried %s after the refusal: all refused", strings.Join(tries, ", "))
			return
		}
		sent, ok, done := w.retry(at)
		if done {
			return
		}
		tries = append(tries, fmt.Sprintf("+%s", sent.Sub(refused).Round(100*time.Millisecond)))
		if ok {
			yes = sent
		} else {
			lastNo, interval = sent, min(2*interval, maxInterval)
		}
	}
	lo, hi := lastNo.Sub(first), yes.Sub(first)
	mm.evidence("window: first cycle: retries at %s after the refusal; the last was accepted: the window is %s to %s long, counted from the burst's first transaction",
		strings.Join(tries, ", "), round(lo), round(hi))
	coarse := func(note string) {
		m.Window, m.WindowPrecision = Duration(((lo + hi) / 2).Round(time.Millisecond)), Duration(((hi - lo) / 2).Round(time.Millisecond))
		m.WindowNote = note
	}

	// Cycle 2: fine, if the budget has room for one more window.
	if time.Until(w.deadline) < hi+hi/4+time.Second {
		coarse("measured over one cycle only (no budget for a second): assumes the count began with the burst")
		return
	}
	n := 1 // the accepted retry opened this cycle
	var refusal *smtpclient.Error
	var lastNo2 time.Time
	for refusal == nil && n <= mm.opt.MaxTransactions {
		if err := w.ensure(); err != nil {
			coarse("second cycle failed: " + err.Words())
			return
		}
		sent, err := mm.transaction(w.s)
		if err != nil {
			refusal, lastNo2 = err, sent
		} else {
			n++
		}
	}
	if refusal == nil {
		coarse(fmt.Sprintf("the second cycle accepted more than %d transactions: the limit is not a fixed count per window", mm.opt.MaxTransactions))
		return
	}
	mm.evidence("window: second cycle: %d accepted, then refused at %s: %s", n, refusal.Command, refusal.Words())
	step := min(max((hi-lo)/16, minFineStep), 5*time.Second)
	next := yes.Add(lo - 2*step)
	if t := lastNo2.Add(step); next.Before(t) {
		next = t
	}
	var yes2 time.Time
	for yes2.IsZero() {
		if next.After(w.deadline) {
			coarse("the second cycle did not end within the budget; first cycle's bounds kept")
			return
		}
		sent, ok, done := w.retry(next)
		if done {
			return
		}
		if ok {
			yes2 = sent
		} else {
			lastNo2, next = sent, sent.Add(step)
		}
	}
	lo2, hi2 := lastNo2.Sub(yes), yes2.Sub(yes)
	m.Window, m.WindowPrecision = Duration(((lo2 + hi2) / 2).Round(time.Millisecond)), Duration(((hi2 - lo2) / 2).Round(time.Millisecond))
	mm.evidence("window: second cycle: refused %s and accepted %s after its first transaction: window %s ± %s (%d transactions per window)",
		round(lo2), round(hi2), m.Window, m.WindowPrecision, n)
}

// retry waits until at and tries one transaction; done is true when the
// measurement must stop (cancelled, or the relay cannot be reached).
func (w *window) retry(at time.Time) (sent time.Time, ok, done bool) {
	mm := w.mm
	mm.progress("window: retrying in %s", round(time.Until(at)))
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-mm.ctx.Done():
		mm.cancelled()
		return time.Time{}, false, true
	case <-t.C:
	}
	for attempt := 0; ; attempt++ {
		if err := w.ensure(); err != nil {
			if err.Code >= 400 {
				return time.Now(), false, false // turned away at setup: a refused retry
			}
			if !mm.cancelled() {
				mm.m.WindowNote = "window not measured: a retry session failed" + failedAt(err) + ": " + err.Words()
			}
			return time.Time{}, false, true
		}
		sent, err := mm.transaction(w.s)
		switch {
		case err == nil:
			return sent, true, false
		case err.Code != 0:
			return sent, false, false
		case attempt > 0 || mm.cancelled():
			mm.m.WindowNote = "window not measured: " + err.Words()
			return time.Time{}, false, true
		}
		// The connection was lost, most likely to an idle timeout between
		// retries: once more on a fresh session.
	}
}

// ensure makes w.s a usable session: a new one when there is none, the
// old one broke, or it has collected enough refusals for Postfix to start
// slowing it down. The old one is closed first, so that a relay allowing
// one session at a time does not turn the new one away.
func (w *window) ensure() *smtpclient.Error {
	if w.s != nil && !w.s.broken() && w.s.refusals() < refusalsPerSession {
		return nil
	}
	if w.s != nil {
		w.s.Close()
		w.s = nil
	}
	s, err := w.mm.session()
	if err != nil {
		return err
	}
	w.s = s
	return nil
}

// round shortens a duration for evidence lines.
func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
