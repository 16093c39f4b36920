package quota

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Capacity agrees with the limiter itself driven as fast as it allows (no
// latency), with and without messages of an earlier run in the windows.
func TestCapacityMatchesTheLimiter(t *testing.T) {
	cases := [][]Limit{
		{{30, time.Hour}},
		{{3, 10 * time.Second}},
		{{5, 10 * time.Second}, {12, time.Minute}},
		{{30, time.Minute}, {300, time.Hour}, {500, 24 * time.Hour}},
		{{2, 24 * time.Hour}},
	}
	for _, limits := range cases {
		for seed := range uint64(4) {
			rnd := rand.New(rand.NewPCG(seed, 11))
			start := time.Unix(1_700_000_000, 0)
			longest := time.Duration(0)
			for _, lim := range limits {
				longest = max(longest, lim.Window)
			}
			// An earlier run's messages, some inside the windows, some
			// more than the limit allows (another run, a changed config).
			var past []time.Time
			for range rnd.IntN(2 * limits[0].N) {
				past = append(past, start.Add(-time.Duration(rnd.Int64N(int64(longest+time.Second)))))
			}
			for _, d := range []time.Duration{0, longest / 3, longest, 2*longest + longest/2} {
				c := &clock{t: start}
				plan, _ := New("relay", limits, nil, c.now)
				run, _ := New("relay", limits, nil, c.now)
				for _, p := range past {
					plan.insert(p)
					run.insert(p)
				}
				plan.prune(start)
				run.prune(start)
				want, _ := plan.Capacity(start.Add(d))
				got := len(drive(t, c, Of(run), d+time.Nanosecond, 0, rnd))
				if got != want {
					t.Errorf("%v seed %d, %d earlier, until +%s: Capacity %d, the limiter sent %d", limits, seed, len(past), d, want, got)
				}
			}
		}
	}
}

func TestCapacityNames(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l, _ := New("relay", []Limit{{30, time.Minute}, {100, 24 * time.Hour}}, nil, c.now)
	n, lim := l.Capacity(c.t.Add(10 * time.Hour))
	if n != 100 || lim.Window != 24*time.Hour {
		t.Errorf("got %d by %s, want 100 by the daily limit", n, lim)
	}
	var none *Limiter
	if n, _ := none.Capacity(c.t); n < 1<<40 {
		t.Errorf("the nil Limiter allows %d", n)
	}
}
