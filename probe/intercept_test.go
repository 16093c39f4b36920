package probe

import (
	"context"
	"net"
	"strconv"
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
		if e.Verdict != Intercepted || len(e.Evidence) != 3 {
			t.Fatalf("%s: verdict %s evidence %q", d.Name, e.Verdict, e.Evidence)
		}
		if !strings.Contains(e.Evidence[0], "the same unconfirmed identity (greeting as smtp.ispnet.test) answers for the MX hosts of 2 unrelated domains at 2 addresses (one.test: mx.one.test at 127.0.0.4; two.test: mx.two.test at 127.0.0.5)") ||
			!strings.Contains(e.Evidence[1], "certificate is for smtp.ispnet.test") ||
			!strings.Contains(e.Evidence[2], "greeting names smtp.ispnet.test") {
			t.Errorf("%s evidence %q", d.Name, e.Evidence)
		}
		if e.has(SignalConfirmed) || e.genuine() || !e.has(SignalSharedIdentity) {
			t.Errorf("%s signals %+v", d.Name, e.Signals)
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
	if len(g.Notes) != 2 || !strings.Contains(g.Notes[0], "mail.hoster.test") || !strings.Contains(g.Notes[1], "not interception: the certificate verifies") {
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

// Issue 14's shared hosting, in process: one server, one certificate for
// mx1.open.test (from a CA this machine does not trust), on two addresses.
// The implicit MX shop.test shares the confirmed address; hosted.test's MX
// is on the other address, where only the certificate ties it to the
// confirmed server. Nothing is intercepted.
func TestForwardConfirmedAndSameCertificate(t *testing.T) {
	pk := newPKI(t)
	a := listen(t, "127.0.0.2", 0)
	port := portOf(a)
	b := listen(t, "127.0.0.3", port)
	goSMTP(t, a, "mx1.open.test", pk.server(t, "mx1.open.test"), false, b)
	res := fakeDNS(t, nil,
		"open.test. 60 IN MX 10 mx1.open.test.", "mx1.open.test. 60 IN A 127.0.0.2",
		"shop.test. 60 IN A 127.0.0.2",
		"hosted.test. 60 IN MX 10 mx.hosted.test.", "mx.hosted.test. 60 IN A 127.0.0.3",
	)
	p := &Prober{Resolver: res, Timeout: time.Second, MXPort: port}
	rep := run(t, p, Request{Domains: []string{"open.test", "shop.test", "hosted.test"}})
	want := map[string]SignalKind{"shop.test": SignalConfirmed, "hosted.test": SignalSameCert}
	for _, d := range rep.Domains {
		e := d.Ends[0]
		if e.Verdict != Open || len(e.Evidence) > 0 || e.TLS == nil || e.TLS.Verified {
			t.Errorf("%s: %s %q TLS %+v", d.Name, e.Verdict, e.Evidence, e.TLS)
		}
		if k, ok := want[d.Name]; ok && !e.has(k) {
			t.Errorf("%s: no %s signal in %+v", d.Name, k, e.Signals)
		}
	}
	if n := rep.Domains[2].Ends[0].Notes; len(n) < 2 || !strings.Contains(strings.Join(n, "\n"), "not interception: it presents the same certificate") {
		t.Errorf("hosted.test notes %q", n)
	}
}

// A well-known provider's MX answering as someone else is corroboration
// enough on its own; answering with the provider's name under a
// certificate this machine cannot verify is not.
func TestProviderIdentity(t *testing.T) {
	pk := newPKI(t)
	fake := listen(t, "127.0.0.7", 0)
	port := portOf(fake)
	goSMTP(t, fake, "smtp.ispnet.test", pk.server(t, "smtp.ispnet.test"), false)
	real := listen(t, "127.0.0.8", port)
	goSMTP(t, real, "mx.google.com", pk.server(t, "mx.google.com"), false)
	res := fakeDNS(t, nil,
		"gsuite.test. 60 IN MX 5 gmail-smtp-in.l.google.com.", "gmail-smtp-in.l.google.com. 60 IN A 127.0.0.7",
		"workspace.test. 60 IN MX 1 smtp.google.com.", "smtp.google.com. 60 IN A 127.0.0.8",
	)
	p := &Prober{Resolver: res, Timeout: time.Second, MXPort: port}
	rep := run(t, p, Request{Domains: []string{"gsuite.test", "workspace.test"}})
	e := rep.Domains[0].Ends[0]
	if e.Verdict != Intercepted || !e.has(SignalProviderMismatch) ||
		!strings.Contains(e.Evidence[0], "gmail-smtp-in.l.google.com is Google's MX host") || !strings.Contains(e.Evidence[0], "support.google.com") {
		t.Errorf("gsuite.test: %s %q", e.Verdict, e.Evidence)
	}
	if g := rep.Domains[1].Ends[0]; g.Verdict != Open || len(g.Signals) != 0 {
		t.Errorf("workspace.test: %s %+v", g.Verdict, g.Signals)
	}
}

// One MX with a foreign, unconfirmed identity is only a note, until its
// port 25 answers far sooner than another port of the same address: the
// dialer here adds a round trip to every port but 25, as the internet
// would for the real host behind a proxy near this machine. The added
// delay is many times the measured loopback handshake, so the test does
// not depend on how fast this machine is.
func TestTimingCorroborates(t *testing.T) {
	pk := newPKI(t)
	ln := listen(t, "127.0.0.9", 0)
	port := portOf(ln)
	goSMTP(t, ln, "smtp.ispnet.test", pk.server(t, "smtp.ispnet.test"), false)
	res := fakeDNS(t, nil, "one.test. 60 IN MX 10 mx.one.test.", "mx.one.test. 60 IN A 127.0.0.9")
	closed := listen(t, "127.0.0.9", 0)
	other := portOf(closed)
	_ = closed.Close() // answers with a reset: a round trip too

	for _, far := range []bool{false, true} {
		p := &Prober{Resolver: res, Timeout: 2 * time.Second, MXPort: port, TimingPorts: []int{other}}
		loopback := measureHandshake(t, "127.0.0.9:"+strconv.Itoa(other))
		delay := max(20*loopback, 100*time.Millisecond)
		if far {
			p.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				if !strings.HasSuffix(addr, ":"+strconv.Itoa(port)) {
					time.Sleep(delay)
				}
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
		}
		rep := run(t, p, Request{Domains: []string{"one.test"}})
		e := rep.Domains[0].Ends[0]
		if !e.has(SignalTiming) {
			t.Fatalf("far=%v: no timing signal: %+v", far, e.Signals)
		}
		if far && (e.Verdict != Intercepted || !strings.Contains(e.Evidence[0], "something nearer than the MX answered port 25")) {
			t.Errorf("far=%v (delay %s): %s %q", far, delay, e.Verdict, e.Evidence)
		}
		if !far && (e.Verdict != Open || len(e.Notes) != 2) {
			t.Errorf("far=%v: %s notes %q signals %+v", far, e.Verdict, e.Notes, e.Signals)
		}
	}
}

// measureHandshake is the fastest of a few connects to addr on this
// machine now: the precision the timing test's delay is scaled from.
func measureHandshake(t *testing.T, addr string) time.Duration {
	t.Helper()
	best := time.Hour
	for range 5 {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		d := time.Since(start)
		if err == nil {
			_ = c.Close()
		}
		best = min(best, d)
	}
	return best
}
