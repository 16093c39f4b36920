package probe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// dnsbl looks ip up in one blocklist zone (RFC 5782): the address's
// reversed octets (IPv4) or nibbles (IPv6) under the zone, type A.
// NXDOMAIN means not listed; an answer in 127.0.0.0/8 means listed, the
// code saying why.
func (p *Prober) dnsbl(ctx context.Context, ip netip.Addr, zone string) Listing {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	l := Listing{Zone: zone}
	name := dnsblName(ip, zone)
	reply, err := p.Resolver.Query(ctx, name, dns.TypeA)
	if err != nil {
		l.Error = err.Error()
		return l
	}
	if reply.Msg.Rcode == dns.RcodeNameError {
		return l
	}
	spamhaus := isSpamhaus(zone)
	var other []string // listing codes the zone does not explain
	for _, rr := range reply.Msg.Answer {
		a, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		code, _ := netip.AddrFromSlice(a.A.To4())
		l.Codes = append(l.Codes, code.String())
		switch {
		case !code.IsLoopback():
			// RFC 5782 §2.1 answers are 127.0.0.x. Anything else is most
			// likely a resolver that rewrites NXDOMAIN into an ad server.
			l.Error = fmt.Sprintf("the answer %s is not a blocklist code: does the resolver rewrite NXDOMAIN answers?", code)
		case spamhaus:
			m := spamhausCode(code)
			l.Meaning = append(l.Meaning, m.meaning)
			l.Listed = l.Listed || m.listed
			l.PolicyBlock = l.PolicyBlock || m.policy
			l.QueryRefused = l.QueryRefused || m.refused
		default:
			l.Listed = true
			other = append(other, code.String())
		}
	}
	if len(other) > 0 {
		// Other lists explain a listing in the TXT record of the same name.
		if txt, err := p.Resolver.TXT(ctx, name); err == nil && len(txt) > 0 {
			l.Meaning = append(l.Meaning, txt...)
		} else {
			l.Meaning = append(l.Meaning, "listed (code "+strings.Join(other, ", ")+")")
		}
	}
	return l
}

// dnsblName is the name a DNSBL is asked about for ip (RFC 5782 §2.1 for
// IPv4, §2.4 for IPv6 nibbles).
func dnsblName(ip netip.Addr, zone string) string {
	arpa, _ := dns.ReverseAddr(ip.Unmap().String()) // valid for any valid address
	rev := strings.TrimSuffix(strings.TrimSuffix(arpa, "in-addr.arpa."), "ip6.arpa.")
	return rev + zone
}

// isSpamhaus says whether zone's return codes are Spamhaus's: the public
// zen/sbl/xbl/pbl zones and the DQS ones (KEY.zen.dq.spamhaus.net). Any
// zone with a "zen" label counts too, so tests can stand one in.
func isSpamhaus(zone string) bool {
	if strings.HasSuffix(zone, ".spamhaus.org") || strings.HasSuffix(zone, ".spamhaus.net") {
		return true
	}
	for _, label := range strings.Split(zone, ".") {
		if label == "zen" {
			return true
		}
	}
	return false
}

type spamhausMeaning struct {
	meaning                 string
	listed, policy, refused bool
}

// spamhausCode explains one Spamhaus return code, as published in
// https://www.spamhaus.org/faqs/dnsbl-usage/#200 and the zone table of
// https://docs.spamhaus.com (zen = SBL + CSS + DROP + XBL + PBL + BCL).
// 127.255.255.0/24 are errors about the query itself, "NOT to be
// interpreted as any sort of reputation": not a listing, but unknown.
func spamhausCode(code netip.Addr) spamhausMeaning {
	b := code.As4()
	if b[1] == 255 && b[2] == 255 {
		m := spamhausMeaning{refused: true}
		switch b[3] {
		case 252:
			m.meaning = "query refused: typing error in the DNSBL zone name (127.255.255.252)"
		case 254:
			m.meaning = "query refused: use your own resolver (127.255.255.254: Spamhaus refuses queries through public/open resolvers)"
		case 255:
			m.meaning = "query refused: use your own resolver (127.255.255.255: excessive number of queries)"
		default:
			m.meaning = fmt.Sprintf("query refused: error code %s", code)
		}
		return m
	}
	listed := spamhausMeaning{listed: true}
	switch {
	case b[1] == 0 && b[2] == 0 && b[3] == 2:
		listed.meaning = "SBL: a known spam source or spam operation (127.0.0.2)"
	case b[1] == 0 && b[2] == 0 && b[3] == 3:
		listed.meaning = "SBL CSS: low-reputation sending, snowshoe spam (127.0.0.3)"
	case b[1] == 0 && b[2] == 0 && b[3] >= 4 && b[3] <= 7:
		listed.meaning = fmt.Sprintf("XBL: an exploited or infected host, CBL (%s)", code)
	case b[1] == 0 && b[2] == 0 && b[3] == 9:
		listed.meaning = "SBL DROP: a hijacked or criminal network (127.0.0.9)"
	case b[1] == 0 && b[2] == 0 && b[3] == 10:
		listed.policy = true
		listed.meaning = "PBL (ISP maintained): end-user range, must not send direct (127.0.0.10)"
	case b[1] == 0 && b[2] == 0 && b[3] == 11:
		listed.policy = true
		listed.meaning = "PBL (Spamhaus maintained): end-user range, must not send direct (127.0.0.11)"
	case b[1] == 0 && b[2] == 0 && b[3] == 30:
		listed.meaning = "BCL: a botnet controller (127.0.0.30)"
	default:
		listed.meaning = fmt.Sprintf("listed (code %s)", code)
	}
	return listed
}
