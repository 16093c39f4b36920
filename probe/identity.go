package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/resolve"
)

// EchoService is a DNS name whose answer is the address of whoever asks:
// asked directly at its authoritative Server, it tells this machine its
// public address as the internet sees it (behind NAT, that is the router's).
type EchoService struct {
	Name string // e.g. "myip.opendns.com"
	// Type is dns.TypeA, dns.TypeAAAA, or dns.TypeTXT for services that
	// answer in words (Google's "o-o.myaddr.l.google.com").
	Type uint16
	// Server is the host that answers Name: a host name (looked up with the
	// Prober's resolver) or an IP address, either with an optional port.
	Server string
}

func (s EchoService) String() string {
	return fmt.Sprintf("%s %s @%s", s.Name, dns.TypeToString[s.Type], s.Server)
}

// IdentityOptions say how Identity finds out who this machine is.
type IdentityOptions struct {
	// Echo services are asked in order until one answers; empty: DefaultEcho.
	Echo []EchoService
	// DNSBL zones to look the public address up in; nil: DefaultDNSBL.
	// An empty non-nil slice asks no blocklist.
	DNSBL []string
}

// DefaultEcho are two independent echo services, so that one being down
// or blocked does not leave the address unknown. Both are authoritative
// servers asked directly, not through the local resolver, which would
// answer with its own address or from its cache.
var DefaultEcho = []EchoService{
	{Name: "myip.opendns.com", Type: dns.TypeA, Server: "resolver1.opendns.com"},
	{Name: "o-o.myaddr.l.google.com", Type: dns.TypeTXT, Server: "ns1.google.com"},
}

// DefaultDNSBL is Spamhaus ZEN: SBL, CSS, XBL and PBL in one query; the
// list most receivers consult, and the one whose PBL says "this address
// must not send mail directly".
var DefaultDNSBL = []string{"zen.spamhaus.org"}

// DefaultIdentityOptions returns the defaults (copies, safe to modify).
func DefaultIdentityOptions() IdentityOptions {
	return IdentityOptions{Echo: append([]EchoService(nil), DefaultEcho...), DNSBL: append([]string(nil), DefaultDNSBL...)}
}

// maxPTRNames bounds the reverse names checked for forward confirmation;
// more than a couple is already unusual.
const maxPTRNames = 5

// Identity finds this machine's public address through an echo service,
// its reverse DNS and whether that name resolves back to it (FCrDNS), and
// its blocklist listings. It never fails: what could not be found out is
// said in Identity.Unknown. It returns when ctx ends at the latest, so
// give it a deadline: an offline machine gets "unknown", not a hang.
func (p *Prober) Identity(ctx context.Context, opt IdentityOptions) *Identity {
	p = p.prepared()
	if len(opt.Echo) == 0 {
		opt.Echo = DefaultEcho
	}
	if opt.DNSBL == nil {
		opt.DNSBL = DefaultDNSBL
	}
	id := &Identity{}
	// The IPv6 identity is looked for at the same time (identity6.go).
	var v6 *Identity
	var v6Unknown string
	done6 := make(chan struct{})
	go func() {
		defer close(done6)
		v6, v6Unknown = p.identity6(ctx, opt)
	}()
	defer func() {
		<-done6
		if v6 != nil && v6.PublicIP != id.PublicIP {
			id.IPv6 = v6
		}
		if v6Unknown != "" {
			id.Unknown = append(id.Unknown, v6Unknown)
		}
	}()
	ip, source, err := p.publicIP(ctx, opt.Echo)
	if err != nil {
		id.Unknown = append(id.Unknown, "public address unknown: "+err.Error(),
			"reverse DNS and blocklists not checked: they need the public address")
		return id
	}
	id.PublicIP, id.Source = ip.String(), source

	// Reverse DNS and the blocklists are independent: ask them at once.
	var wg sync.WaitGroup
	var ptrUnknown []string
	wg.Go(func() { ptrUnknown = p.reverse(ctx, ip, id) })
	id.Listings = make([]Listing, len(opt.DNSBL))
	for i, zone := range opt.DNSBL {
		wg.Go(func() { id.Listings[i] = p.dnsbl(ctx, ip, zone) })
	}
	wg.Wait()
	id.Unknown = append(id.Unknown, ptrUnknown...)
	for _, l := range id.Listings {
		switch {
		case l.Error != "":
			id.Unknown = append(id.Unknown, "blocklist "+l.Zone+": "+l.Error)
		case l.QueryRefused:
			id.Unknown = append(id.Unknown, "blocklist "+l.Zone+": "+strings.Join(l.Meaning, "; "))
		}
	}
	return id
}

// publicIP asks the echo services in order and returns the first address
// one gives, with the service that said it.
func (p *Prober) publicIP(ctx context.Context, services []EchoService) (netip.Addr, string, error) {
	var errs []string
	for i, svc := range services {
		// Each service gets an equal share of what is left, so that a
		// silent first one (UDP to it filtered) leaves time for the next.
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			sctx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(len(services)-i))
		}
		ip, err := p.askEcho(sctx, svc)
		cancel()
		if err == nil {
			return ip, svc.String(), nil
		}
		errs = append(errs, svc.String()+": "+err.Error())
		if ctx.Err() != nil {
			break
		}
	}
	return netip.Addr{}, "", errors.New(strings.Join(errs, "; "))
}

func (p *Prober) askEcho(ctx context.Context, svc EchoService) (netip.Addr, error) {
	r, err := p.echoResolver(ctx, svc.Server)
	if err != nil {
		return netip.Addr{}, err
	}
	return p.askEchoAt(ctx, r, svc)
}

// askEchoAt asks svc through r, a resolver for its server's addresses.
func (p *Prober) askEchoAt(ctx context.Context, r *resolve.Resolver, svc EchoService) (netip.Addr, error) {
	reply, err := r.Query(ctx, svc.Name, svc.Type)
	if err != nil {
		return netip.Addr{}, err
	}
	if reply.Msg.Rcode == dns.RcodeNameError {
		return netip.Addr{}, fmt.Errorf("%s does not exist (NXDOMAIN) at %s", svc.Name, reply.Server)
	}
	if ip, ok := echoAnswer(reply.Msg); ok {
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("no address in the answer from %s", reply.Server)
}

// echoResolver is a resolver that asks only the echo service's own server.
// One attempt per address: a second service follows if this one is silent,
// and both must fit in the caller's deadline.
func (p *Prober) echoResolver(ctx context.Context, server string) (*resolve.Resolver, error) {
	host, port := server, "53"
	if h, pt, err := net.SplitHostPort(server); err == nil {
		host, port = h, pt
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		addrs = []netip.Addr{a}
	} else {
		as, err := p.Resolver.Addrs(ctx, host)
		if err != nil {
			return nil, err
		}
		// IPv4 first: the address receivers see for most mail is the IPv4
		// one, and an IPv6 route is the likelier one to be missing.
		for _, a := range as {
			if a.Unmap().Is4() {
				addrs = append(addrs, a.Unmap())
			}
		}
		for _, a := range as {
			if !a.Unmap().Is4() {
				addrs = append(addrs, a)
			}
		}
	}
	r := &resolve.Resolver{Timeout: p.Resolver.Timeout, Attempts: 1}
	for _, a := range addrs {
		r.Servers = append(r.Servers, net.JoinHostPort(a.String(), port))
	}
	return r, nil
}

// echoAnswer takes the address out of an echo reply: an A or AAAA record,
// or a TXT record holding the address. Google's TXT answer may come with a
// second record "edns0-client-subnet 192.0.2.0/24" when a resolver added
// ECS; that is a subnet, not our address, and is skipped.
func echoAnswer(m *dns.Msg) (netip.Addr, bool) {
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				return a, true
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
				return a.Unmap(), true
			}
		case *dns.TXT:
			for _, f := range strings.Fields(strings.Join(rr.Txt, " ")) {
				if a, err := netip.ParseAddr(f); err == nil {
					return a.Unmap(), true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// reverse fills the PTR names of ip and whether one resolves back to it
// (forward-confirmed reverse DNS, which many receivers require of a
// sending address). It returns what it could not find out.
func (p *Prober) reverse(ctx context.Context, ip netip.Addr, id *Identity) (unknown []string) {
	names, err := p.Resolver.PTR(ctx, ip)
	if err != nil {
		if !resolve.IsNotFound(err) {
			unknown = append(unknown, "reverse DNS unknown: "+err.Error())
		}
		return unknown // no PTR at all is a fact, not an unknown
	}
	id.PTR = names
	var failed []string
	for _, name := range names[:min(len(names), maxPTRNames)] {
		addrs, err := p.Resolver.Addrs(ctx, name)
		if err != nil {
			if !resolve.IsNotFound(err) {
				failed = append(failed, err.Error())
			}
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip.Unmap() {
				id.ForwardConfirmed, id.ConfirmedName = true, name
				return nil
			}
		}
	}
	if len(failed) > 0 {
		unknown = append(unknown, "forward confirmation of the reverse name unknown: "+strings.Join(failed, "; "))
	}
	return unknown
}
