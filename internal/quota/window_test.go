package quota

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clock is a fake clock the tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// anvil is Postfix anvil's message rate counter (anvil.c,
// ANVIL_REMOTE_INCR_RATE): whole seconds, and a window that is reset by
// the first event after start + unit < now. It refuses the event past limit.
type anvil struct {
	unit, limit int64
	start       int64
	count       int64
}

func (a *anvil) event(t time.Time) (refused bool) {
	now := t.Unix()
	if a.start+a.unit < now {
		a.start, a.count = now, 0
	}
	a.count++
	return a.count > a.limit
}

// fixedWindows counts, for a counter of window w starting at phase, the
// largest number of events in any one of its windows.
func fixedWindows(events []time.Time, phase time.Time, w time.Duration) int {
	most, cur := 0, 0
	var k int64 = -1 << 62
	for _, e := range events {
		idx := int64(e.Sub(phase) / w)
		if e.Before(phase) {
			idx--
		}
		if idx != k {
			k, cur = idx, 0
		}
		cur++
		most = max(most, cur)
	}
	return most
}

// drive sends as fast as the set allows for d of fake time, each message
// counted after a random latency up to maxLat, and returns the counted
// times (when the server saw each MAIL FROM).
func drive(t *testing.T, c *clock, s Set, d time.Duration, maxLat time.Duration, rnd *rand.Rand) []time.Time {
	t.Helper()
	end := c.t.Add(d)
	var counted []time.Time
	for c.t.Before(end) {
		tok, hold, _, err := s.try()
		if err != nil {
			t.Fatal(err)
		}
		if tok == nil {
			if hold.Open.IsZero() {
				t.Fatal("held with no opening time and nothing in flight")
			}
			c.t = hold.Open
			continue
		}
		lat := time.Duration(0)
		if maxLat > 0 {
			lat = time.Duration(rnd.Int64N(int64(maxLat)))
		}
		seen := c.t.Add(lat / 2) // the server counts it on the way
		c.t = c.t.Add(lat)       // the reply comes back
		tok.Done(c.t)
		counted = append(counted, seen)
	}
	return counted
}

// TestWindowHoldsEveryFixedPhase is the property the issue asks for: sent
// as fast as allowed, no fixed window of any phase (and no anvil counter
// started at any sub-second offset) sees more than N, and the limiter is
// not much slower than the limit.
func TestWindowHoldsEveryFixedPhase(t *testing.T) {
	cases := []struct {
		limits []Limit
		lat    time.Duration
	}{
		{[]Limit{{20, 10 * time.Second}}, 0},
		{[]Limit{{20, 10 * time.Second}}, 300 * time.Millisecond},
		{[]Limit{{3, time.Hour}}, 50 * time.Millisecond},
		{[]Limit{{5, 10 * time.Second}, {12, time.Minute}}, 80 * time.Millisecond},
		{[]Limit{{30, time.Minute}, {300, time.Hour}, {500, 24 * time.Hour}}, 20 * time.Millisecond},
		{[]Limit{{1, time.Second}}, 10 * time.Millisecond},
	}
	for _, tc := range cases {
		for seed := range uint64(5) {
			rnd := rand.New(rand.NewPCG(seed, 7))
			c := &clock{t: time.Unix(1_700_000_000, int64(rnd.Int64N(int64(time.Second))))}
			l, err := New("relay", tc.limits, nil, c.now)
			if err != nil {
				t.Fatal(err)
			}
			longest := tc.limits[len(tc.limits)-1].Window
			for _, lim := range tc.limits {
				longest = max(longest, lim.Window)
			}
			ev := drive(t, c, Of(l), 3*longest+longest/3, tc.lat, rnd)
			for _, lim := range tc.limits {
				// Fixed windows of every phase, in steps of a 50th of the window.
				for k := range 50 {
					phase := ev[0].Add(time.Duration(k) * lim.Window / 50)
					if got := fixedWindows(ev, phase, lim.Window); got > lim.N {
						t.Fatalf("%v lat %s seed %d: a fixed %s window at phase %d/50 holds %d", tc.limits, tc.lat, seed, lim.Window, k, got)
					}
				}
				// Anvil, whose whole-second windows last up to W+1 s.
				if lim.Window >= time.Second {
					a := &anvil{unit: int64(lim.Window / time.Second), limit: int64(lim.N)}
					for i, e := range ev {
						if a.event(e) {
							t.Fatalf("%v lat %s seed %d: anvil %d/%s refused message %d at +%s", tc.limits, tc.lat, seed, lim.N, lim.Window, i, e.Sub(ev[0]))
						}
					}
				}
			}
			// Not too slow: by the longest limit, a full window's worth
			// every window plus granularity and a round trip.
			last := tc.limits[0]
			for _, lim := range tc.limits {
				if lim.Window >= last.Window {
					last = lim
				}
			}
			d := 3*longest + longest/3
			if want := int(d/(last.span()+tc.lat)) * last.N; len(ev) < want {
				t.Errorf("%v lat %s: only %d messages in %s, want at least %d", tc.limits, tc.lat, len(ev), d, want)
			}
		}
	}
}

func TestWaitTooLongAndWaiting(t *testing.T) {
	l, err := New("relay.example", []Limit{{2, time.Hour}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := Of(l)
	for range 2 {
		tok, err := s.Wait(context.Background(), time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok.Done(time.Now())
	}
	var told []Hold
	_, err = s.Wait(context.Background(), time.Minute, func(h Hold) { told = append(told, h) })
	tl, ok := IsTooLong(err)
	if !ok {
		t.Fatalf("third message of 2/h: err %v, want ErrTooLong", err)
	}
	if tl.Hold.Limit != (Limit{2, time.Hour}) || tl.Hold.Name != "relay.example" {
		t.Errorf("hold %+v", tl.Hold)
	}
	if d := time.Until(tl.Hold.Open); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
		t.Errorf("opens in %s, want about an hour", d)
	}
	if got := tl.Error(); got == "" || tl.Hold.String() != "relay.example's 2/h" {
		t.Errorf("words: %q / %q", got, tl.Hold.String())
	}

	// A short wait is waited, and said while it lasts.
	l2, _ := New("r2", []Limit{{1, 50 * time.Millisecond}}, nil, nil)
	s2 := Of(l2)
	tok, _ := s2.Wait(context.Background(), time.Minute, nil)
	tok.Done(time.Now())
	told = nil
	tok, err = s2.Wait(context.Background(), time.Minute, func(h Hold) { told = append(told, h) })
	if err != nil {
		t.Fatal(err)
	}
	tok.Done(time.Now())
	if len(told) != 2 || told[0].Open.IsZero() || !told[1].Open.IsZero() {
		t.Errorf("waiting was told %+v, want the hold then the zero Hold", told)
	}
}

func TestCancelGivesTheSlotBack(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l, _ := New("r", []Limit{{1, time.Hour}}, nil, c.now)
	s := Of(l)
	tok, _, _, _ := s.try()
	tok.Cancel()
	if tok, _, _, _ = s.try(); tok == nil {
		t.Fatal("the slot given back was not free")
	}
	tok.Done(c.t)
	if tok, _, _, _ = s.try(); tok != nil {
		t.Fatal("a second message of 1/h passed")
	}
}

func TestInFlightBlocksUntilAnswered(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l, _ := New("r", []Limit{{1, time.Second}}, nil, c.now)
	s := Of(l)
	tok, _, _, _ := s.try()
	c.t = c.t.Add(5 * time.Second)
	if tok2, hold, _, _ := s.try(); tok2 != nil || !hold.Open.IsZero() {
		t.Fatalf("with the last message unanswered, try gave %v / %+v", tok2, hold)
	}
	tok.Done(c.t) // answered 5 s later: the server may have counted it just now
	_, hold, _, _ := s.try()
	if want := c.t.Add(time.Second + Granularity); !hold.Open.Equal(want) {
		t.Fatalf("opens at %s, want %s (counted at the reply, plus window and granularity)", hold.Open, want)
	}
}

func TestLedgerAcrossRunsAndAtOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "quota")
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	limits := []Limit{{3, time.Hour}}
	open := func() (*Limiter, *Ledger) {
		led, err := OpenLedger(dir, "relay smtp.example:587 alice")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { led.Close() })
		l, err := New("smtp.example:587", limits, led, c.now)
		if err != nil {
			t.Fatal(err)
		}
		return l, led
	}
	a, led := open()
	fi, err := os.Stat(led.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ledger mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(led.Path())); di.Mode().Perm() != 0o700 {
		t.Errorf("ledger dir mode %v, want 0700", di.Mode().Perm())
	}
	// Two runs at once: a and b alternate; together at most 3.
	b, _ := open()
	sent := 0
	for i := range 10 {
		s := Of(a)
		if i%2 == 1 {
			s = Of(b)
		}
		tok, _, _, err := s.try()
		if err != nil {
			t.Fatal(err)
		}
		if tok != nil {
			c.t = c.t.Add(time.Millisecond)
			tok.Done(c.t)
			sent++
		}
	}
	if sent != 3 {
		t.Fatalf("two runs at once sent %d within the hour, want 3", sent)
	}
	// A later run, 30 minutes on: the quota is still used.
	c.t = c.t.Add(30 * time.Minute)
	r3, _ := open()
	if got := r3.Used(); got[0] != 3 {
		t.Fatalf("a new run sees %v used, want [3]", got)
	}
	if tok, hold, _, _ := Of(r3).try(); tok != nil {
		t.Fatal("a new run sent past the quota")
	} else if want := time.Unix(1_700_000_000, 0).Add(time.Millisecond + time.Hour + Granularity); hold.Open.Before(want) {
		t.Fatalf("opens %s, want no sooner than %s", hold.Open, want)
	}
	// An hour and more later: room again.
	c.t = c.t.Add(31 * time.Minute)
	r4, _ := open()
	if tok, _, _, _ := Of(r4).try(); tok == nil {
		t.Fatal("after the window no room")
	} else {
		tok.Cancel()
	}
	// The cancel reached the file: yet another run sees 0 used.
	r5, _ := open()
	if got := r5.Used(); got[0] != 0 {
		t.Fatalf("after a cancel a new run sees %v used, want [0]", got)
	}
}

func TestLedgerPrunes(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	led, err := OpenLedger(dir, "direct")
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	led.pruneAt = 600
	l, _ := New("direct", []Limit{{100, time.Second}}, led, c.now)
	for range 700 {
		tok, _, _, err := Of(l).try()
		if err != nil {
			t.Fatal(err)
		}
		if tok == nil {
			c.t = c.t.Add(time.Second)
			continue
		}
		tok.Done(c.t)
		c.t = c.t.Add(3 * time.Millisecond)
	}
	fi, _ := os.Stat(led.Path())
	if n := fi.Size() / recordSize; n > 300 {
		t.Fatalf("ledger holds %d records after pruning, want only the last window's", n)
	}
	// What is left is what a new run counts.
	led2, _ := OpenLedger(dir, "direct")
	defer led2.Close()
	l2, _ := New("direct", []Limit{{100, time.Second}}, led2, c.now)
	if got, want := l2.Used()[0], l.Used()[0]; got != want {
		t.Fatalf("after pruning a new run counts %d, the writer %d", got, want)
	}
}

func TestFileName(t *testing.T) {
	a := FileName("relay smtp.example.com:587 alice@example.com")
	b := FileName("relay smtp.example.com:587 bob@example.com")
	if a == b || filepath.Base(a) != a {
		t.Fatalf("names %q %q", a, b)
	}
}
