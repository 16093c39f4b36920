package resolve

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/mailroute/mailroute/internal/dnstest"
)

var recordZone = dnstest.Zone{Records: map[string][]string{
	"10.2.0.192.in-addr.arpa. PTR": {"10.2.0.192.in-addr.arpa. 300 IN PTR MX1.Alpha.Example."},
	// RFC 2317 classless delegation: the PTR lives behind a CNAME.
	"20.2.0.192.in-addr.arpa. CNAME":     {"20.2.0.192.in-addr.arpa. 300 IN CNAME 20.16-31.2.0.192.in-addr.arpa."},
	"20.16-31.2.0.192.in-addr.arpa. PTR": {"20.16-31.2.0.192.in-addr.arpa. 300 IN PTR mail.beta.example."},
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR": {
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6.alpha.example.",
	},

	"alpha.example. TXT": {
		`alpha.example. 300 IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"`,
		`alpha.example. 300 IN TXT "hello"`,
	},
	"alpha.example. A": {"alpha.example. 300 IN A 192.0.2.1"},

	"_submission._tcp.alpha.example. SRV": {
		"_submission._tcp.alpha.example. 300 IN SRV 20 0 587 backup.alpha.example.",
		"_submission._tcp.alpha.example. 300 IN SRV 10 60 587 b.alpha.example.",
		"_submission._tcp.alpha.example. 300 IN SRV 10 40 587 A.alpha.example.",
		"_submission._tcp.alpha.example. 300 IN SRV 10 0 2525 zero.alpha.example.",
	},
	"_submissions._tcp.alpha.example. SRV": {"_submissions._tcp.alpha.example. 300 IN SRV 0 0 0 ."},
	"_imap._tcp.alpha.example. SRV": {
		"_imap._tcp.alpha.example. 300 IN SRV 0 0 0 .",
		"_imap._tcp.alpha.example. 300 IN SRV 10 0 143 imap.alpha.example.",
	},
	"_pop3._tcp.alpha.example. TXT": {`_pop3._tcp.alpha.example. 300 IN TXT "x"`},
}}

func TestPTR(t *testing.T) {
	srv := dnstest.Start(t, recordZone)
	r := testResolver(srv.Addr)
	tests := []struct {
		addr string
		want []string
		kind Kind
	}{
		{addr: "192.0.2.10", want: []string{"mx1.alpha.example"}},
		{addr: "::ffff:192.0.2.10", want: []string{"mx1.alpha.example"}},
		{addr: "192.0.2.20", want: []string{"mail.beta.example"}},
		{addr: "2001:db8::1", want: []string{"v6.alpha.example"}},
		{addr: "192.0.2.99", kind: NXDomain},
	}
	for _, tt := range tests {
		got, err := r.PTR(t.Context(), netip.MustParseAddr(tt.addr))
		if tt.kind != Unknown {
			var e *Error
			if !errors.As(err, &e) || e.Kind != tt.kind || e.Name != tt.addr {
				t.Errorf("PTR(%s) err = %v, want Kind %v naming the address", tt.addr, err, tt.kind)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("PTR(%s) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	if _, err := r.PTR(t.Context(), netip.Addr{}); err == nil {
		t.Error("PTR(invalid): no error")
	}
}

func TestTXT(t *testing.T) {
	srv := dnstest.Start(t, recordZone)
	r := testResolver(srv.Addr)
	got, err := r.TXT(t.Context(), "alpha.example")
	want := []string{"v=spf1 ip4:192.0.2.0/24 -all", "hello"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("TXT = %q, %v; want %q", got, err, want)
	}
	_, err = r.TXT(t.Context(), "_submission._tcp.alpha.example")
	var e *Error
	if !errors.As(err, &e) || e.Kind != NoData {
		t.Errorf("TXT on a name without TXT: err = %v, want Kind NoData", err)
	}
}

func TestSRV(t *testing.T) {
	srv := dnstest.Start(t, recordZone)
	tests := []struct {
		service, domain string
		want            []string // "prio weight port target", or nil
		kind            Kind
		unavailable     bool
	}{
		{service: "imap", domain: "alpha.example", want: []string{"10 0 143 imap.alpha.example"}},
		{service: "submissions", domain: "alpha.example", kind: NoData, unavailable: true},
		{service: "pop3", domain: "alpha.example", kind: NoData},
		{service: "pop3s", domain: "alpha.example", kind: NXDomain},
		{service: "submission", domain: "bad_domain.example", kind: BadName},
	}
	for _, tt := range tests {
		got, err := testResolver(srv.Addr).SRV(t.Context(), tt.service, "tcp", tt.domain)
		if tt.kind != Unknown {
			var e *Error
			if !errors.As(err, &e) || e.Kind != tt.kind || errors.Is(err, ErrServiceUnavailable) != tt.unavailable {
				t.Errorf("SRV(%s) err = %v, want Kind %v (unavailable %v)", tt.service, err, tt.kind, tt.unavailable)
			}
			if tt.kind != BadName && !IsNotFound(err) {
				t.Errorf("SRV(%s): IsNotFound false", tt.service)
			}
			continue
		}
		if err != nil || !slices.Equal(srvStrings(got), tt.want) {
			t.Errorf("SRV(%s) = %q, %v; want %q", tt.service, srvStrings(got), err, tt.want)
		}
	}
}

func srvStrings(srvs []SRV) []string {
	var out []string
	for _, s := range srvs {
		out = append(out, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target))
	}
	return out
}

func TestSRVOrder(t *testing.T) {
	srv := dnstest.Start(t, recordZone)
	counts := map[string]int{}
	const runs = 400
	for seed := range uint64(runs) {
		r := testResolver(srv.Addr)
		r.Rand = rand.New(rand.NewPCG(seed, 1))
		got, err := r.SRV(t.Context(), "_submission", "_tcp", "alpha.example")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 {
			t.Fatalf("got %d records, want 4", len(got))
		}
		// Priority 10 first (weighted), zero weight last within it, then
		// priority 20.
		if got[2].Target != "zero.alpha.example" || got[3].Target != "backup.alpha.example" {
			t.Fatalf("order %q breaks RFC 2782 priority or zero-weight rule", srvStrings(got))
		}
		counts[got[0].Target]++
	}
	// Weights 60:40, so b should come first about 60% of the time.
	if b := counts["b.alpha.example"]; b < runs*45/100 || b > runs*75/100 {
		t.Errorf("b.alpha.example (weight 60) first in %d of %d runs; weights not applied", b, runs)
	}
}
