package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/resolve"
)

// This machine's identity over IPv6, beside the one over IPv4: a machine
// with both has two public addresses, and receivers judge each on its own
// (Gmail requires a reverse name and SPF or DKIM from IPv6 senders:
// https://support.google.com/a/answer/81126, "Additional requirements for
// IPv6"). The echo services are asked again over IPv6 only, for an AAAA
// where they answer A; a machine without IPv6 simply has no IPv6 identity.

// identity6 finds the IPv6 identity, or nil when this machine has none (no
// echo service reachable over IPv6: no route, or no IPv6 server). unknown
// says what failed otherwise.
func (p *Prober) identity6(ctx context.Context, opt IdentityOptions) (id *Identity, unknown string) {
	var errs []string
	for i, svc := range opt.Echo {
		r, err := p.echoResolver6(ctx, svc.Server)
		if err != nil || len(r.Servers) == 0 {
			continue // the service has no IPv6 address: not a failure
		}
		if svc.Type == dns.TypeA {
			svc.Type = dns.TypeAAAA
		}
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			sctx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(len(opt.Echo)-i))
		}
		ip, err := p.askEchoAt(sctx, r, svc)
		cancel()
		if err == nil && !ip.Unmap().Is4() {
			id = &Identity{PublicIP: ip.String(), Source: svc.String() + " over IPv6"}
			break
		}
		var re *resolve.Error
		if errors.As(err, &re) && re.Kind == resolve.Network {
			continue // no IPv6 route from here: no IPv6 identity
		}
		if err != nil {
			errs = append(errs, svc.String()+" over IPv6: "+err.Error())
		}
	}
	if id == nil {
		if len(errs) > 0 {
			return nil, "IPv6 public address unknown: " + strings.Join(errs, "; ")
		}
		return nil, ""
	}
	ip := netip.MustParseAddr(id.PublicIP)
	var wg sync.WaitGroup
	var ptrUnknown []string
	wg.Go(func() { ptrUnknown = p.reverse(ctx, ip, id) })
	id.Listings = make([]Listing, len(opt.DNSBL))
	for i, zone := range opt.DNSBL {
		wg.Go(func() { id.Listings[i] = p.dnsbl(ctx, ip, zone) })
	}
	wg.Wait()
	id.Unknown = ptrUnknown
	return id, ""
}

// echoResolver6 is echoResolver limited to the server's IPv6 addresses.
func (p *Prober) echoResolver6(ctx context.Context, server string) (*resolve.Resolver, error) {
	r, err := p.echoResolver(ctx, server)
	if err != nil {
		return nil, err
	}
	var v6 []string
	for _, s := range r.Servers {
		host, _, _ := net.SplitHostPort(s)
		if a, err := netip.ParseAddr(host); err == nil && !a.Unmap().Is4() {
			v6 = append(v6, s)
		}
	}
	r.Servers = v6
	return r, nil
}

// identity6Summary says what receivers see of this machine over IPv6.
// Gmail refuses IPv6 mail from addresses without a reverse name, and wants
// SPF or DKIM on it (https://support.google.com/a/answer/81126).
func identity6Summary(v6 *Identity) string {
	return identityWords(v6, identityWording{
		lead:    "Over IPv6 this machine is ",
		noMatch: ": Gmail refuses mail from such IPv6 senders",
		noPTR:   "Gmail refuses mail from IPv6 addresses without one",
		end:     ". Receivers judge mail sent over IPv6 by this address, and Gmail also requires SPF or DKIM for it.",
	})
}
