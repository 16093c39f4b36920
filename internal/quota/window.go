// Package quota holds sending limits exactly: "at most N messages in any
// window of length W", for several limits at once, kept between runs in a
// ledger on disk (README.md, "Limits and quotas").
//
// Relays and providers count messages in fixed windows whose phase the
// client cannot see (Postfix anvil starts one at the first message after the
// last window ended; providers reset hourly or daily counters at times of
// their own). A token bucket is wrong against them: its burst lets a
// window's worth through at the end of one window and again at the start of
// the next. A sliding window is right for every phase: if no window of
// length W anywhere holds more than N, no fixed window of that length can.
//
// Two facts of the peer stretch a window, and the limiter allows for both:
//   - Granularity: counters that keep whole seconds (anvil compares
//     start + unit < now in time_t) hold a W window for up to W + 1 s.
//   - Latency: the server counts a message when its MAIL FROM arrives,
//     some time after the client took the slot. A message counts from the
//     moment MAIL FROM was answered (Token.Done), the latest the server can
//     have counted it; while it is in flight it counts as the newest.
package quota

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Granularity is what a window is stretched by for counters that keep
// whole seconds (Postfix anvil, and the daily counters providers reset).
const Granularity = time.Second

// Limit is at most N messages in any window of length Window.
type Limit struct {
	N      int
	Window time.Duration
}

// String writes the limit as a config would ("500/d", "20/10s").
func (l Limit) String() string {
	n := fmt.Sprint(l.N)
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if l.Window%u.d == 0 {
			if k := l.Window / u.d; k != 1 {
				return n + "/" + fmt.Sprint(int64(k)) + u.name
			}
			return n + "/" + u.name
		}
	}
	return n + "/" + l.Window.String()
}

// span is how long a message counts against l: the window stretched by
// the counter's granularity (windows under a second are not stretched: no
// known counter keeps them).
func (l Limit) span() time.Duration {
	s := l.Window
	if l.Window >= time.Second {
		s += Granularity
	}
	return s
}

// Limiter holds one account's limits (a relay login, or the whole
// mailing). It is safe for concurrent use. The nil *Limiter is no limit.
type Limiter struct {
	name   string // for words: "smtp.relay.example:587"
	limits []Limit
	ledger *Ledger // nil: this run only
	now    func() time.Time

	mu     sync.Mutex
	events []event       // ascending by time; own and (through the ledger) other runs'
	wake   chan struct{} // closed and replaced when an event is done or cancelled
}

// event is one message: at is when the server counted it at the latest
// (its MAIL FROM was answered), or, while open (this run's message not yet
// answered), when its slot was taken.
type event struct {
	at   time.Time
	open bool
}

// New returns a limiter for limits (none: nil, no limit). name says whose
// limits they are in messages; ledger, if not nil, keeps the events between
// runs and shares them with other runs at once; now is the clock (nil:
// time.Now).
func New(name string, limits []Limit, ledger *Ledger, now func() time.Time) (*Limiter, error) {
	var ls []Limit
	for _, l := range limits {
		if l.N > 0 && l.Window > 0 {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		return nil, nil
	}
	if now == nil {
		now = time.Now
	}
	lim := &Limiter{name: name, limits: ls, ledger: ledger, now: now, wake: make(chan struct{})}
	if ledger != nil {
		past, err := ledger.sync()
		if err != nil {
			return nil, err
		}
		lim.merge(past)
		lim.prune(now())
	}
	return lim, nil
}

// Name is whose limits these are.
func (l *Limiter) Name() string { return l.name }

// Limits are the limits held.
func (l *Limiter) Limits() []Limit { return slices.Clone(l.limits) }

// Hold is what keeps a message from going now: which limit, and when the
// next slot opens. Open is the zero time when the limit waits for a
// message in flight to be answered (it opens soon after).
type Hold struct {
	Name  string // the limiter's name
	Limit Limit
	Open  time.Time
}

func (h Hold) String() string {
	return fmt.Sprintf("%s's %s", h.Name, h.Limit)
}

// ErrTooLong is returned by Wait when the next slot is further away than
// the longest wait allowed.
type ErrTooLong struct{ Hold Hold }

func (e *ErrTooLong) Error() string {
	return fmt.Sprintf("%s: the next message may go at %s", e.Hold, e.Hold.Open.Format(time.DateTime))
}

// next is when one more message may go, by every limit: the zero time if
// now; hold says which limit decides. Called with mu held.
func (l *Limiter) next(now time.Time) (at time.Time, hold Hold, blocked bool) {
	// A message in flight counts as the most recent whatever its slot's
	// time: the server may count it any moment now.
	var closed []time.Time
	open := 0
	for _, e := range l.events {
		if e.open {
			open++
		} else {
			closed = append(closed, e.at)
		}
	}
	for _, lim := range l.limits {
		span := lim.span()
		from := now.Add(-span)
		i, _ := slices.BinarySearchFunc(closed, from, func(e, t time.Time) int { return e.Compare(t) })
		for i < len(closed) && !closed[i].After(from) {
			i++
		}
		if len(closed)-i+open < lim.N {
			continue
		}
		if open >= lim.N {
			// The window is full of messages whose count time is not known
			// yet: wait for a reply.
			return time.Time{}, Hold{Name: l.name, Limit: lim}, true
		}
		// The oldest of the last N must leave the window first.
		if t := closed[len(closed)-(lim.N-open)].Add(span); t.After(at) {
			at, hold = t, Hold{Name: l.name, Limit: lim, Open: t}
		}
	}
	return at, hold, false
}

// Token is one message's slot, taken by Wait. Exactly one of Done and
// Cancel must be called; both do nothing on the nil Token.
type Token struct {
	parts []tokenPart
}

type tokenPart struct {
	l  *Limiter
	at time.Time
}

// Done says the server has counted the message: countedAt is when its
// MAIL FROM was answered (an upper bound of when the server counted it).
func (t *Token) Done(countedAt time.Time) {
	if t == nil {
		return
	}
	for _, p := range t.parts {
		p.l.done(p.at, countedAt)
	}
	t.parts = nil
}

// Cancel gives the slot back: the message never reached the server.
func (t *Token) Cancel() {
	if t == nil {
		return
	}
	for _, p := range t.parts {
		p.l.cancel(p.at)
	}
	t.parts = nil
}

func (l *Limiter) done(at, countedAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.remove(at)
	if countedAt.Before(at) {
		countedAt = at
	}
	l.insert(countedAt)
	// The slot's record moves to the count time: a cancel and a new
	// record. Not synced: lost in a crash, the slot's own, slightly
	// earlier, time stays.
	l.record(false, -at.UnixNano(), countedAt.UnixNano())
	l.signal()
}

// record appends records to the ledger (best effort: a record that cannot
// be written leaves the ledger on the safe side, a slot counted or counted
// early). What other runs wrote meanwhile is read first, so that ours are
// appended past it. Called with mu held.
func (l *Limiter) record(durable bool, values ...int64) {
	if l.ledger == nil || l.ledger.lock() != nil {
		return
	}
	defer l.ledger.unlock()
	if ev, err := l.ledger.readNew(); err == nil {
		l.merge(ev)
	}
	for _, v := range values {
		if l.ledger.write(v, durable) != nil {
			return
		}
	}
}

// remove drops this run's open event at at.
func (l *Limiter) remove(at time.Time) {
	for i := range l.events {
		if l.events[i].open && l.events[i].at.Equal(at) {
			l.events = slices.Delete(l.events, i, i+1)
			return
		}
	}
}

// insert adds a closed event in order; false if one at that time is held.
func (l *Limiter) insert(at time.Time) bool {
	i, found := slices.BinarySearchFunc(l.events, at, func(x event, t time.Time) int { return x.at.Compare(t) })
	if found {
		return false
	}
	l.events = slices.Insert(l.events, i, event{at: at})
	return true
}

func (l *Limiter) cancel(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.remove(at)
	l.record(true, -at.UnixNano())
	l.signal()
}

func (l *Limiter) signal() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// merge adds events read from the ledger (other runs', or earlier ones').
func (l *Limiter) merge(ev []ledgerEvent) {
	for _, e := range ev {
		if e.cancel {
			i := slices.IndexFunc(l.events, func(x event) bool { return !x.open && x.at.Equal(e.at) })
			if i >= 0 {
				l.events = slices.Delete(l.events, i, i+1)
			}
			continue
		}
		// An event already held is this run's own record, read again after
		// another run rewrote the file (times are unique in practice:
		// nanoseconds, and one run never repeats one).
		l.insert(e.at)
	}
}

// keep is how far back events matter: the longest span.
func (l *Limiter) keep() time.Duration {
	var k time.Duration
	for _, lim := range l.limits {
		k = max(k, lim.span())
	}
	return k
}

func (l *Limiter) prune(now time.Time) {
	from := now.Add(-l.keep())
	n := 0
	for n < len(l.events) && !l.events[n].open && l.events[n].at.Before(from) {
		n++
	}
	if n > 0 {
		l.events = slices.Delete(l.events, 0, n)
	}
}

// syncLocked reads what other runs wrote to the ledger since the last look.
// Called with mu held and the ledger locked.
func (l *Limiter) syncLocked() error {
	if l.ledger == nil {
		return nil
	}
	ev, err := l.ledger.readNew()
	if err != nil {
		return err
	}
	l.merge(ev)
	return nil
}

// Set is the limiters one message passes: the mailing's and its relay's.
// Nil limiters are left out.
type Set []*Limiter

// Of makes a Set of the non-nil limiters, in a fixed order (the order
// given): every run locks them in that order.
func Of(ls ...*Limiter) Set {
	var s Set
	for _, l := range ls {
		if l != nil {
			s = append(s, l)
		}
	}
	return s
}

// Waiting is told what holds a message back while Wait waits, and the zero
// Hold when nothing does any more.
type Waiting func(Hold)

// Wait takes a slot in every limiter of s: it returns at once when all
// have room, else waits. When the next slot is more than maxWait away
// (maxWait > 0) it returns *ErrTooLong without waiting. Waits are told to
// waiting (may be nil). The Token must be Done or Cancelled.
func (s Set) Wait(ctx context.Context, maxWait time.Duration, waiting Waiting) (*Token, error) {
	if len(s) == 0 {
		return &Token{}, ctx.Err()
	}
	told := false
	defer func() {
		if told && waiting != nil {
			waiting(Hold{})
		}
	}()
	for {
		tok, hold, wake, err := s.try()
		if err != nil || tok != nil {
			return tok, err
		}
		now := s[0].now()
		if !hold.Open.IsZero() && maxWait > 0 && hold.Open.Sub(now) > maxWait {
			return nil, &ErrTooLong{Hold: hold}
		}
		if waiting != nil {
			waiting(hold)
			told = true
		}
		// Without an opening time the limit waits for a reply in flight:
		// look again now and then all the same.
		d := time.Second
		if !hold.Open.IsZero() {
			d = hold.Open.Sub(now)
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		case <-wake:
			timer.Stop()
		}
	}
}

// try takes a slot in every limiter if all have room now. Otherwise it
// returns the latest hold and a channel closed when something changes in
// the limiter that holds.
func (s Set) try() (*Token, Hold, <-chan struct{}, error) {
	for i, l := range s {
		l.mu.Lock()
		if l.ledger != nil {
			if err := l.ledger.lock(); err != nil {
				l.mu.Unlock()
				s.unlock(i)
				return nil, Hold{}, nil, err
			}
		}
		if err := l.syncLocked(); err != nil {
			s.unlock(i + 1)
			return nil, Hold{}, nil, err
		}
	}
	now := s[0].now() // after the locks: other runs' records are older
	var (
		latest  time.Time
		hold    Hold
		wake    <-chan struct{}
		blocked bool
	)
	for _, l := range s {
		l.prune(now)
		at, h, b := l.next(now)
		switch {
		case b && !blocked:
			blocked, hold, wake = true, h, l.wake
		case !blocked && at.After(latest) && at.After(now):
			latest, hold, wake = at, h, l.wake
		}
	}
	if blocked || latest.After(now) {
		s.unlock(len(s))
		return nil, hold, wake, nil
	}
	tok := &Token{}
	var err error
	for _, l := range s {
		// Times are unique per limiter: a message taken in the same clock
		// tick as another goes a nanosecond after it.
		at := now
		for slices.ContainsFunc(l.events, func(e event) bool { return e.at.Equal(at) }) {
			at = at.Add(time.Nanosecond)
		}
		i, _ := slices.BinarySearchFunc(l.events, at, func(x event, t time.Time) int { return x.at.Compare(t) })
		l.events = slices.Insert(l.events, i, event{at: at, open: true})
		if l.ledger != nil && err == nil {
			err = l.ledger.append(at, l.keep())
		}
		tok.parts = append(tok.parts, tokenPart{l: l, at: at})
	}
	s.unlock(len(s))
	if err != nil {
		tok.Cancel()
		return nil, Hold{}, nil, fmt.Errorf("quota ledger: %w", err)
	}
	return tok, Hold{}, nil, nil
}

// unlock releases the first n limiters (and their ledgers).
func (s Set) unlock(n int) {
	for i := n - 1; i >= 0; i-- {
		if s[i].ledger != nil {
			s[i].ledger.unlock()
		}
		s[i].mu.Unlock()
	}
}

// Used is how many messages each limit of l already counts now: what
// earlier runs (and this one) used of it.
func (l *Limiter) Used() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	out := make([]int, len(l.limits))
	for i, lim := range l.limits {
		from := now.Add(-lim.span())
		for _, e := range l.events {
			if e.at.After(from) {
				out[i]++
			}
		}
	}
	return out
}

// IsTooLong reports whether err is an *ErrTooLong, and returns it.
func IsTooLong(err error) (*ErrTooLong, bool) {
	var e *ErrTooLong
	ok := errors.As(err, &e)
	return e, ok
}
