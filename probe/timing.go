package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Timing as evidence of interception (README "Design: interception"): a TCP
// handshake takes one round trip to whoever answers it. When port 25 of an
// address completes far sooner than another port of the same address,
// something nearer than that address answered port 25: a transparent proxy
// of this network or its ISP. A reset (closed port) is an answer too, and
// times the round trip as well as an accepted connection.

// timingPorts are compared with port 25: ports that mail hosts often have
// open, or at least answer with a reset.
var timingPorts = []int{443, 587, 465}

// timingSamples connects this many times to each port and keeps the
// fastest: scheduling delays on a busy machine only ever add time.
const timingSamples = 3

// timingRatio and timingFloor: port 25 must be this many times faster, and
// at least this much faster in absolute terms, for the difference to be
// more than the jitter of one machine's scheduling (a round trip across
// the internet is tens of milliseconds; a proxy in the ISP a few).
const (
	timingRatio = 3
	timingFloor = 10 * time.Millisecond
)

// timeSuspects measures the suspects' handshakes, all at once, and adds a
// timing signal to each: corroborating when port 25 answers far sooner,
// WeightNone (recorded, deciding nothing) otherwise.
func (p *Prober) timeSuspects(ctx context.Context, suspects []*Endpoint) {
	var wg sync.WaitGroup
	for _, e := range suspects {
		wg.Go(func() { p.timeEndpoint(ctx, e) })
	}
	wg.Wait()
}

func (p *Prober) timeEndpoint(ctx context.Context, e *Endpoint) {
	t25, ok := p.handshake(ctx, e.Addr, e.Port)
	if !ok {
		return
	}
	type res struct {
		port int
		d    time.Duration
		ok   bool
	}
	out := make([]res, len(p.timingPorts()))
	var wg sync.WaitGroup
	for i, port := range p.timingPorts() {
		wg.Go(func() {
			d, ok := p.handshake(ctx, e.Addr, port)
			out[i] = res{port, d, ok}
		})
	}
	wg.Wait()
	best := res{}
	for _, r := range out {
		if r.ok && (!best.ok || r.d < best.d) {
			best = r
		}
	}
	if !best.ok {
		return // no other port answers: nothing to compare with
	}
	words := fmt.Sprintf("the port-%d handshake took %s, port %d's on the same address %s (fastest of %d)",
		e.Port, Duration(t25), best.port, Duration(best.d), timingSamples)
	if best.d >= timingRatio*t25 && best.d-t25 >= timingFloor {
		e.signal(SignalTiming, WeightCorroborating, words+": something nearer than the MX answered port 25")
		return
	}
	e.signal(SignalTiming, WeightNone, words+": no sign of a nearer answerer")
}

func (p *Prober) timingPorts() []int {
	if p.TimingPorts != nil {
		return p.TimingPorts
	}
	return timingPorts
}

// handshake times the fastest of timingSamples TCP handshakes with
// addr:port, within half a timeout each; ok is false when none was
// answered (accepted or reset).
func (p *Prober) handshake(ctx context.Context, addr string, port int) (best time.Duration, ok bool) {
	target := net.JoinHostPort(addr, strconv.Itoa(port))
	for range timingSamples {
		dctx, cancel := context.WithTimeout(ctx, p.Timeout/2)
		start := time.Now()
		c, err := p.dial(dctx, "tcp", target)
		d := time.Since(start)
		cancel()
		switch {
		case err == nil:
			_ = c.Close()
		case errors.Is(err, syscall.ECONNREFUSED):
		default:
			return best, ok // silence or an error: no round trip to time
		}
		if !ok || d < best {
			best, ok = d, true
		}
	}
	return best, ok
}
