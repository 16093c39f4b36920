package probe

import (
	"bufio"
	"context"
	"crypto/x509"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/smtpclient"
)

func run(t *testing.T, p *Prober, req Request) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Run(ctx, req)
}

func only(t *testing.T, rep *Report) *Endpoint {
	t.Helper()
	ends := rep.Endpoints()
	if len(ends) != 1 {
		t.Fatalf("want 1 endpoint, got %d: %+v", len(ends), ends)
	}
	return ends[0]
}

func TestOpenMXWithVerifiedSTARTTLS(t *testing.T) {
	pk := newPKI(t)
	ln := listen(t, "127.0.0.2", 0)
	goSMTP(t, ln, "mx.alpha.test", pk.server(t, "mx.alpha.test"), false)
	res := fakeDNS(t, nil, "alpha.test. 60 IN MX 10 mx.alpha.test.", "mx.alpha.test. 60 IN A 127.0.0.2")

	p := &Prober{Resolver: res, Timeout: time.Second, MXPort: portOf(ln), Roots: pk.ca.Pool(), Helo: "probe.test"}
	rep := run(t, p, Request{Domains: []string{"alpha.test"}})
	e := only(t, rep)
	if e.Verdict != Open || !e.Usable() {
		t.Fatalf("verdict %s problem %q, want open and usable", e.Verdict, e.Problem)
	}
	if e.BannerHost != "mx.alpha.test" || e.Banner.Code != 220 {
		t.Errorf("banner %+v host %q", e.Banner, e.BannerHost)
	}
	if _, ok := e.EHLO["STARTTLS"]; !ok {
		t.Errorf("STARTTLS missing from pre-TLS EHLO %v", e.EHLO)
	}
	if e.TLS == nil || !e.TLS.Verified || e.TLS.Names[0] != "mx.alpha.test" || e.TLS.Version == "" {
		t.Fatalf("TLS %+v", e.TLS)
	}
	if len(e.AuthTLS) == 0 || e.AuthTLS[0] != "PLAIN" {
		t.Errorf("AUTH after TLS %v, want PLAIN", e.AuthTLS)
	}
	if len(e.AuthPlain) != 0 {
		t.Errorf("AUTH before TLS %v: go-smtp offers it only after TLS", e.AuthPlain)
	}
	if !rep.CanSend() || !strings.Contains(strings.Join(rep.Summary, "\n"), "Port 25 reaches 1 of 1 MX hosts directly (STARTTLS with a verified certificate on 1)") {
		t.Errorf("summary %q", rep.Summary)
	}
}

func TestUntrustedCertificateIsReportedNotFatal(t *testing.T) {
	pk := newPKI(t)
	ln := listen(t, "127.0.0.2", 0)
	goSMTP(t, ln, "mx.alpha.test", pk.server(t, "mx.alpha.test"), false)
	res := fakeDNS(t, nil, "alpha.test. 60 IN MX 10 mx.alpha.test.", "mx.alpha.test. 60 IN A 127.0.0.2")
	p := &Prober{Resolver: res, Timeout: time.Second, MXPort: portOf(ln), Roots: x509.NewCertPool()}
	e := only(t, run(t, p, Request{Domains: []string{"alpha.test"}}))
	if e.TLS == nil || e.TLS.Verified || !strings.Contains(e.TLS.VerifyError, "unknown authority") {
		t.Fatalf("TLS %+v: want unverified with unknown authority", e.TLS)
	}
	if !e.Usable() {
		t.Errorf("an untrusted certificate does not make the MX unusable: %q", e.Problem)
	}
}

func TestImplicitTLSRelay(t *testing.T) {
	pk := newPKI(t)
	ln := listen(t, "127.0.0.3", 0)
	goSMTP(t, ln, "smtp.relay.test", pk.server(t, "smtp.relay.test"), true)
	res := fakeDNS(t, nil, "smtp.relay.test. 60 IN A 127.0.0.3")
	p := &Prober{Resolver: res, Timeout: time.Second, Roots: pk.ca.Pool()}
	spec, err := ParseRelay("smtp.relay.test:" + itoa(portOf(ln)))
	if err != nil {
		t.Fatal(err)
	}
	e := only(t, run(t, p, Request{Relays: []RelaySpec{spec}}))
	// The port is not 465, so the probe speaks STARTTLS first and must say
	// it met TLS instead of a greeting.
	if e.Usable() || e.Problem == "" {
		t.Fatalf("plaintext probe of a TLS port: usable=%v problem %q", e.Usable(), e.Problem)
	}

	rep := run(t, p, Request{Relays: []RelaySpec{{Host: "smtp.relay.test", Ports: []int{portOf(ln)}}}})
	_ = rep
	e2 := &Endpoint{Role: RoleRelay, Host: "smtp.relay.test", Addr: "127.0.0.3", Port: portOf(ln), TLSMode: "implicit"}
	p.defaults()
	p.probeEndpoint(context.Background(), e2)
	if !e2.Usable() || e2.TLS == nil || !e2.TLS.Verified || e2.BannerHost != "smtp.relay.test" {
		t.Fatalf("implicit TLS endpoint: %+v problem %q TLS %+v", e2, e2.Problem, e2.TLS)
	}
	if len(e2.AuthTLS) == 0 {
		t.Errorf("no AUTH after implicit TLS: %v", e2.EHLOTLS)
	}
}

func TestGreetingProblems(t *testing.T) {
	cases := []struct {
		name   string
		script func(c net.Conn, r *bufio.Reader)
		want   string // in Problem, "" for none
		banner int
	}{
		{"554 banner", func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "554 5.7.1 mx.alpha.test no SMTP service here\r\n")
			r.ReadString('\n')
		}, "refuses service at greeting: 554 5.7.1 mx.alpha.test no SMTP service here", 554},
		{"421 banner", func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "421 4.7.0 too many connections\r\n")
		}, "busy or limiting (temporary) at greeting: 421", 421},
		{"greeting never comes", func(c net.Conn, r *bufio.Reader) {
			// Silent until the prober gives up and hangs up; the deadline
			// only ends the wait for a prober that never does.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			r.ReadString('\n')
		}, "no greeting within", 0},
		{"not SMTP", func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n")
			r.ReadString('\n')
		}, "not SMTP", 0},
		{"multi-line banner", func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220-mx.alpha.test ESMTP\r\n220-no UCE\r\n220 welcome\r\n")
			plainSMTP(c, r, "PIPELINING", "SIZE 1000")
		}, "", 220},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln := listen(t, "127.0.0.2", 0)
			scripted(t, ln, tc.script)
			res := fakeDNS(t, nil, "alpha.test. 60 IN MX 10 mx.alpha.test.", "mx.alpha.test. 60 IN A 127.0.0.2")
			p := &Prober{Resolver: res, Timeout: 500 * time.Millisecond, MXPort: portOf(ln)}
			start := time.Now()
			e := only(t, run(t, p, Request{Domains: []string{"alpha.test"}}))
			// Run's bound (probe.go): two timeouts, and one more each for a
			// path trace and a timing comparison.
			if el, most := time.Since(start), 4*p.Timeout; el >= most {
				t.Errorf("took %s, more than %s (4 × the %s timeout)", el, most, p.Timeout)
			}
			if e.Verdict != Open {
				t.Errorf("verdict %s, want open (TCP connected)", e.Verdict)
			}
			if tc.want == "" && e.Problem != "" || !strings.Contains(e.Problem, tc.want) {
				t.Errorf("problem %q, want %q", e.Problem, tc.want)
			}
			if tc.banner != 0 && (e.Banner == nil || e.Banner.Code != tc.banner) {
				t.Errorf("banner %+v, want code %d", e.Banner, tc.banner)
			}
			if tc.name == "multi-line banner" {
				if len(e.Banner.Lines) != 3 || e.Banner.Lines[2] != "welcome" || e.EHLO["SIZE"] != "1000" || !e.Usable() {
					t.Errorf("banner %+v EHLO %v usable %v", e.Banner, e.EHLO, e.Usable())
				}
				if e.TLS != nil {
					t.Errorf("no STARTTLS offered, yet TLS %+v", e.TLS)
				}
			} else if e.Usable() {
				t.Errorf("endpoint with a greeting problem counted usable")
			} else if e.ProblemKind == "" || e.ProblemKind == ProblemOther {
				t.Errorf("problem %q has no kind (%q)", e.Problem, e.ProblemKind)
			}
		})
	}
}

func TestConnectVerdictsAndDNSFacts(t *testing.T) {
	ln := listen(t, "127.0.0.2", 0)
	port := portOf(ln)
	_ = ln.Close() // nothing listens there now: the kernel answers RST
	res := fakeDNS(t, []string{"broken.test"},
		"refused.test. 60 IN MX 10 mx.refused.test.", "mx.refused.test. 60 IN A 127.0.0.2",
		"null.test. 60 IN MX 0 .",
		"implicit.test. 60 IN A 127.0.0.2",
	)
	p := &Prober{Resolver: res, Timeout: 500 * time.Millisecond, MXPort: port}
	rep := run(t, p, Request{Domains: []string{"refused.test", "null.test", "implicit.test", "nosuch.test", "broken.test"}})
	byName := map[string]*Domain{}
	for _, d := range rep.Domains {
		byName[d.Name] = d
	}
	if e := byName["refused.test"].Ends[0]; e.Verdict != Refused {
		t.Errorf("refused.test: %s %q", e.Verdict, e.Error)
	}
	if !byName["null.test"].NullMX || len(byName["null.test"].Ends) != 0 {
		t.Errorf("null.test: %+v", byName["null.test"])
	}
	if d := byName["implicit.test"]; !d.Implicit || len(d.Ends) != 1 || d.Ends[0].Host != "implicit.test" {
		t.Errorf("implicit.test: %+v", d)
	}
	if d := byName["nosuch.test"]; d.DNSError == nil || d.DNSError.Kind != "nxdomain" {
		t.Errorf("nosuch.test: %+v", d.DNSError)
	}
	if d := byName["broken.test"]; d.DNSError == nil || d.DNSError.Kind != "servfail" {
		t.Errorf("broken.test: %+v", d.DNSError)
	}
	sum := strings.Join(rep.Summary, "\n")
	for _, want := range []string{"null.test accepts no mail", "nosuch.test does not exist (NXDOMAIN)", "SERVFAIL", "Port 25 is refused on 2 of 2 MX hosts", "Nothing reachable"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	if rep.CanSend() || rep.Offline {
		t.Errorf("CanSend %v Offline %v", rep.CanSend(), rep.Offline)
	}
}

func TestOfflineEndsFast(t *testing.T) {
	// A resolver address where nothing listens: every query fails at once.
	ln := listen(t, "127.0.0.1", 0)
	addr := ln.Addr().String()
	_ = ln.Close()
	p := &Prober{Timeout: time.Second}
	var err error
	p.Resolver, err = resolve.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep := run(t, p, Request{Domains: []string{"alpha.test"}})
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("offline probe took %s", el)
	}
	if !rep.Offline || !strings.Contains(rep.Summary[0], "offline") {
		t.Errorf("offline %v summary %q", rep.Offline, rep.Summary)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBestPerMXHost: a host is judged by its best address, and hosts keep
// the report's order.
func TestBestPerMXHost(t *testing.T) {
	ok220 := &smtpclient.Reply{Code: 220}
	ends := func(host string, vs ...*Endpoint) []*Endpoint {
		for _, e := range vs {
			e.Host = host
		}
		return vs
	}
	rep := &Report{Domains: []*Domain{
		{Name: "a.example", Ends: ends("mx.a.example",
			&Endpoint{Verdict: Unreachable, Addr: "[2001:db8::1]:25"},
			&Endpoint{Verdict: Open, Banner: ok220, Addr: "192.0.2.1:25"})},
		{Name: "b.example", Ends: ends("mx.b.example",
			&Endpoint{Verdict: Open, Banner: &smtpclient.Reply{Code: 554}, Problem: "554 go away"},
			&Endpoint{Verdict: Intercepted, Banner: ok220},
			&Endpoint{Verdict: Filtered})},
		{Name: "c.example", Ends: ends("mx.c.example", &Endpoint{Verdict: Filtered}, &Endpoint{Verdict: Refused})},
	}}
	hosts, best := rep.BestPerMXHost()
	if strings.Join(hosts, " ") != "mx.a.example mx.b.example mx.c.example" {
		t.Fatalf("hosts %v", hosts)
	}
	for host, want := range map[string]Verdict{"mx.a.example": Open, "mx.b.example": Intercepted, "mx.c.example": Refused} {
		if got := best[host].Verdict; got != want {
			t.Errorf("%s: best %s, want %s", host, got, want)
		}
	}
}
