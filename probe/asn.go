package probe

import (
	"context"
	"net/netip"
	"strings"
)

// asnOf names the network a public address belongs to, for a hop where
// port 25 dies ("your ISP's network, AS…"): Team Cymru's IP-to-ASN
// service answers in DNS (https://www.team-cymru.com/ip-asn-mapping):
//
//	TXT <reversed address>.origin.asn.cymru.com  → "64500 | 192.0.2.0/24 | ZZ | arin | 2001-01-01"
//	TXT AS64500.asn.cymru.com                     → "64500 | ZZ | arin | 2001-01-01 | EXAMPLE-NET, ZZ"
//
// (origin6.asn.cymru.com with nibbles for IPv6). It returns "AS64500
// EXAMPLE-NET, ZZ", or "AS64500" without the name, or "" when not known.
// Best effort: one query through the resolver, and one more for the name.
func (p *Prober) asnOf(ctx context.Context, a netip.Addr) string {
	if notPublic(a) {
		return ""
	}
	zone := "origin.asn.cymru.com"
	if !a.Unmap().Is4() {
		zone = "origin6.asn.cymru.com"
	}
	txt, err := p.Resolver.TXT(ctx, dnsblName(a, zone))
	if err != nil || len(txt) == 0 {
		return ""
	}
	asn := strings.TrimSpace(strings.Fields(strings.Split(txt[0], "|")[0] + " ")[0])
	if asn == "" {
		return ""
	}
	out := "AS" + asn
	if txt, err := p.Resolver.TXT(ctx, out+".asn.cymru.com"); err == nil && len(txt) > 0 {
		if f := strings.Split(txt[0], "|"); len(f) >= 5 {
			if name := strings.TrimSpace(f[4]); name != "" {
				out += " " + name
			}
		}
	}
	return out
}
