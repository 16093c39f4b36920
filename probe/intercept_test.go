package probe

import (
	"strings"
	"testing"
	"time"
)

// One "ISP" server answers for two unrelated MX hosts at two addresses
// (what a DNAT on port 25 looks like from inside), next to an honest MX.
func TestInterceptionByCertificateAndSharedBanner(t *testing.T) {
	pk := newPKI(t)
	honest := listen(t, "127.0.0.2", 0)
	port := portOf(honest)
	goSMTP(t, honest, "mx.alpha.test", pk.server(t, "mx.alpha.test"), false)
	isp1, isp2 := listen(t, "127.0.0.4", port), listen(t, "127.0.0.5", port)
	goSMTP(t, isp1, "smtp.ispnet.test", pk.server(t, "smtp.ispnet.test"), false, isp2)

	res := fakeDNS(t, nil,
		"alpha.test. 60 IN MX 10 mx.alpha.test.", "mx.alpha.test. 60 IN A 127.0.0.2",
		"one.test. 60 IN MX 10 mx.one.test.", "mx.one.test. 60 IN A 127.0.0.4",
		"two.test. 60 IN MX 10 mx.two.test.", "mx.two.test. 60 IN A 127.0.0.5",
	)
	p := &Prober{Resolver: res, Timeout: time.Second, MXPort: port, Roots: pk.ca.Pool()}
	rep := run(t, p, Request{Domains: []string{"alpha.test", "one.test", "two.test"}})
	for _, d := range rep.Domains {
		e := d.Ends[0]
		if d.Name == "alpha.test" {
			if e.Verdict != Open || len(e.Evidence) != 0 {
				t.Errorf("honest MX: %s %v", e.Verdict, e.Evidence)
			}
			continue
		}
		if e.Verdict != Intercepted || len(e.Evidence) != 2 {
			t.Fatalf("%s: verdict %s evidence %q", d.Name, e.Verdict, e.Evidence)
		}
		if !strings.Contains(e.Evidence[0], "certificate is for smtp.ispnet.test") ||
			!strings.Contains(e.Evidence[1], "2 unrelated MX hosts (mx.one.test, mx.two.test) all greet as smtp.ispnet.test") {
			t.Errorf("%s evidence %q", d.Name, e.Evidence)
		}
		if e.Usable() {
			t.Errorf("an intercepted endpoint counted usable")
		}
	}
	sum := strings.Join(rep.Summary, "\n")
	if !strings.Contains(sum, "port 25 is intercepted on 2 of 3 MX hosts") || !strings.Contains(sum, "smtp.ispnet.test") {
		t.Errorf("summary:\n%s", sum)
	}
}

// A hosting server greeting with its own name for a customer's MX on
// another address is not interception; a lone odd banner is only a note.
func TestSharedHostingIsNotInterception(t *testing.T) {
	pk := newPKI(t)
	a := listen(t, "127.0.0.2", 0)
	port := portOf(a)
	b := listen(t, "127.0.0.3", port)
	goSMTP(t, a, "mx.alpha.test", pk.server(t, "mx.alpha.test", "mx.beta.test"), false, b)
	c := listen(t, "127.0.0.6", port)
	goSMTP(t, c, "mail.hoster.test", pk.server(t, "mx.gamma.test"), false)
	res := fakeDNS(t, nil,
		"alpha.test. 60 IN MX 10 mx.alpha.test.", "mx.alpha.test. 60 IN A 127.0.0.2",
		"beta.test. 60 IN MX 10 mx.beta.test.", "mx.beta.test. 60 IN A 127.0.0.3",
		"gamma.test. 60 IN MX 10 mx.gamma.test.", "mx.gamma.test. 60 IN A 127.0.0.6",
	)
	p := &Prober{Resolver: res, Timeout: time.Second, MXPort: port, Roots: pk.ca.Pool()}
	rep := run(t, p, Request{Domains: []string{"alpha.test", "beta.test", "gamma.test"}})
	for _, e := range rep.Endpoints() {
		if e.Verdict != Open || len(e.Evidence) > 0 {
			t.Errorf("%s: %s %q", e.Host, e.Verdict, e.Evidence)
		}
	}
	g := rep.Domains[2].Ends[0]
	if len(g.Notes) != 1 || !strings.Contains(g.Notes[0], "mail.hoster.test") {
		t.Errorf("gamma notes %q: want the odd-banner note", g.Notes)
	}
}

func TestRegisteredAndCertRelated(t *testing.T) {
	cases := []struct {
		names []string
		host  string
		want  bool
	}{
		{[]string{"mx.alpha.example"}, "mx.alpha.example", true},
		{[]string{"*.alpha.example"}, "mx.alpha.example", true},
		{[]string{"mx.google.com"}, "aspmx.l.google.com", true},
		{[]string{"smtp.ispnet.example"}, "mx.one.example", false},
		{[]string{"*.mail.protection.outlook.com"}, "example-com.mail.protection.outlook.com", true},
		{[]string{"mx.example.co.uk"}, "mail.other.co.uk", false},
	}
	for _, c := range cases {
		if got := certRelated(c.names, c.host); got != c.want {
			t.Errorf("certRelated(%v, %s) = %v", c.names, c.host, got)
		}
	}
}
