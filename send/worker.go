package send

import (
	"context"
	"strings"
	"time"

	"github.com/mailroute/mailroute/send/journal"
	"github.com/mailroute/mailroute/send/message"
)

// maxLookahead caps how many recipients a worker takes ahead of the one
// it is sending, each recorded data_sent at once.
//
// The journal must hold data_sent before a final dot is written, so that
// after a crash a recipient whose dot may have gone out is "unknown", never
// sent twice (RFC 1047). A group commit costs two fsyncs, longer than a
// whole transaction with a nearby server, so waiting for it before each dot
// would set the pace. Recorded when it is taken, the record of message i+K
// is committed while messages i to i+K-1 are sent, and is on disk when its
// turn comes: no transaction waits for the disk.
//
// K is no larger than that takes: the worker keeps it at the journal's
// commit latency (its pace plus a commit, see Journal.Latency) over its own
// time per message, plus two for jitter (wantAhead). With a relay across
// the internet a transaction outlasts a commit and K is 2 or 3; with a
// sink on loopback, 4,000 messages a second per session, it is about 10.
//
// The price is paid only in a crash (kill -9, power loss): the recipients
// a worker had taken ahead were never tried, yet the journal says
// data_sent, and the next run reports them unknown (not sent, and not
// retried without --retry-unknown). That is at most maxLookahead+1
// recipients per session (those taken ahead, and the one being sent if its
// dot had not gone out), never a duplicate. A run that ends any other way
// (end of the list, Ctrl-C, a relay down, a fatal error) puts back every
// recipient it took and did not try: pending again.
//
// Taking ahead is off under a rate limit: the next message waits for the
// rate, not the disk, and a recipient should not sit data_sent meanwhile.
// In direct mode a worker takes one ahead: a transaction with a distant MX
// lasts longer than a commit anyway, and more would hold recipients behind
// a slow MX while another worker could send them.
const maxLookahead = 16

// worker is what one worker goroutine reuses from message to message.
type worker struct {
	e        *Engine
	cur, nxt *slot  // the transaction in progress; the next, made ready to start with cur's dot
	ahead    []*job // taken and recorded data_sent, not started; oldest first
	maxAhead int    // 0 under a rate limit
	// last and per measure the worker's time per message (wantAhead).
	last   time.Time
	per    time.Duration
	flight *flight // streaming (stream.go)
	// chain: the next transaction may start with the current one's dot.
	// Relay mode only: in direct mode the next recipient's domain, hence
	// its session, is most likely another.
	chain bool
}

// slot is a transaction a worker has ready: the job and its message.
type slot struct {
	j   *job
	msg txn
	buf []byte // msg.Data's memory, reused from message to message
	// sent is when its transaction was streamed (stream.go): its round
	// trip is measured from then.
	sent time.Time
}

// newWorker makes a worker for relay mode (one session to one relay) or
// direct mode; limited: a rate limit applies to it.
func (e *Engine) newWorker(limited, relay bool) *worker {
	w := &worker{e: e, cur: e.newSlot(), nxt: e.newSlot(), chain: relay, flight: &flight{}}
	switch {
	case limited:
	case relay:
		w.maxAhead = maxLookahead
	default:
		w.maxAhead = 1
	}
	w.ahead = make([]*job, 0, w.maxAhead)
	return w
}

func (e *Engine) newSlot() *slot {
	sl := &slot{}
	// The journal must hold the job's last record: the attempt before RCPT
	// names the recipient, data_sent before the dot. For a job taken ahead
	// both are the one data_sent record, on disk long before.
	wait := func() error { return e.journal.Wait(sl.j.ticket) }
	sl.msg.BeforeRcpt, sl.msg.BeforeDot = wait, wait
	// A job not taken ahead is recorded data_sent once the server took the
	// recipient, and BeforeDot waits for it. Between the two the record
	// may be on disk while the dot is not: a crash then leaves "unknown"
	// for a message never sent, the safe side of the line.
	sl.msg.AfterRcpt = func() {
		if !sl.j.marked {
			e.record(sl.j, journal.StateDataSent)
		}
	}
	return sl
}

// wantAhead is how many jobs the worker should have taken ahead now: as
// many as it sends while a record waits for its commit, and two more.
// It is called once per message, and measures the time per message: an
// average that follows a faster pace at once and a slower one slowly, so
// that one slow message (a retry, a wait for the disk) does not shrink
// the lookahead and cause more waits.
func (w *worker) wantAhead() int {
	if w.maxAhead <= 1 {
		return w.maxAhead
	}
	now := time.Now()
	if !w.last.IsZero() {
		switch d := now.Sub(w.last); {
		case w.per == 0:
			w.per = d
		case d < w.per:
			w.per = (w.per + d) / 2
		default:
			w.per += (d - w.per) / 16
		}
	}
	w.last = now
	if w.per <= 0 {
		return 2
	}
	k := int(w.e.journal.Latency()/w.per) + 2
	return min(k, w.maxAhead)
}

// takeAhead tops the worker's lookahead up from the jobs on offer now,
// without waiting for one, and records each as data_sent.
func (w *worker) takeAhead() { w.takeAheadTo(w.wantAhead()) }

// takeAheadTo tops the lookahead up to want jobs.
func (w *worker) takeAheadTo(want int) {
	for len(w.ahead) < want && w.e.soft.Err() == nil {
		select {
		case n := <-w.e.jobs:
			w.e.record(n, journal.StateDataSent)
			w.ahead = append(w.ahead, n)
		default:
			return
		}
	}
}

// take returns the oldest job taken ahead, if any, else the next one.
func (w *worker) take(ctx context.Context) *job {
	if len(w.ahead) == 0 {
		return w.e.take(ctx)
	}
	if w.e.soft.Err() != nil { // stopping: they were taken, not started
		w.abandon()
		return nil
	}
	j := w.ahead[0]
	n := copy(w.ahead, w.ahead[1:])
	w.ahead[n] = nil
	w.ahead = w.ahead[:n]
	return j
}

// abandon puts back the jobs taken ahead when the worker stops.
func (w *worker) abandon() { w.giveBack(w.e.putBack) }

// giveBack hands every job taken ahead to fn, which must settle it or pass
// it on.
func (w *worker) giveBack(fn func(*job)) {
	for _, j := range w.ahead {
		fn(j)
	}
	clear(w.ahead)
	w.ahead = w.ahead[:0]
	w.nxt.j = nil
}

// next returns the transaction to start with the current one's final dot:
// the oldest job taken ahead, made ready now, if its record is on disk (it
// names its recipient with that dot, and the dot must not wait). nil when
// there is none.
func (w *worker) next() *txn {
	if !w.chain || len(w.ahead) == 0 {
		return nil
	}
	n := w.ahead[0]
	if w.nxt.j != n && w.e.render(w.nxt, n) != nil {
		return nil // it fails again when its turn comes, and is settled then
	}
	if !w.e.journal.Durable(n.ticket) {
		return nil
	}
	return &w.nxt.msg
}

// record queues j's attempt: the "sending" record, or data_sent when the
// final dot may follow before another record is written. In memory the
// state is StateSending either way, until the outcome.
func (e *Engine) record(j *job, st journal.State) {
	if !j.recorded {
		j.rec.State = journal.StateSending
		j.rec.Attempts++
		j.recorded = true
	}
	rec := j.rec
	rec.State = st
	j.ticket = e.journal.Put(j.rcpt.Line, rec)
	j.marked = st == journal.StateDataSent
}

// prepare makes j's transaction ready (it may be already, from next),
// records the attempt unless that was done when j was taken ahead (not
// waiting for the commit: RCPT waits for it), and takes ahead. A result is
// returned when the recipient is settled without SMTP.
func (e *Engine) prepare(w *worker, j *job) (*txn, *result) {
	if w.nxt.j == j {
		w.cur, w.nxt = w.nxt, w.cur
	} else if res := e.render(w.cur, j); res != nil {
		return nil, res
	}
	w.nxt.j = nil
	if !j.recorded {
		e.record(j, journal.StateSending)
	}
	w.takeAhead()
	return &w.cur.msg, nil
}

// render makes j's message in sl.
func (e *Engine) render(sl *slot, j *job) *result {
	sl.j = nil
	r, err := e.tmpl.Render(j.rcpt, message.RenderOptions{Now: e.now(), Signer: e.signer, Buf: sl.buf})
	if err != nil {
		return &result{state: journal.StateFailed, reason: "the message could not be made: " + err.Error()}
	}
	from := e.cfg.From
	if from == "" {
		from = r.From
	}
	if e.fromDomain.Load() == nil {
		if _, d, ok := strings.Cut(from, "@"); ok {
			e.fromDomain.Store(&d)
		}
	}
	sl.j = j
	if e.signer == nil {
		sl.buf = r.Data // a signed message is new memory: keep the unsigned buffer then
	}
	sl.msg.From, sl.msg.To, sl.msg.Data = from, j.rcpt.Addr, r.Data
	return nil
}
