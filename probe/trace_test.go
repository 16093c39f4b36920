package probe

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAnalyzePath(t *testing.T) {
	te := func(ttl int, from string) Hop { return Hop{TTL: ttl, Result: HopTimeExceeded, From: from} }
	silent := func(ttl int) Hop { return Hop{TTL: ttl, Result: HopSilent} }
	reached := func(ttl int) Hop { return Hop{TTL: ttl, Result: HopReached} }
	cases := []struct {
		name         string
		p25, cmp     []Hop
		where, words string
		after        int
	}{
		{"home router drops", []Hop{te(1, "192.168.1.1"), silent(2), silent(3)}, []Hop{te(1, "192.168.1.1"), te(2, "203.0.113.1"), reached(3)},
			"hop", "dropped after hop 1 (192.168.1.1, your router)", 1},
		{"ISP drops at hop 3", []Hop{te(1, "192.168.1.1"), te(2, "10.0.0.1"), te(3, "203.0.113.9"), silent(4)}, []Hop{te(1, ""), te(2, ""), te(3, ""), te(4, "198.51.100.1")},
			"hop", "dropped after hop 3 (203.0.113.9, AS64500 EXAMPLE-ISP, ZZ: your ISP's network or farther)", 3},
		{"local rule", []Hop{silent(1), silent(2)}, []Hop{te(1, "192.168.1.1"), reached(2)},
			"local", "on this machine", 0},
		{"a hop that never answers", []Hop{te(1, "192.168.1.1"), silent(2)}, []Hop{te(1, "192.168.1.1"), silent(2)},
			"undetermined", "hop 2 answers neither port", 0},
		{"not blocked after all", []Hop{te(1, "192.168.1.1"), reached(2)}, []Hop{te(1, "192.168.1.1"), reached(2)},
			"undetermined", "no block on the way now", 0},
		{"not permitted", []Hop{{TTL: 1, Result: HopError, Error: "operation not permitted"}}, []Hop{{TTL: 1, Result: HopError}},
			"undetermined", "not traced: operation not permitted", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pt := &PathTrace{ComparePort: 443, Port25: c.p25, Compare: c.cmp}
			analyzePath(pt, 25, func(r string) string {
				if r == "203.0.113.9" {
					return "AS64500 EXAMPLE-ISP, ZZ"
				}
				return ""
			})
			if pt.Where != c.where || pt.After != c.after || !strings.Contains(pt.Text, c.words) {
				t.Errorf("where %q after %d text %q", pt.Where, pt.After, pt.Text)
			}
		})
	}
}

func TestASNOf(t *testing.T) {
	res := fakeDNS(t, nil,
		`9.113.0.203.origin.asn.cymru.com. 60 IN TXT "64500 | 203.0.113.0/24 | ZZ | test | 2026-01-01"`,
		`AS64500.asn.cymru.com. 60 IN TXT "64500 | ZZ | test | 2026-01-01 | EXAMPLE-ISP, ZZ"`)
	p := &Prober{Resolver: res, Timeout: time.Second}
	ctx := context.Background()
	if got := p.asnOf(ctx, netip.MustParseAddr("203.0.113.9")); got != "AS64500 EXAMPLE-ISP, ZZ" {
		t.Errorf("asnOf = %q", got)
	}
	if got := p.asnOf(ctx, netip.MustParseAddr("203.0.113.10")); got != "" {
		t.Errorf("unknown address: %q", got)
	}
	if got := p.asnOf(ctx, netip.MustParseAddr("192.168.1.1")); got != "" {
		t.Errorf("private address: %q", got)
	}
}
