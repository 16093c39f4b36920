package send

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/replies"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/send/journal"
	"github.com/mailroute/mailroute/send/list"
)

// stageOf is how far a transaction Stream refused got: an address the
// server cannot take is the recipient's (as DeliverThen says), anything
// else left nothing said.
func stageOf(err error) smtpclient.Stage {
	var se *smtpclient.Error
	if errors.As(err, &se) && se.Permanent {
		return smtpclient.StageRcpt
	}
	return smtpclient.StageMail
}

// job is one recipient on its way through this run.
type job struct {
	rcpt *list.Recipient // its Line is the journal key
	// rec is the record as last written, except that from the attempt to
	// its outcome State stays StateSending ("the dot was not written")
	// while the journal may already say data_sent.
	rec      journal.Record
	tries    int // attempts in this run
	firstTry time.Time
	usedNow  bool           // the one immediate retry after a 452 was spent
	target   string         // what the attempt went to: a relay's host:port, or the domain (direct)
	recorded bool           // the attempt is in the journal's queue
	marked   bool           // ... as data_sent: the dot needs no record of its own
	ticket   journal.Ticket // the attempt's last record, which the waits before RCPT and the dot are for
	due      time.Time
	index    int // in the retry heap
}

// result is what one attempt came to.
type result struct {
	state       journal.State
	reason      string // the server's words, or what went wrong
	code        int
	drop        bool // close the session
	stale       bool // a reused session failed before the recipient was named: redo on a fresh one
	retryNow    bool // 452: a new transaction may succeed at once
	fallback    bool
	interrupted bool              // the run stopped before the server saw the recipient
	relayFault  *smtpclient.Error // relay mode: the relay refused us, not the recipient
	noSession   bool              // no session could be had: no MAIL FROM was sent
	// verdict is what the server's refusal means (nil: no refusal, or
	// not a reply); se is the refusal itself.
	verdict    *replies.Verdict
	se         *smtpclient.Error
	held       bool  // the refusal is not the recipient's fault: it stays pending
	journalErr error // the journal could not be written
}

// judge runs one transaction on s and decides what its outcome means.
// This is the whole reply policy, after RFC 5321 §4.2.1 and §4.5.3.1.10.
// next, if not nil, may start with m's final dot (session.deliverThen).
func (e *Engine) judge(ctx context.Context, s *session, m, next *txn) result {
	reply, st, err := s.DeliverThen(m, next)
	return e.interpret(ctx, s, reply, st, err)
}

// interpret decides what one transaction's outcome on s means: the reply
// to its end, how far it got, and the error.
func (e *Engine) interpret(ctx context.Context, s *session, reply string, st smtpclient.Stage, err error) result {
	if err == nil {
		return result{state: journal.StateSent, reason: reply}
	}
	var je smtpclient.HookError
	if errors.As(err, &je) {
		e.fail(&Error{Err: je.Err, Hint: "the journal could not be written; check the disk (space, permissions)"})
		return result{state: journal.StatePending, interrupted: true, drop: true, journalErr: je.Err}
	}
	se := smtpclient.Classify("DATA", err)
	res := result{reason: se.Error(), code: se.Code, drop: s.Broken(), se: se}
	v, isReply := replies.OfError(se)
	if isReply {
		res.verdict = &v
	}
	switch {
	case st == smtpclient.StageDot && !se.Reply():
		// RFC 1047: the dot went out, the reply did not come back. The
		// server may have the message; sending again could duplicate it.
		res.state, res.drop = journal.StateUnknown, true
	case !se.Reply() && ctx.Err() != nil:
		// Stopped hard before the dot: the server cannot have the message.
		res.state, res.drop, res.interrupted = journal.StatePending, true, true
	case !se.Reply():
		// Reset, timeout, closed: this connection is done for.
		res.state, res.drop = journal.StateDeferred, true
		res.stale = st == smtpclient.StageMail
	case st == smtpclient.StageMail && se.Permanent && e.cfg.Mode != config.ModeDirect:
		// The relay refuses our sender (or wants a login): it would refuse
		// every recipient the same way.
		res.state, res.drop, res.relayFault = journal.StatePending, true, se
	case isReply && v.HoldsRecipient():
		// Not the recipient's fault (the sender's authentication, the
		// login, a blocklist, a quota: internal/replies): the recipient
		// stays pending and costs nothing; the target's breaker counts it.
		res.state, res.held = journal.StatePending, true
		// A temporary one may be about this session (a cap on its
		// messages): the next try gets a fresh one.
		res.drop = res.drop || !se.Permanent
	case se.Code == 421:
		// RFC 5321 §3.8: the server is closing the channel.
		res.state, res.drop = journal.StateDeferred, true
	case se.Code == 452 && st == smtpclient.StageRcpt:
		// RFC 5321 §4.5.3.1.10: too many recipients. Each transaction has
		// one (messages are personal), so the server counts per session:
		// a new session, and at once.
		res.state, res.drop, res.retryNow = journal.StateDeferred, true, true
	case !se.Permanent:
		res.state = journal.StateDeferred
	default:
		res.state = journal.StateFailed
	}
	return res
}

// settle records the outcome of j's attempt and decides what comes next:
// done, a retry within this run, or deferred until a re-run.
func (e *Engine) settle(j *job, res result) {
	j.recorded, j.marked = false, false
	now := e.now()
	rec := &j.rec
	rec.Fallback = res.fallback
	switch {
	case res.held:
		e.holdBack(j, res)
		return
	case res.interrupted || res.state == journal.StatePending:
		e.putBack(j)
		return
	case res.state == journal.StateDeferred:
		j.tries++
		if j.firstTry.IsZero() {
			j.firstTry = now
		}
		delay := e.backoff(j.tries)
		if res.retryNow && !j.usedNow {
			delay, j.usedNow = 0, true
		}
		rec.State, rec.NextAt, rec.Reason = journal.StateDeferred, now.Add(delay), res.reason
		e.journal.Put(j.rcpt.Line, *rec)
		within := time.Duration(e.cfg.Retry.Within)
		if e.soft.Err() == nil && j.tries < e.cfg.Retry.Attempts && rec.NextAt.Sub(j.firstTry) <= within &&
			e.retry.push(j, rec.NextAt) {
			e.progress.retrying.Add(1)
			return
		}
	default:
		rec.State, rec.NextAt, rec.Reason = res.state, time.Time{}, res.reason
		e.journal.Put(j.rcpt.Line, *rec)
	}
	e.finish(j, rec.State, rec.Reason)
}

// holdBack settles a recipient whose attempt drew a refusal that is not
// its fault. A temporary one is tried again within the run (counted
// against retry.attempts, as any retry) while the target's breaker is
// closed; otherwise the recipient stays pending, with the refusal as its
// reason, for a re-run once the cause is mended. It is never failed.
func (e *Engine) holdBack(j *job, res result) {
	now := e.now()
	j.tries++
	if j.firstTry.IsZero() {
		j.firstTry = now
	}
	j.rec.Reason, j.rec.NextAt = res.reason, time.Time{}
	// Recorded before the retry queue may hand the job to another worker.
	e.markPending(j)
	v, _ := e.refusals.Paused(j.target)
	delay := e.backoff(j.tries)
	if v == nil && !res.se.Permanent && e.soft.Err() == nil && j.tries < e.cfg.Retry.Attempts &&
		now.Add(delay).Sub(j.firstTry) <= time.Duration(e.cfg.Retry.Within) && e.retry.push(j, now.Add(delay)) {
		e.progress.retrying.Add(1)
		return
	}
	e.refusals.Hold(j.target, res.verdict)
	e.finish(j, journal.StatePending, j.rec.Reason)
}

// putBack returns a job the run could not try: it is recorded pending
// again (the attempt never reached the recipient, whatever data_sent
// record it had) and a re-run sends it.
func (e *Engine) putBack(j *job) {
	e.markPending(j)
	e.finish(j, j.rec.State, j.rec.Reason)
}

// markPending records j pending again, its attempt uncharged, unless it
// has an outcome already.
func (e *Engine) markPending(j *job) {
	j.recorded, j.marked = false, false
	if j.rec.State == journal.StateSending {
		j.rec.Attempts--
	}
	if j.rec.State == journal.StateSending || j.rec.State == journal.StatePending {
		j.rec.State = journal.StatePending
		e.journal.Put(j.rcpt.Line, j.rec)
	}
}

// finish counts j's outcome for this run and lets it go.
func (e *Engine) finish(j *job, st journal.State, reason string) {
	var next time.Time
	if st == journal.StateDeferred {
		next = j.rec.NextAt
	}
	if st != journal.StatePending {
		e.tally.add(j.rcpt.Domain, st, reason, next, j.rec.Fallback, j.rcpt.Addr)
		e.tally.addRun(st)
		e.progress.count(st, true)
	}
	e.active.Done()
}

// backoff is the wait after the n-th temporary failure: Retry.Backoff
// doubled each time, at most Retry.MaxBackoff, then perturbed to between
// half and all of it, so that recipients deferred together (a burst of
// 421s) do not all come back at the same instant.
func (e *Engine) backoff(n int) time.Duration {
	d := time.Duration(e.cfg.Retry.Backoff)
	maxD := time.Duration(e.cfg.Retry.MaxBackoff)
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	if d <= 1 {
		return d
	}
	e.mu.Lock()
	j := e.rnd.Int64N(int64(d/2) + 1)
	e.mu.Unlock()
	return d/2 + time.Duration(j)
}

// retryQueue holds deferred jobs until they are due, earliest first. It is
// bounded: memory must not grow with the list, and a recipient that does
// not fit waits for a re-run, which retries deferred recipients at once.
type retryQueue struct {
	mu     sync.Mutex
	h      jobHeap
	max    int
	closed bool // the scheduler has stopped: push refuses
	wake   chan struct{}
}

func newRetryQueue(n int) *retryQueue {
	return &retryQueue{max: n, wake: make(chan struct{}, 1)}
}

func (q *retryQueue) push(j *job, due time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.h) >= q.max {
		return false
	}
	j.due = due
	heap.Push(&q.h, j)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// schedule moves due retries to the workers until the run stops; then the
// jobs still waiting stay deferred (the journal already says so).
func (e *Engine) schedule() {
	q := e.retry
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var j *job
		wait := time.Hour
		if len(q.h) > 0 {
			if d := q.h[0].due.Sub(e.now()); d <= 0 {
				j = heap.Pop(&q.h).(*job)
			} else {
				wait = d
			}
		}
		q.mu.Unlock()
		if j != nil {
			e.progress.retrying.Add(-1)
			select {
			case e.jobs <- j:
				continue
			case <-e.soft.Done():
				e.finish(j, j.rec.State, j.rec.Reason) // deferred, or pending when a refusal held it back
			}
		}
		if e.soft.Err() != nil {
			q.mu.Lock()
			left := q.h
			q.h, q.closed = nil, true
			q.mu.Unlock()
			for _, j := range left {
				e.progress.retrying.Add(-1)
				e.finish(j, j.rec.State, j.rec.Reason) // deferred, or pending when a refusal held it back
			}
			return
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-q.wake:
		case <-e.soft.Done():
		}
	}
}

type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(a, b int) bool { return h[a].due.Before(h[b].due) }
func (h jobHeap) Swap(a, b int) {
	h[a], h[b] = h[b], h[a]
	h[a].index, h[b].index = a, b
}
func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.index = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}

// messageDigest hashes what makes the messages what they are, so that a
// re-run with another message is refused rather than mixing two mailings
// in one journal.
func messageDigest(textPath, htmlPath string, cfg *config.Config) (string, error) {
	h := sha256.New()
	for _, p := range []string{textPath, htmlPath} {
		if p == "" {
			fmt.Fprintf(h, "-\n")
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d\n", len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "from=%q\n", cfg.From)
	if d := cfg.DKIM; d != nil {
		fmt.Fprintf(h, "dkim=%q %q %q\n", d.Domain, d.Selector, strings.Join(d.Headers, ","))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
