package probe_test

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/probe"
)

// TestLabWherePort25Dies: a router namespace between the lab and a server
// namespace (veth, documentation ranges) drops port 25 to one address; the
// trace puts the drop after hop 1, the router. A local OUTPUT rule for the
// other address is reported as this machine's.
func TestLabWherePort25Dies(t *testing.T) {
	// The router's network, as Team Cymru's IP-to-ASN service would name it.
	asn := []string{
		`txt-record=254.2.0.192.origin.asn.cymru.com,"64500 | 192.0.2.0/24 | ZZ | test | 2026-01-01"`,
		`txt-record=AS64500.asn.cymru.com,"64500 | ZZ | test | 2026-01-01 | LAB-ROUTER, ZZ"`,
	}
	l := lab.Start(t, lab.Options{ExtraDNS: append(lab.RouterDNS(), asn...)})
	l.StartRouter(t)
	if err := l.Filter(lab.FarMX2Addr+"/32", 25); err != nil {
		t.Fatal(err)
	}
	rep, _ := probeLab(t, l, "--timeout", "2s", "--to", lab.FarDomain, "--to", lab.Far2Domain)

	far := domain(t, rep, lab.FarDomain).Ends[0]
	if far.Verdict != probe.Filtered || far.Path == nil {
		t.Fatalf("far: %s path %+v", far.Verdict, far.Path)
	}
	if p := far.Path; p.Where != "hop" || p.After != 1 || p.Router != lab.RouterLANAddr || p.ComparePort == 0 || p.RouterAS != "AS64500 LAB-ROUTER, ZZ" {
		t.Errorf("far path: %+v", p)
	}
	if h := far.Path.Port25[0]; h.Result != probe.HopTimeExceeded || h.From != lab.RouterLANAddr {
		t.Errorf("far: port 25 at TTL 1: %+v", h)
	}
	if h := far.Path.Compare[1]; h.Result != probe.HopReached {
		t.Errorf("far: port %d at TTL 2: %+v, want the MX's reset", far.Path.ComparePort, h)
	}

	near := domain(t, rep, lab.Far2Domain).Ends[0]
	if near.Verdict != probe.Filtered || near.Path == nil || near.Path.Where != "local" {
		t.Fatalf("far2: %s path %+v", near.Verdict, near.Path)
	}
	if h := near.Path.Compare[0]; h.Result != probe.HopTimeExceeded || h.From != lab.RouterLANAddr {
		t.Errorf("far2: port %d at TTL 1: %+v", near.Path.ComparePort, h)
	}
	sum := strings.Join(rep.Summary, "\n")
	t.Logf("probe with traces took %s; summary:\n%s", rep.Elapsed, sum)
	for _, want := range []string{
		"Port 25 to " + lab.FarMXHost + " (" + lab.FarMXAddr + "): dropped after hop 1 (" + lab.RouterLANAddr + ", the first router, AS64500 LAB-ROUTER, ZZ)",
		"Port 25 to " + lab.Far2MXHost + " (" + lab.FarMX2Addr + "): on this machine: port 25's SYNs get no answer even with a TTL of 1",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}
