package probe

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Where port 25 dies: when port 25 of an MX address is filtered but another
// port of the same address answers, SYNs with a rising TTL to both ports
// show how far port 25 gets. Each router on the way answers an expiring SYN
// with ICMP time-exceeded whatever its port (before its forwarding rules:
// lab-notes.md "A routed path"), so the last hop that does so for port 25,
// where the other port goes on, is where port 25 is dropped; no answer even
// at TTL 1 while the other port's SYN reaches the first router means this
// machine dropped it. Best effort: skipped where sockets cannot be set up so.

// HopResult is what came back for one SYN with a limited TTL.
type HopResult string

const (
	HopTimeExceeded HopResult = "time_exceeded" // a router on the way: the TTL ran out there
	HopReached      HopResult = "reached"       // the target answered (SYN-ACK or reset)
	HopUnreachable  HopResult = "unreachable"   // ICMP destination unreachable
	HopSilent       HopResult = "silent"        // nothing within the wait
	HopError        HopResult = "error"
)

// Hop is one TTL's SYN and its answer.
type Hop struct {
	TTL    int       `json:"ttl"`
	Result HopResult `json:"result"`
	From   string    `json:"from,omitempty"` // the router that sent the ICMP error
	RTT    Duration  `json:"rtt,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// PathTrace is where on the way port 25 stops.
type PathTrace struct {
	ComparePort int   `json:"compare_port"`
	Port25      []Hop `json:"port25"`
	Compare     []Hop `json:"compare"`
	// Where: "local" (this machine drops it), "hop" (after hop After, the
	// router Router), or "undetermined"; Text says it in words.
	Where  string `json:"where"`
	After  int    `json:"after,omitempty"`
	Router string `json:"router,omitempty"`
	// RouterAS is the network the router belongs to ("AS64500 NAME"),
	// when Team Cymru's IP-to-ASN service knows it (asn.go).
	RouterAS string `json:"router_as,omitempty"`
	Text     string `json:"text"`
}

// traceMaxHops bounds the TTLs tried; blocks of outbound port 25 sit in the
// first few hops (this machine, the home router, the ISP).
const traceMaxHops = 10

// traceMinWait is the least time given a hop to answer.
const traceMinWait = 500 * time.Millisecond

// traceMax bounds the filtered endpoints traced in one run.
const traceMax = 3

// tracePaths traces the first traceMax filtered MX endpoints, in parallel.
func (p *Prober) tracePaths(ctx context.Context, rep *Report) {
	var todo []*Endpoint
	for _, d := range rep.Domains {
		for _, e := range d.Ends {
			if e.Role == RoleMX && e.Verdict == Filtered && len(todo) < traceMax {
				todo = append(todo, e)
			}
		}
	}
	var wg sync.WaitGroup
	for _, e := range todo {
		wg.Go(func() { e.Path = p.trace(ctx, e) })
	}
	wg.Wait()
}

func (p *Prober) trace(ctx context.Context, e *Endpoint) *PathTrace {
	addr, err := netip.ParseAddr(e.Addr)
	if err != nil {
		return nil
	}
	// The comparison ports are tried at once, within a quarter of the
	// timeout, and the first that answers is used: the trace must keep a
	// probe of filtered hosts within its timeout plus a second (README,
	// Figures), and a port that answers at all answers fast.
	ports := p.timingPorts()
	type answer struct {
		port int
		rtt  time.Duration
		ok   bool
	}
	answers := make(chan answer, len(ports))
	cctx, cancel := context.WithTimeout(ctx, p.Timeout/4)
	for _, port := range ports {
		go func() {
			rtt, ok := p.handshake(cctx, e.Addr, port)
			answers <- answer{port, rtt, ok}
		}()
	}
	cmp, rtt := 0, time.Duration(0)
	for range ports {
		if a := <-answers; a.ok {
			cmp, rtt = a.port, a.rtt
			break
		}
	}
	cancel()
	if cmp == 0 {
		return &PathTrace{Where: "undetermined", Text: "no other port of this address answers, so there is nothing to compare port 25's path with"}
	}
	// An expiring SYN is answered from nearer than the MX, so sooner than
	// the MX's own handshake: four of those, and at least half a second
	// (routers send ICMP on a slow path, rate-limited), bound the wait.
	wait := min(p.Timeout, max(traceMinWait, 4*rtt))
	pt := &PathTrace{ComparePort: cmp, Port25: make([]Hop, traceMaxHops), Compare: make([]Hop, traceMaxHops)}
	var wg sync.WaitGroup
	for i := range traceMaxHops {
		wg.Go(func() { pt.Port25[i] = hopProbe(ctx, addr, e.Port, i+1, wait) })
		wg.Go(func() { pt.Compare[i] = hopProbe(ctx, addr, cmp, i+1, wait) })
	}
	wg.Wait()
	analyzePath(pt, e.Port, func(router string) string {
		a, err := netip.ParseAddr(router)
		if err != nil {
			return ""
		}
		actx, cancel := context.WithTimeout(ctx, p.Timeout)
		defer cancel()
		pt.RouterAS = p.asnOf(actx, a)
		return pt.RouterAS
	})
	return pt
}

// analyzePath finds where port's SYNs stop, from the hops of both ports;
// asOf names the network of the router where they do ("" if unknown).
func analyzePath(pt *PathTrace, port int, asOf func(router string) string) {
	pt.Where = "undetermined"
	answered := func(h Hop) bool {
		return h.Result == HopTimeExceeded || h.Result == HopReached || h.Result == HopUnreachable
	}
	for _, h := range pt.Port25 {
		if h.TTL == 1 && h.Result == HopError { // the socket options were refused: best effort ends
			pt.Text = "not traced: " + h.Error
			return
		}
		if h.Result == HopReached {
			pt.Text = fmt.Sprintf("port %d reached the host at hop %d during the trace: no block on the way now", port, h.TTL)
			return
		}
	}
	last := 0 // the hops port 25 got through: each answered time-exceeded
	for last < len(pt.Port25) && pt.Port25[last].Result == HopTimeExceeded {
		last++
	}
	if last == len(pt.Port25) {
		pt.Text = fmt.Sprintf("port %d's SYNs got past hop %d; the block is farther", port, last)
		return
	}
	next := pt.Compare[last] // the other port at the TTL where port 25 vanished
	if !answered(next) {
		pt.Text = fmt.Sprintf("hop %d answers neither port (many routers do not): where port %d stops cannot be told", last+1, port)
		return
	}
	if last == 0 {
		pt.Where = "local"
		if next.Result == HopTimeExceeded {
			pt.Text = fmt.Sprintf("on this machine: port %d's SYNs get no answer even with a TTL of 1, while port %d's get time-exceeded from the first router (%s): a local firewall rule drops them",
				port, pt.ComparePort, next.From)
		} else {
			pt.Text = fmt.Sprintf("on this machine or at the MX itself (it is the first hop): port %d's SYNs get no answer, port %d's reach it", port, pt.ComparePort)
		}
		return
	}
	r := pt.Port25[last-1].From
	pt.Where, pt.After, pt.Router = "hop", last, r
	pt.Text = fmt.Sprintf("dropped after hop %d (%s%s): port %d's SYNs expire there like port %d's, and go no farther, while port %d's %s at hop %d",
		last, r, routerWords(r, last, asOf(r)), port, pt.ComparePort, pt.ComparePort, map[bool]string{true: "reach the MX", false: "get through"}[next.Result == HopReached], last+1)
	if next.Result == HopReached {
		pt.Text += " (the MX itself may be what drops them)"
	}
}

// routerWords says what a hop's address suggests about whose it is, with
// the network (AS) it belongs to when known.
func routerWords(addr string, hop int, as string) string {
	a, err := netip.ParseAddr(addr)
	network := ""
	if as != "" {
		network = ", " + as
	}
	switch {
	case err != nil:
		return ""
	case a.IsPrivate() || a.IsLinkLocalUnicast():
		if hop == 1 {
			return ", your router"
		}
		return ", a private address: inside your network or your ISP's"
	case hop == 1:
		return ", the first router" + network
	case as != "":
		return network + ": your ISP's network or farther"
	}
	return ", beyond your network: your ISP's or farther"
}
