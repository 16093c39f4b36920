package send

import (
	"sync"
	"time"
)

// outage bounds how long a run goes on while something it needs does not
// answer (a relay, the DNS resolver in direct mode): it keeps since when
// the failures have lasted, and which were already told to the user, so
// that each kind is said once, at once, with the time the run gives up
// (retry.unreachable). Safe for concurrent use.
type outage struct {
	mu    sync.Mutex
	since time.Time       // zero: no failure since the last success
	said  map[string]bool // failures told to the user (at most maxSaid)
}

// maxSaid caps the distinct failures an outage tells: a flapping peer
// with ever-new words must not flood the terminal.
const maxSaid = 10

// failed records a failure with the words msg at now and returns when the
// run gives up (since + bound), and whether msg is new to the user.
func (o *outage) failed(now time.Time, bound time.Duration, msg string) (deadline time.Time, first bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		o.since = now
	}
	if o.said == nil {
		o.said = map[string]bool{}
	}
	if !o.said[msg] && len(o.said) < maxSaid {
		o.said[msg], first = true, true
	}
	return o.since.Add(bound), first
}

// ok ends the outage: the peer answered.
func (o *outage) ok() {
	o.mu.Lock()
	o.since = time.Time{}
	o.mu.Unlock()
}
