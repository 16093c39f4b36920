package quota

import (
	"math"
	"slices"
	"time"
)

// Capacity is how many more messages l's limits let go from now until
// until (inclusive), each taking its slot the moment one is free and
// counted the moment it is taken: an upper bound (threads, latency and
// refusals only lower it), so the time it gives a mailing is a lower
// bound. The Limit is the one that allows the fewest. The nil Limiter has
// no limit: math.MaxInt.
//
// It is analytical, for plans of any size: under "N in any window of span
// S" (S = the window and Granularity), the j-th message in a row (counting
// the ones already in the window first) goes no sooner than S after the
// (j−N)-th, so it may go at base + k·S, k = j div N, where base is the
// time of the (j mod N)-th of the last N messages the window holds, or now
// for slots nothing holds.
func (l *Limiter) Capacity(until time.Time) (int, Limit) {
	if l == nil {
		return math.MaxInt, Limit{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if until.Before(now) {
		return 0, l.limits[0]
	}
	var times []time.Time // closed events in order, then the open ones: the newest
	for _, e := range l.events {
		if !e.open {
			times = append(times, e.at)
		}
	}
	for _, e := range l.events {
		if e.open {
			times = append(times, now)
		}
	}
	best, bestLim := math.MaxInt, l.limits[0]
	for _, lim := range l.limits {
		span := lim.span()
		from := now.Add(-span)
		i, _ := slices.BinarySearchFunc(times, from, func(e, t time.Time) int { return e.Compare(t) })
		for i < len(times) && !times[i].After(from) {
			i++
		}
		held := times[i:]
		if len(held) > lim.N {
			held = held[len(held)-lim.N:]
		}
		n := 0
		for slot := range lim.N {
			base, taken := now, slot < len(held)
			if taken {
				base = held[slot]
			}
			k := int(until.Sub(base) / span) // further messages in this slot's chain
			if !taken {
				k++ // and the slot itself, now
			}
			n += k
		}
		if n < best {
			best, bestLim = n, lim
		}
	}
	return best, bestLim
}
