package resolve

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/dnstest"
)

// mailZone is a small world of mail domains under .example.
var mailZone = dnstest.Zone{
	Records: map[string][]string{
		"alpha.example. MX": {
			"alpha.example. 300 IN MX 20 mx2.alpha.example.",
			"alpha.example. 300 IN MX 10 MX1.alpha.example.",
		},
		"mx1.alpha.example. A":    {"mx1.alpha.example. 300 IN A 192.0.2.11"},
		"mx1.alpha.example. AAAA": {"mx1.alpha.example. 300 IN AAAA 2001:db8::11"},
		"mx2.alpha.example. A":    {"mx2.alpha.example. 300 IN A 192.0.2.13", "mx2.alpha.example. 300 IN A 192.0.2.12"},

		// No MX, but an address: implicit MX.
		"implicit.example. A": {"implicit.example. 300 IN A 192.0.2.20"},
		// No MX and no address, but the name exists.
		"bare.example. TXT": {"bare.example. 300 IN TXT \"v=spf1 -all\""},

		"null.example. MX":    {"null.example. 300 IN MX 0 ."},
		"null.example. A":     {"null.example. 300 IN A 192.0.2.30"},
		"mixed.example. MX":   {"mixed.example. 300 IN MX 0 .", "mixed.example. 300 IN MX 10 mx.mixed.example."},
		"mx.mixed.example. A": {"mx.mixed.example. 300 IN A 192.0.2.31"},

		// An alias: the answer carries the CNAME, then the target's MX.
		"alias.example. CNAME":  {"alias.example. 300 IN CNAME target.example."},
		"target.example. MX":    {"target.example. 300 IN MX 5 mx.target.example."},
		"mx.target.example. A":  {"mx.target.example. 300 IN A 192.0.2.40"},
		"alias2.example. CNAME": {"alias2.example. 300 IN CNAME implicit.example."},

		"literal.example. MX":    {"literal.example. 300 IN MX 10 192.0.2.50.", "literal.example. 300 IN MX 20 mx.literal.example."},
		"mx.literal.example. A":  {"mx.literal.example. 300 IN A 192.0.2.51"},
		"allliteral.example. MX": {"allliteral.example. 300 IN MX 10 192.0.2.50."},

		// An MX host that does not exist and one with no address.
		"broken.example. MX":         {"broken.example. 300 IN MX 10 gone.broken.example.", "broken.example. 300 IN MX 20 noaddr.broken.example."},
		"noaddr.broken.example. TXT": {"noaddr.broken.example. 300 IN TXT \"x\""},
	},
	Rcodes: map[string]int{
		"fail.example.":     dns.RcodeServerFailure,
		"mx.flaky.example.": dns.RcodeServerFailure,
	},
}

func init() {
	// Twelve equal-preference hosts, to test the shuffle and the cap.
	var many []string
	for i := range 12 {
		host := fmt.Sprintf("mx%02d.many.example.", i)
		many = append(many, fmt.Sprintf("many.example. 300 IN MX 10 %s", host))
		mailZone.Records[host+" A"] = []string{fmt.Sprintf("%s 300 IN A 192.0.2.%d", host, 100+i)}
	}
	mailZone.Records["many.example. MX"] = many
	mailZone.Records["flaky.example. MX"] = []string{"flaky.example. 300 IN MX 10 mx.flaky.example."}
}

func hostNames(hosts []MX) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, fmt.Sprintf("%d %s", h.Pref, h.Host))
	}
	return out
}

func TestMX(t *testing.T) {
	srv := dnstest.Start(t, mailZone)
	tests := []struct {
		domain   string
		hosts    []string // "pref host"
		implicit bool
		null     bool
		note     string // a substring of one note
		kind     Kind   // error kind, when an error is expected
	}{
		{domain: "Alpha.Example.", hosts: []string{"10 mx1.alpha.example", "20 mx2.alpha.example"}},
		{domain: "implicit.example", hosts: []string{"0 implicit.example"}, implicit: true},
		{domain: "alias2.example", hosts: []string{"0 implicit.example"}, implicit: true, note: "alias (CNAME)"},
		{domain: "bare.example", kind: NoData},
		{domain: "nope.example", kind: NXDomain},
		{domain: "fail.example", kind: ServFail},
		{domain: "null.example", null: true},
		{domain: "mixed.example", hosts: []string{"10 mx.mixed.example"}, note: "RFC 7505"},
		{domain: "alias.example", hosts: []string{"5 mx.target.example"}, note: "alias (CNAME) for target.example"},
		{domain: "literal.example", hosts: []string{"20 mx.literal.example"}, note: "IP address"},
		{domain: "allliteral.example", kind: NoData},
		{domain: "exa mple.com", kind: BadName},
		{domain: "192.0.2.1", kind: BadName},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			res, err := testResolver(srv.Addr).MX(t.Context(), tt.domain)
			if tt.kind != Unknown {
				var e *Error
				if !errors.As(err, &e) || e.Kind != tt.kind {
					t.Fatalf("err = %v, want Kind %v", err, tt.kind)
				}
				if e.Temporary() != (tt.kind == ServFail) {
					t.Errorf("Temporary() = %v for %v", e.Temporary(), e.Kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := hostNames(res.Hosts); !slices.Equal(got, tt.hosts) {
				t.Errorf("hosts = %q, want %q", got, tt.hosts)
			}
			if res.Implicit != tt.implicit || res.Null != tt.null {
				t.Errorf("Implicit, Null = %v, %v; want %v, %v", res.Implicit, res.Null, tt.implicit, tt.null)
			}
			if tt.note != "" && !strings.Contains(strings.Join(res.Notes, "\n"), tt.note) {
				t.Errorf("notes %q lack %q", res.Notes, tt.note)
			}
			if res.Reply == nil || res.Reply.Msg == nil {
				t.Error("no evidence reply")
			}
			for _, h := range res.Hosts {
				if len(h.Addrs) == 0 || h.AddrErr != nil {
					t.Errorf("host %s: addrs %v, err %v", h.Host, h.Addrs, h.AddrErr)
				}
			}
		})
	}
}

func TestMXMessages(t *testing.T) {
	srv := dnstest.Start(t, mailZone)
	r := testResolver(srv.Addr)
	_, err := r.MX(t.Context(), "bare.example")
	if want := "lookup MX bare.example: domain has no MX and no address (A/AAAA) from " + srv.Addr; err == nil || err.Error() != want {
		t.Errorf("err = %v\n        want %s", err, want)
	}
	_, err = r.MX(t.Context(), "fail.example")
	if want := "lookup MX fail.example: server failure (SERVFAIL) from " + srv.Addr; err == nil || err.Error() != want {
		t.Errorf("err = %v\n        want %s", err, want)
	}
}

func TestMXAddrs(t *testing.T) {
	srv := dnstest.Start(t, mailZone)
	r := testResolver(srv.Addr)
	res, err := r.MX(t.Context(), "alpha.example")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(res.Hosts[0].Addrs, res.Hosts[1].Addrs)
	if want := "[192.0.2.11 2001:db8::11] [192.0.2.12 192.0.2.13]"; got != want {
		t.Errorf("addrs = %s, want %s", got, want)
	}

	res, err = r.MX(t.Context(), "broken.example")
	if err != nil {
		t.Fatal(err)
	}
	kinds := []Kind{NXDomain, NoData}
	for i, h := range res.Hosts {
		var e *Error
		if len(h.Addrs) != 0 || !errors.As(h.AddrErr, &e) || e.Kind != kinds[i] {
			t.Errorf("%s: addrs %v, err %v; want no addrs and Kind %v", h.Host, h.Addrs, h.AddrErr, kinds[i])
		}
	}

	// A host whose address lookup fails temporarily carries that failure:
	// the sender must defer, not bounce.
	res, err = r.MX(t.Context(), "flaky.example")
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if h := res.Hosts[0]; !errors.As(h.AddrErr, &e) || e.Kind != ServFail || !e.Temporary() {
		t.Errorf("flaky host: err %v, want a temporary ServFail", h.AddrErr)
	}
}

func TestMXShuffleAndCap(t *testing.T) {
	srv := dnstest.Start(t, mailZone)
	order := func(seed uint64) []string {
		r := testResolver(srv.Addr)
		r.Rand = rand.New(rand.NewPCG(seed, seed))
		res, err := r.MX(t.Context(), "many.example")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Hosts) != MaxMXHosts {
			t.Fatalf("got %d hosts, want the cap %d", len(res.Hosts), MaxMXHosts)
		}
		if !strings.Contains(strings.Join(res.Notes, "\n"), "12 MX hosts") {
			t.Errorf("notes %q do not mention the cut", res.Notes)
		}
		return hostNames(res.Hosts)
	}
	if a, b := order(7), order(7); !slices.Equal(a, b) {
		t.Errorf("same seed, different order:\n%q\n%q", a, b)
	}
	firsts := map[string]bool{}
	for seed := range uint64(40) {
		firsts[order(seed)[0]] = true
	}
	if len(firsts) < 4 {
		t.Errorf("over 40 seeds only %d different first hosts: not shuffled", len(firsts))
	}
}

func TestShuffleKeepsPreferenceOrder(t *testing.T) {
	r := &Resolver{Rand: rand.New(rand.NewPCG(3, 4))}
	var rrs []dns.RR
	for i, pref := range []int{30, 10, 20, 10, 30, 10, 20} {
		rr, err := dns.NewRR(fmt.Sprintf("d.example. 1 IN MX %d h%d.example.", pref, i))
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	for range 20 {
		hosts, _, _ := sortMX(rrs)
		r.shuffleEqualPref(hosts)
		if !slices.IsSortedFunc(hosts, func(a, b MX) int { return int(a.Pref) - int(b.Pref) }) {
			t.Fatalf("preferences out of order: %v", hostNames(hosts))
		}
	}
}

func TestAddrs(t *testing.T) {
	srv := dnstest.Start(t, mailZone)
	r := testResolver(srv.Addr)
	got, err := r.Addrs(t.Context(), "MX1.alpha.example")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::11")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Addrs = %v, %v; want %v", got, err, want)
	}
	for name, kind := range map[string]Kind{"nope.example": NXDomain, "bare.example": NoData, "fail.example": ServFail, "-bad.example": BadName} {
		_, err := r.Addrs(t.Context(), name)
		var e *Error
		if !errors.As(err, &e) || e.Kind != kind {
			t.Errorf("Addrs(%s) err = %v, want Kind %v", name, err, kind)
		}
		if IsNotFound(err) != (kind == NXDomain || kind == NoData) {
			t.Errorf("IsNotFound(%v) wrong", err)
		}
	}
}

func BenchmarkMX(b *testing.B) {
	srv := dnstest.Start(b, mailZone)
	r := testResolver(srv.Addr)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.MX(b.Context(), "alpha.example"); err != nil {
			b.Fatal(err)
		}
	}
}
