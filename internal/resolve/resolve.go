// Package resolve is DNS for mail: raw queries to recursive servers on top of
// github.com/miekg/dns, and the RFC 5321 / RFC 7505 / RFC 2782 rules (MX
// preference and shuffle, implicit MX, null MX, SRV ordering) written on top.
//
// It is shared by the probe stage, which reports what DNS said, and by the
// sender's direct mode, which needs to know where to deliver. It asks servers
// directly instead of going through the Go standard resolver so that the probe
// can report which server said what, how fast, and whether TCP was needed.
//
// Every lookup error is an *Error with a Kind that tells a permanent answer
// (NXDOMAIN, no records) from a failure to get one.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// DefaultTimeout per attempt: a recursive that has the answer cached
	// replies in milliseconds and one that must recurse in well under a
	// second; two seconds leaves room for a slow link without making an
	// offline diagnosis wait long.
	DefaultTimeout = 2 * time.Second
	// DefaultAttempts per server: one retry covers a lost UDP packet.
	DefaultAttempts = 2
	// ednsSize is the advertised UDP payload size: 1232 bytes avoids IP
	// fragmentation on any path with an IPv6-minimum MTU (DNS Flag Day
	// 2020); larger answers come back truncated and are fetched over TCP.
	ednsSize = 1232
)

// Resolver asks recursive servers directly (not the Go stdlib resolver) so
// the probe can report raw facts. The zero value has no servers; use New or
// FromResolvConf, or fill Servers. A Resolver is safe for concurrent use; do
// not copy it after first use.
type Resolver struct {
	Servers  []string      // "ip:port"; tried in order, next on timeout, network error, SERVFAIL, REFUSED
	Timeout  time.Duration // per query attempt (0 → DefaultTimeout)
	Attempts int           // per server, for timeouts only (0 → DefaultAttempts)
	// Rand drives the equal-preference MX shuffle and the SRV weighted
	// order. nil → a real random source. Tests pass a seeded one.
	Rand *rand.Rand

	mu sync.Mutex // guards Rand, which is not safe for concurrent use
}

// Reply is one answer as received, kept whole as evidence.
type Reply struct {
	Msg     *dns.Msg
	Server  string        // "ip:port" that answered
	RTT     time.Duration // of the exchange that produced Msg (the TCP one when OverTCP)
	OverTCP bool          // the UDP answer had the TC bit set and was fetched again over TCP
}

// New returns a Resolver that asks the given servers in order. Each is an IP
// address with an optional port: "192.0.2.1", "192.0.2.1:5353", "2001:db8::1",
// "[2001:db8::1]:53" or "[2001:db8::1]"; the default port is 53. Host names
// are rejected: we would need a resolver to find the resolver.
func New(servers ...string) (*Resolver, error) {
	if len(servers) == 0 {
		return nil, errors.New("no resolver given (want IP or IP:PORT)")
	}
	r := &Resolver{}
	for _, s := range servers {
		hp, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		r.Servers = append(r.Servers, hp)
	}
	return r, nil
}

func parseServer(s string) (string, error) {
	in := s
	s = strings.TrimSpace(s)
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("resolver %q: %s (want IP, IP:PORT or [IPv6]:PORT)", in, why)
	}
	if s == "" {
		return bad("empty")
	}
	// A bare address, IPv4 or IPv6 (an IPv6 address has colons, so this must
	// come before splitting off a port).
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !a.Is6() {
			return bad("not an IPv6 address in brackets")
		}
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bad("not an address")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return bad("not an IP address; give the resolver's address, not its name")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return bad("port must be a number from 1 to 65535")
	}
	return netip.AddrPortFrom(a, uint16(p)).String(), nil
}

// FromResolvConf reads the nameserver lines of a resolv.conf file (usually
// /etc/resolv.conf). The file's timeout and attempts options are not used:
// miekg/dns reports defaults when they are absent, so we cannot tell a choice
// from a default, and ours suit a diagnosis better.
func FromResolvConf(path string) (*Resolver, error) {
	const hint = "; hint: name a resolver with --resolver IP[:PORT]"
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resolver config %s: %w%s", path, err, hint)
	}
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("resolver config %s lists no nameserver%s", path, hint)
	}
	servers := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		servers = append(servers, net.JoinHostPort(s, cfg.Port))
	}
	r, err := New(servers...)
	if err != nil {
		return nil, fmt.Errorf("resolver config %s: %w%s", path, err, hint)
	}
	return r, nil
}

func (r *Resolver) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

func (r *Resolver) attempts() int {
	if r.Attempts > 0 {
		return r.Attempts
	}
	return DefaultAttempts
}

// intN returns a random int in [0, n).
func (r *Resolver) intN(n int) int {
	if r.Rand == nil {
		return rand.IntN(n) // the package-level source is safe for concurrent use
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Rand.IntN(n)
}

// Query sends one question (class IN, RD set, EDNS0 with a 1232-byte UDP size
// and the DO bit off) to the servers in order and returns the first reply
// whose response code is NOERROR or NXDOMAIN: both are answers, and the
// caller inspects Msg.Rcode and the sections. A UDP answer with the TC bit
// set is fetched again from the same server over TCP (RFC 7766 §5).
//
// A server is left for the next one on a timeout (after Attempts tries), a
// network error, SERVFAIL, REFUSED, another response code or a malformed
// reply. When all fail, the error is an *Error describing the most
// informative failure (a server's answer over silence over a socket error).
// The context's deadline and cancellation are honoured at every step.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*Reply, error) {
	qname := dns.Fqdn(name)
	tname := typeName(qtype)
	if _, ok := dns.IsDomainName(qname); !ok || len(qname) > 254 {
		return nil, &Error{Name: name, Type: tname, Kind: BadName, Err: fmt.Errorf("%q is not a valid DNS name", name)}
	}
	if len(r.Servers) == 0 {
		return nil, &Error{Name: displayName(qname), Type: tname, Kind: Network, Err: ErrNoServers}
	}
	var worst *Error
	for _, server := range r.Servers {
		for range r.attempts() {
			reply, kind, err := r.try(ctx, server, qname, qtype)
			if err == nil {
				return reply, nil
			}
			e := &Error{Name: displayName(qname), Type: tname, Kind: kind, Server: server, Err: err}
			if reply != nil && reply.Msg != nil && kind != Malformed {
				e.Rcode = reply.Msg.Rcode
				e.Err = nil // the response code is the whole story
			}
			if ctx.Err() != nil {
				// The socket error is only how the cancellation surfaced
				// (we close the socket); the context says what happened.
				e.Err = ctx.Err()
				return nil, e
			}
			if worst == nil || severity(kind) > severity(worst.Kind) {
				worst = e
			}
			// Only silence is worth asking the same server again about (a
			// lost packet); a server that failed or answered badly will do
			// the same again, so the next server is the better bet.
			if kind != Timeout {
				break
			}
		}
	}
	return nil, worst
}

// try makes one attempt at one server: UDP, then TCP if truncated. It returns
// the reply with a nil error, or a Kind and a cause. For a failure response
// code the reply is returned too, for its Rcode.
func (r *Resolver) try(ctx context.Context, server, qname string, qtype uint16) (*Reply, Kind, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype) // random ID, RD set
	m.SetEdns0(ednsSize, false)

	msg, rtt, kind, err := r.exchange(ctx, "udp", server, m)
	overTCP := false
	// miekg/dns does not fall back to TCP by itself. The header (and so the
	// TC bit) is decoded even when the truncated body fails to unpack.
	if msg != nil && msg.Truncated && msg.Id == m.Id {
		overTCP = true
		msg, rtt, kind, err = r.exchange(ctx, "tcp", server, m)
	}
	if err != nil {
		return nil, kind, err
	}
	if err := checkAnswer(m, msg); err != nil {
		return nil, Malformed, err
	}
	reply := &Reply{Msg: msg, Server: server, RTT: rtt, OverTCP: overTCP}
	switch msg.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return reply, 0, nil
	case dns.RcodeServerFailure:
		return reply, ServFail, errors.New("SERVFAIL")
	case dns.RcodeRefused:
		return reply, Refused, errors.New("REFUSED")
	}
	return reply, Rcode, errors.New(rcodeName(msg.Rcode))
}

// exchange sends m once over network ("udp" or "tcp") and waits at most the
// per-attempt timeout.
func (r *Resolver) exchange(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, time.Duration, Kind, error) {
	actx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.timeout(), UDPSize: ednsSize}
	co, err := c.DialContext(actx, server)
	if err != nil {
		return nil, 0, classify(ctx, actx, err), err
	}
	defer co.Close()
	// ExchangeWithConnContext turns the context's deadline into socket
	// deadlines but does not watch for cancellation; closing the socket
	// unblocks the read at once, so an interrupted probe stops now.
	stop := context.AfterFunc(actx, func() { co.Close() })
	defer stop()
	msg, rtt, err := c.ExchangeWithConnContext(actx, m, co)
	if err != nil {
		return msg, rtt, classify(ctx, actx, err), err
	}
	return msg, rtt, 0, nil
}

// checkAnswer rejects a reply to a different question. miekg/dns matches the
// ID only; a server may omit the question section when refusing (9.9.9.9
// does), so an empty one is accepted.
func checkAnswer(q, a *dns.Msg) error {
	if !a.Response {
		return errors.New("reply does not have the QR bit set")
	}
	if len(a.Question) == 0 {
		return nil
	}
	aq, qq := a.Question[0], q.Question[0]
	if len(a.Question) != 1 || aq.Qtype != qq.Qtype || aq.Qclass != qq.Qclass || !strings.EqualFold(aq.Name, qq.Name) {
		return fmt.Errorf("reply answers %s %s, not the question asked", aq.Name, typeName(aq.Qtype))
	}
	return nil
}

func typeName(t uint16) string { return dns.Type(t).String() }

// displayName is a name as people write it: no trailing dot (except the root).
func displayName(fqdn string) string {
	if len(fqdn) > 1 {
		return strings.TrimSuffix(fqdn, ".")
	}
	return fqdn
}
