package dnstest

import (
	"testing"

	"github.com/miekg/dns"
)

func ask(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	resp, err := dns.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAddAndSetRcodeAtRunTime(t *testing.T) {
	shared := Zone{Records: map[string][]string{"a.test. A": {"a.test. 60 IN A 127.0.0.1"}}}
	s := Start(t, shared)
	if r := ask(t, s.Addr, "b.test.", dns.TypeMX); r.Rcode != dns.RcodeNameError {
		t.Fatalf("before Add: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}

	s.Add("B.test. 60 IN MX 10 a.test.", "a.test. 60 IN A 127.0.0.2")
	if r := ask(t, s.Addr, "b.TEST.", dns.TypeMX); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after Add: %s with %d answers, want one MX", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if r := ask(t, s.Addr, "b.test.", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("other type: %s with %d answers, want NODATA", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if r := ask(t, s.Addr, "a.test.", dns.TypeA); len(r.Answer) != 2 {
		t.Errorf("a.test A: %d answers, want the zone's and the added one", len(r.Answer))
	}
	if n := len(shared.Records["a.test. A"]); n != 1 {
		t.Errorf("Add changed the zone passed to Start: %d records", n)
	}

	s.SetRcode("B.test", dns.RcodeServerFailure)
	if r := ask(t, s.Addr, "b.test.", dns.TypeMX); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("after SetRcode: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if q := s.Queries(); len(q) != 5 || q[0].TCP {
		t.Errorf("saw %d queries (first over TCP %v), want 5 over UDP", len(q), len(q) > 0 && q[0].TCP)
	}
}
