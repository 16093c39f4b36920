package send

import (
	"context"
	"fmt"
	"time"

	"github.com/mailroute/mailroute/send/journal"
)

// Streaming to a relay: several transactions in flight per session.
//
// What a user feels with a relay across the internet is messages per round
// trip: with DATA the content waits for the 354, one round trip per
// message at best. When the relay offers CHUNKING and PIPELINING, a worker
// streams transactions (smtpclient.Client.Stream: MAIL, RCPT and "BDAT n
// LAST" with the content, RFC 3030 with RFC 2920) and reads their replies
// in order, keeping up to k in flight.
//
// k is twice the session's bandwidth-delay product in messages, as TCP
// sizes its buffers: the least round trip seen for a transaction (the
// network and the server's own work, no queueing) over the time between
// replies (the pace the server keeps), doubled so that the server always
// has the next transaction read before it answers this one, plus two,
// between 2 and maxInFlight. A near relay gets a small k, a far one a
// large k. A new session starts at 2 and widens by one per reply (slow
// start), and a refusal that is not the recipient's (internal/replies)
// narrows it to 1, so a relay refusing the sender is asked no more often
// than its breaker allows. (Measured at 50 ms: once the bandwidth-delay product, k was 10
// and 485 msg/s; at least 24, 531 msg/s: the server's pace.) The jobs
// taken ahead are topped up to fill the window, and each is streamed once
// its record is on disk, so the journal's commit latency is hidden too.
//
// Crash guarantee (README "Design: the journal"): a transaction's record
// says data_sent, on disk, before a byte of it is written, so after kill
// -9 a recipient in flight is "unknown", never sent twice. Per session that
// is at most maxInFlight in flight or taken ahead to fill the window, the
// maxLookahead taken ahead for the journal's commits, and the one being
// made ready: 32 + 16 + 1. A
// run that ends any other way reads every reply in flight first.
//
// Streaming is off under a rate limit: the limit sets the pace, not the
// round trip, and a message in flight would hold its slot.
const maxInFlight = 32

// flight is a worker's streaming state across its sessions.
type flight struct {
	free   []*slot  // slots not in use, reused
	queue  []*slot  // in flight, oldest first
	on     *session // the session k is for: a new one starts small again
	k      int      // the window now: grows by one per reply up to want, back to 1 after a held refusal
	want   int      // the window the measurements call for
	minRTT time.Duration
	gap    time.Duration // between replies: an average
	last   time.Time     // the last reply
}

func (f *flight) slot(e *Engine) *slot {
	if n := len(f.free); n > 0 {
		sl := f.free[n-1]
		f.free = f.free[:n-1]
		return sl
	}
	return e.newSlot()
}

// measure updates k from a reply to a transaction sent at sent.
func (f *flight) measure(now, sent time.Time) {
	if rtt := now.Sub(sent); f.minRTT == 0 || rtt < f.minRTT {
		f.minRTT = rtt
	}
	if !f.last.IsZero() {
		d := now.Sub(f.last)
		if f.gap == 0 {
			f.gap = d
		} else {
			f.gap += (d - f.gap) / 8
		}
	}
	f.last = now
	k := maxInFlight
	if f.gap > 0 {
		k = int(2*f.minRTT/f.gap) + 2
	}
	f.want = max(2, min(k, maxInFlight))
}

// opened is the window of a new session: two, growing from there (grow),
// as TCP's slow start does, so that a relay that refuses the sender is
// asked about as often as without streaming before its breaker opens.
func (f *flight) opened() { f.k = 2 }

// grow widens the window by one after a reply that was not a held
// refusal (so it doubles each round trip), up to what is wanted; a held
// refusal shrinks it to one: the next transaction waits for the verdict
// on this one.
func (f *flight) grow(held bool) {
	if held {
		f.k = 1
		return
	}
	f.k = min(f.k+1, max(f.want, 2))
}

// relayStream carries jobs over s, first being the job the worker holds
// (prepared in w.cur), with up to k transactions in flight. It returns the
// session if it may carry more, else closes it and returns nil.
func (e *Engine) relayStream(ctx context.Context, t *relayTarget, w *worker, s *session, first *job) *session {
	f := w.flight
	if f.on != s {
		f.on = s
		f.opened()
	}
	// add streams j, whose message is in sl: its record must say data_sent
	// and be on disk first (the hooks wait for it).
	add := func(sl *slot, j *job) bool {
		if !j.marked {
			e.record(j, journal.StateDataSent)
		}
		if err := s.Stream(&sl.msg); err != nil {
			res := e.interpret(ctx, s, "", stageOf(err), err)
			e.afterRelay(t, w, j, res)
			f.free = append(f.free, sl)
			return false
		}
		sl.sent = time.Now() // Flush follows the fill at once
		f.queue = append(f.queue, sl)
		e.streamed.Add(1)
		for n, m := int64(len(f.queue)), e.maxInFlight.Load(); n > m && !e.maxInFlight.CompareAndSwap(m, n); m = e.maxInFlight.Load() {
		}
		return true
	}
	sl := w.cur
	w.cur = f.slot(e)
	add(sl, first)
	// dropped: a reply said this session is done for (a temporary refusal
	// of the sender, a cap on its messages). The transactions in flight
	// behind it were refused for the same reason, not on their own: they
	// go again on the next session, and the refusal counts once, as it
	// would have without streaming.
	dropped := false
	for {
		// Fill: taken-ahead jobs whose records are on disk go at once; the
		// worker waits for a commit (or a job) only when nothing is in flight.
		for !dropped && len(f.queue) < f.k && s.CanStream() && s.Room() && t.isDown() == nil {
			var j *job
			switch {
			case len(w.ahead) > 0 && (len(f.queue) == 0 || e.journal.Durable(w.ahead[0].ticket)):
				j = w.ahead[0]
				w.ahead = w.ahead[1:]
			case len(w.ahead) == 0 && len(f.queue) == 0:
				j = w.take(ctx)
			}
			if j == nil {
				break
			}
			j.target = t.name
			sl := f.slot(e)
			if res := e.render(sl, j); res != nil {
				f.free = append(f.free, sl)
				e.settle(j, *res)
				continue
			}
			add(sl, j)
		}
		if len(f.queue) == 0 {
			break
		}
		_ = s.Flush() // a failure shows in the results
		sl := f.queue[0]
		f.queue = f.queue[1:]
		_, reply, st, err := s.Result()
		f.measure(time.Now(), sl.sent)
		j := sl.j
		res := e.interpret(ctx, s, reply, st, err)
		switch {
		case s.ChunkingFailed():
			// BDAT offered, not understood: DATA with this relay from now
			// on; nothing of this transaction was delivered.
			if t.noBDAT.CompareAndSwap(false, true) && e.opts.Notify != nil {
				e.opts.Notify(fmt.Sprintf("relay %s offers CHUNKING but did not take BDAT (%s): DATA, one message per round trip, for the rest of the run", t.name, err))
			}
			w.ahead = append([]*job{j}, w.ahead...)
		case dropped && res.se != nil && res.se.Reply() && res.state != journal.StateSent:
			w.ahead = append([]*job{j}, w.ahead...)
		default:
			e.afterRelay(t, w, j, res)
			dropped = dropped || res.drop
			f.grow(res.held)
		}
		f.free = append(f.free, sl)
		// Enough taken ahead to fill the window, and what a commit takes:
		// a job is streamed only once its record is on disk.
		w.takeAheadTo(f.k - len(f.queue) + w.wantAhead())
	}
	if dropped || s.Broken() || !s.Room() {
		s.close()
		return nil
	}
	s.idle = e.now()
	return s
}

// afterRelay settles a streamed transaction (settleRelay), except one
// that never reached the server: it goes first on the next session.
func (e *Engine) afterRelay(t *relayTarget, w *worker, j *job, res result) {
	if res.relayFault != nil {
		t.markDown(res.relayFault)
	}
	if res.stale && !res.interrupted && res.journalErr == nil {
		w.ahead = append([]*job{j}, w.ahead...)
		return
	}
	e.settleRelay(t, j, res)
}
