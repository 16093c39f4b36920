package advisor

import (
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/probe"
)

// find returns the findings whose title contains s.
func find(fs []Finding, s string) []Finding {
	var out []Finding
	for _, f := range fs {
		if strings.Contains(f.Title, s) {
			out = append(out, f)
		}
	}
	return out
}

func one(t *testing.T, fs []Finding, title string, sev Severity, words ...string) Finding {
	t.Helper()
	got := find(fs, title)
	if len(got) != 1 {
		t.Fatalf("%d findings titled %q in:\n%s", len(got), title, dumpFindings(fs))
	}
	f := got[0]
	if f.Severity != sev {
		t.Errorf("%q: severity %s, want %s", f.Title, f.Severity, sev)
	}
	for _, w := range words {
		if !strings.Contains(f.Meaning+" "+f.Action, w) {
			t.Errorf("%q lacks %q:\n%s\n%s", f.Title, w, f.Meaning, f.Action)
		}
	}
	return f
}

func dumpFindings(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("[" + string(f.Severity) + "] " + f.Topic + ": " + f.Title + "\n    " + f.Meaning + "\n    -> " + f.Action + "\n")
	}
	return b.String()
}

// TestExplainVerdicts: one explanation per port-25 verdict, said once for
// all the hosts that share it.
func TestExplainVerdicts(t *testing.T) {
	for _, c := range []struct {
		v     probe.Verdict
		title string
		sev   Severity
		words []string
	}{
		{probe.Open, "Port 25 works", SevOK, []string{"all 3 mail servers tried"}},
		{probe.Filtered, "Your network drops outbound port 25", SevProblem, []string{"Most ISPs", "465 or 587", "login", "5s"}},
		{probe.Refused, "Outbound port 25 is refused", SevProblem, []string{"firewall", "allow outbound TCP port 25"}},
		{probe.Unreachable, "The network will not route to port 25", SevProblem, []string{"unreachable", "465 or 587"}},
		{probe.Intercepted, "Your ISP intercepts port 25", SevProblem, []string{"certificate is for smtp.isp.invalid", "relay"}},
		{probe.Failed, "Port 25 connections failed", SevWarning, []string{"mailroute probe"}},
	} {
		t.Run(string(c.v), func(t *testing.T) {
			r := rep([]probe.Verdict{c.v, c.v, c.v}, nil, nil)
			r.Timeout = probe.Duration(5 * time.Second)
			for _, e := range r.Endpoints() {
				if c.v == probe.Failed {
					e.Error = "socket: too many open files"
				}
			}
			fs := Explain(r)
			f := one(t, fs, c.title, c.sev, c.words...)
			if len(f.Hosts) != 3 || !strings.Contains(f.Meaning, "mx1.alpha.invalid, mx2.alpha.invalid and mx3.alpha.invalid") {
				t.Errorf("hosts %v; meaning %s", f.Hosts, f.Meaning)
			}
			if len(find(fs, "port 25")) > 1 {
				t.Errorf("port 25 explained more than once:\n%s", dumpFindings(fs))
			}
		})
	}
	// A host filtered beside an open one is that host's problem, not this
	// network's: the same network reached the other on port 25 (issue 14).
	fs := Explain(rep([]probe.Verdict{probe.Open, probe.Filtered}, nil, nil))
	one(t, fs, "Port 25 works", SevOK, "1 of 2 mail servers (mx1.alpha.invalid)")
	one(t, fs, "your network is not blocking it", SevInfo, "mx2.alpha.invalid", "the problem is at those servers")
	if f := find(fs, "drops outbound"); len(f) != 0 {
		t.Errorf("this network blamed:\n%s", dumpFindings(fs))
	}
}

// TestExplainGreetings: each way an open endpoint's conversation stops has
// its own words; the server's reply is quoted.
func TestExplainGreetings(t *testing.T) {
	for _, c := range []struct {
		kind                   probe.ProblemKind
		detail, problem, title string
		words                  []string
	}{
		{probe.ProblemGreetingRefused, "554 5.7.1 no mail from dynamic addresses", "the server refuses service at greeting: 554 5.7.1 no mail from dynamic addresses", "says no as soon as it answers", []string{`"554 5.7.1 no mail from dynamic addresses"`, "blocklists"}},
		{probe.ProblemGreetingBusy, "421 4.7.0 too many connections", "the server is busy or limiting (temporary) at greeting: 421 4.7.0 too many connections", "busy or limiting", []string{`"421 4.7.0 too many connections"`, "few minutes"}},
		{probe.ProblemNoGreeting, "", "no greeting within 10s: the port accepts connections but nothing speaks SMTP", "says nothing", []string{"firewall or proxy"}},
		{probe.ProblemNotSMTP, `"HTTP/1.1 400 Bad Request"`, `not SMTP: the server's first line is "HTTP/1.1 400 Bad Request"`, "Something other than a mail server", []string{`"HTTP/1.1 400 Bad Request"`, "captive portal"}},
		{probe.ProblemPlaintextOnTLS, "220 x ESMTP", "expected TLS from the first byte (port 465), got a plaintext greeting: 220 x ESMTP", "without encryption", []string{"587"}},
		{probe.ProblemTLS, "remote error: tls: protocol version not supported", "TLS handshake failed: remote error: tls: protocol version not supported", "encrypted connection", []string{"protocol version not supported"}},
		{probe.ProblemEHLO, "502 5.5.2 command not recognized", "EHLO failed: 502 5.5.2 command not recognized", "after the hello", []string{"502 5.5.2"}},
	} {
		t.Run(c.title, func(t *testing.T) {
			r := rep(nil, map[int]probe.Verdict{465: probe.Open, 587: probe.Open}, nil)
			for _, e := range r.Relays[0].Ends {
				e.Problem, e.ProblemKind, e.ProblemDetail = c.problem, c.kind, c.detail
			}
			fs := Explain(r)
			f := one(t, fs, c.title, SevProblem, c.words...)
			if !strings.Contains(f.Title, "smtp.relay.invalid port 465 and smtp.relay.invalid port 587") {
				t.Errorf("title %q should name both ports once", f.Title)
			}
		})
	}
}

// TestExplainCertificates: untrusted, expired, not yet valid and another
// name, each in its words; on port 25 they are only information.
func TestExplainCertificates(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		tls   probe.TLSInfo
		title string
		words []string
	}{
		{probe.TLSInfo{ServerName: "smtp.relay.invalid", Names: []string{"smtp.relay.invalid"}, Issuer: "CN=Lab CA,O=Lab", NotAfter: now.Add(time.Hour)},
			"is not trusted by this machine", []string{`"Lab CA"`, "--tls-ca FILE"}},
		{probe.TLSInfo{ServerName: "smtp.relay.invalid", Names: []string{"smtp.relay.invalid"}, NotAfter: now.Add(-48 * time.Hour)},
			"expired on 2026-02-27", []string{"out of date", "password"}},
		{probe.TLSInfo{ServerName: "smtp.relay.invalid", Names: []string{"smtp.relay.invalid"}, NotBefore: now.Add(48 * time.Hour), NotAfter: now.Add(96 * time.Hour)},
			"not valid until 2026-03-03", []string{"clock"}},
		{probe.TLSInfo{ServerName: "smtp.relay.invalid", Names: []string{"mail.hoster.invalid", "*.hoster.invalid"}, NotAfter: now.Add(time.Hour)},
			"is for another name (mail.hoster.invalid, *.hoster.invalid)", []string{"not for smtp.relay.invalid"}},
	} {
		t.Run(c.title, func(t *testing.T) {
			r := rep(nil, map[int]probe.Verdict{465: probe.Open, 587: probe.Open}, nil)
			r.StartedAt = now
			for _, e := range r.Relays[0].Ends {
				tls := c.tls
				e.TLS = &tls
			}
			fs := Explain(r)
			one(t, fs, c.title, SevProblem, c.words...)

			m := rep([]probe.Verdict{probe.Open}, nil, nil)
			m.StartedAt = now
			tls := c.tls
			tls.ServerName = "mx1.alpha.invalid"
			if tls.Names[0] == "smtp.relay.invalid" {
				tls.Names = []string{"mx1.alpha.invalid"}
			}
			m.Domains[0].Ends[0].TLS = &tls
			f := one(t, Explain(m), "certificate", SevInfo, "does not stop mail")
			if f.Action != "" {
				t.Errorf("an MX certificate needs no action: %q", f.Action)
			}
		})
	}
	if !nameMatches("*.relay.invalid", "smtp.relay.invalid") || nameMatches("*.relay.invalid", "a.b.relay.invalid") || nameMatches("*.invalid", "invalid") {
		t.Error("nameMatches")
	}
}

// TestExplainDNS: NXDOMAIN, null MX, SERVFAIL, REFUSED, timeouts, implicit
// MX; offline says only that.
func TestExplainDNS(t *testing.T) {
	r := &probe.Report{Resolver: []string{"192.0.2.53:53"}, Domains: []*probe.Domain{
		{Name: "nosuch.invalid", DNSError: &probe.DNSError{Kind: "nxdomain", Message: "nosuch.invalid: no such domain"}},
		{Name: "null.invalid", NullMX: true},
		{Name: "broken.invalid", DNSError: &probe.DNSError{Kind: "servfail", Message: "SERVFAIL"}},
		{Name: "picky.invalid", DNSError: &probe.DNSError{Kind: "refused", Message: "REFUSED"}},
		{Name: "slow.invalid", DNSError: &probe.DNSError{Kind: "timeout", Message: "no answer from 192.0.2.53:53 within 2s"}},
		{Name: "gamma.invalid", Implicit: true},
	}}
	fs := Explain(r)
	one(t, fs, "nosuch.invalid does not exist", SevWarning, "NXDOMAIN", "spelling")
	one(t, fs, "null.invalid accepts no mail", SevWarning, "null MX", "off your list")
	one(t, fs, "The DNS for broken.invalid is broken right now", SevWarning, "SERVFAIL", "later")
	one(t, fs, "refused to look up picky.invalid", SevWarning, "192.0.2.53:53", "--resolver IP")
	one(t, fs, "No DNS answer for slow.invalid", SevWarning, "within 2s")
	one(t, fs, "gamma.invalid names no mail server", SevInfo, "MX record")

	r.Offline = true
	fs = Explain(r)
	if len(fs) != 1 {
		t.Fatalf("offline: %s", dumpFindings(fs))
	}
	one(t, fs, "offline", SevProblem, "--resolver IP")

	// A relay name that does not exist says to check its spelling.
	r = rep(nil, nil, nil)
	r.Relays = []*probe.Relay{{Host: "smtp.relay.invlaid", Source: "--relay", Error: &probe.DNSError{Kind: "nxdomain"}}}
	one(t, Explain(r), "The relay smtp.relay.invlaid does not exist", SevWarning, "SMTP settings")
}

// TestExplainIdentity: no PTR, not forward-confirmed, PBL, other listings,
// refused queries, unknown address, and the good case.
func TestExplainIdentity(t *testing.T) {
	ip := "198.51.100.7"
	for _, c := range []struct {
		name  string
		id    probe.Identity
		title string
		sev   Severity
		words []string
	}{
		{"fcrdns", *clean(), "has a proper name", SevOK, []string{"out.example.invalid points back"}},
		{"no ptr", probe.Identity{PublicIP: ip}, "has no name", SevWarning, []string{"PTR", ip, "Gmail", "relay"}},
		{"not confirmed", probe.Identity{PublicIP: ip, PTR: []string{"host.isp.invalid"}}, "does not point back", SevWarning, []string{"host.isp.invalid", "mismatch"}},
		{"unknown", probe.Identity{Unknown: []string{"public address unknown: myip.invalid A @192.0.2.1: timeout"}}, "public address is unknown", SevWarning, []string{"myip.invalid A @192.0.2.1: timeout", "relay"}},
		{"pbl", probe.Identity{PublicIP: ip, Listings: []probe.Listing{{Zone: "zen.spamhaus.org", Listed: true, PolicyBlock: true, Codes: []string{"127.0.0.10"}}}},
			"listed as a home connection (zen.spamhaus.org, PBL)", SevWarning, []string{"not a spam accusation", "SMTP server"}},
		{"sbl", probe.Identity{PublicIP: ip, Listings: []probe.Listing{{Zone: "zen.spamhaus.org", Listed: true, Codes: []string{"127.0.0.4"}, Meaning: []string{"XBL: an exploited or infected host, CBL (127.0.0.4)"}}}},
			"on a spam blocklist (zen.spamhaus.org)", SevWarning, []string{"XBL", "check.spamhaus.org", "infected"}},
		{"refused query", probe.Identity{PublicIP: ip, Listings: []probe.Listing{{Zone: "zen.spamhaus.org", QueryRefused: true, Meaning: []string{"query refused: use your own resolver (127.255.255.254)"}}}},
			"zen.spamhaus.org would not answer", SevInfo, []string{"public DNS servers", "--resolver IP"}},
		{"clean", probe.Identity{PublicIP: ip, Listings: []probe.Listing{{Zone: "bl.example.invalid"}}}, "not on bl.example.invalid", SevOK, nil},
		{"list error", probe.Identity{PublicIP: ip, Listings: []probe.Listing{{Zone: "bl.example.invalid", Error: "timeout"}}}, "bl.example.invalid could not be asked", SevInfo, []string{"unknown"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rep(nil, nil, &c.id)
			one(t, Explain(r), c.title, c.sev, c.words...)
		})
	}
}

// TestExplainLogin: accepted, refused with the server's words, and the
// checks that stop before a password is sent.
func TestExplainLogin(t *testing.T) {
	base := probe.Login{Host: "smtp.relay.invalid", Port: 465, TLSMode: "implicit"}
	for _, c := range []struct {
		name  string
		mod   func(*probe.Login)
		title string
		sev   Severity
		words []string
	}{
		{"ok", func(l *probe.Login) {
			l.OK, l.Mechanism, l.Elapsed = true, "PLAIN", probe.Duration(42*time.Millisecond)
		}, "works", SevOK, []string{"AUTH PLAIN", "42ms", "Nothing was sent"}},
		{"refused", func(l *probe.Login) { l.Reply = "535 5.7.8 Error: authentication failed" }, "refused the login", SevProblem, []string{`"535 5.7.8 Error: authentication failed"`, "app password"}},
		{"cert", func(l *probe.Login) {
			l.Error = "TLS certificate not accepted: the certificate is signed by an unknown authority (Lab CA)"
		}, "certificate is not trusted", SevProblem, []string{"unknown authority", "--tls-ca"}},
		{"clear", func(l *probe.Login) {
			l.Error = "the server does not offer STARTTLS: refusing to send the password in clear (allow it with --insecure-auth)"
		}, "not encrypted", SevProblem, []string{"--insecure-auth"}},
		{"no auth", func(l *probe.Login) {
			l.Error = "the server offers no AUTH, even after TLS: it takes no logins here"
		}, "does not take this login", SevProblem, []string{"465 or 587"}},
		{"connect", func(l *probe.Login) { l.Error = "connection refused (TCP reset)" }, "could not be tried", SevProblem, []string{"connection refused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := base
			c.mod(&l)
			r := rep(nil, nil, nil)
			r.Login = &l
			one(t, Explain(r), c.title, c.sev, c.words...)
		})
	}
}

func TestExplainMeasure(t *testing.T) {
	m := &probe.Measurement{Host: "smtp.relay.invalid", Port: 465, SessionLimit: 3, SessionReply: "421 4.7.0 too many connections",
		Transactions: 5, TransactionReply: "450 4.7.1 rate limit", Window: probe.Duration(10 * time.Second)}
	f := ExplainMeasure(m)
	if f.Title != "smtp.relay.invalid:465 allows 3 sessions at once and 5 messages per 10s" || !strings.Contains(f.Meaning, `"421 4.7.0 too many connections"`) ||
		!strings.Contains(f.Meaning, "without sending") {
		t.Errorf("%+v", f)
	}
	f = ExplainMeasure(&probe.Measurement{Host: "h.invalid", Port: 587, Error: "connection refused"})
	if f.Severity != SevWarning || !strings.Contains(f.Title, "failed") {
		t.Errorf("%+v", f)
	}
}

// TestExplainRelayPorts: usable ports are named with their encryption;
// closed ports are information when another answers, a problem when none
// does; a relay without a login over TLS says so.
func TestExplainRelayPorts(t *testing.T) {
	fs := Explain(rep(nil, allRelay, nil))
	one(t, fs, "smtp.relay.invalid answers on 465 (encrypted from the start) and 587 (encryption after the greeting)", SevOK)
	one(t, fs, "ports 2525 and 25 closed", SevInfo, "normal")

	fs = Explain(rep(nil, map[int]probe.Verdict{465: probe.Filtered, 587: probe.Filtered}, nil))
	one(t, fs, "ports 465 and 587 silent", SevProblem, "firewall", "help pages")

	r := rep(nil, map[int]probe.Verdict{587: probe.Open}, nil)
	e := r.Relays[0].Ends[0]
	e.AuthTLS, e.AuthPlain = nil, []string{"PLAIN"}
	one(t, Explain(r), "offers a login only without encryption", SevWarning, "--insecure-auth")
	e.AuthPlain = nil
	one(t, Explain(r), "offers no login", SevWarning, "ISP")

	r = rep(nil, map[int]probe.Verdict{587: probe.Open}, nil)
	r.Relays[0].Source = "srv"
	one(t, Explain(r), "answers on 587", SevOK, "SRV records")
}

// TestExplainReadable keeps every text short enough to read at a glance,
// ending like a sentence, with no unexplained internal words.
func TestExplainReadable(t *testing.T) {
	var all []Finding
	add := func(r *probe.Report) { all = append(all, Explain(r)...) }
	for _, v := range []probe.Verdict{probe.Open, probe.Filtered, probe.Refused, probe.Unreachable, probe.Intercepted, probe.Failed} {
		add(rep([]probe.Verdict{v}, allRelay, clean()))
	}
	add(rep(nil, nil, &probe.Identity{PublicIP: "198.51.100.7"}))
	r := rep(nil, map[int]probe.Verdict{465: probe.Open}, nil)
	r.Relays[0].Ends[0].Problem, r.Relays[0].Ends[0].ProblemKind, r.Relays[0].Ends[0].ProblemDetail = "the server refuses service at greeting: 554 no", probe.ProblemGreetingRefused, "554 no"
	r.Relays[0].Ends[0].Banner = &smtpclient.Reply{Code: 554}
	add(r)
	for _, f := range all {
		if len(f.Title) > 100 || len(f.Meaning) > 420 || len(f.Action) > 240 {
			t.Errorf("too long (%d/%d/%d): %s", len(f.Title), len(f.Meaning), len(f.Action), f.Title)
		}
		for _, s := range []string{f.Meaning, f.Action} {
			if s != "" && !strings.HasSuffix(s, ".") {
				t.Errorf("%q: not a sentence: %q", f.Title, s)
			}
		}
		if f.Severity == "" || f.Topic == "" || f.Title == "" || f.Meaning == "" {
			t.Errorf("incomplete: %+v", f)
		}
		for _, jargon := range []string{"Usable", "verdict", "endpoint", "Endpoint"} {
			if strings.Contains(f.Title+f.Meaning+f.Action, jargon) {
				t.Errorf("%q uses the internal word %q", f.Title, jargon)
			}
		}
	}
}

// TestExplainMTASTS: a policy that cannot be read, testing mode, an
// enforced policy met, and one that cannot be met (MX not named,
// certificate not verified).
func TestExplainMTASTS(t *testing.T) {
	ok220 := &smtpclient.Reply{Code: 220, Lines: []string{"mx ESMTP"}}
	mxEnd := func(host string, tls *probe.TLSInfo) *probe.Endpoint {
		return &probe.Endpoint{Role: probe.RoleMX, Host: host, Verdict: probe.Open, Banner: ok220, TLS: tls}
	}
	verified := &probe.TLSInfo{Verified: true}
	unverified := &probe.TLSInfo{VerifyError: "certificate is valid for other.invalid"}
	policy := func(mx string, matches map[string]bool) *probe.MTASTS {
		return &probe.MTASTS{ID: "1", Mode: "enforce", MX: []string{mx}, Matches: matches}
	}
	r := &probe.Report{Domains: []*probe.Domain{
		{Name: "unread.invalid", MTASTS: &probe.MTASTS{Error: "fetching https://mta-sts.unread.invalid/.well-known/mta-sts.txt: HTTP 404"}},
		{Name: "test.invalid", MTASTS: &probe.MTASTS{ID: "1", Mode: "testing", MX: []string{"mx.test.invalid"}}},
		{Name: "good.invalid", MX: []probe.MXHost{{Host: "mx.good.invalid"}}, Ends: []*probe.Endpoint{mxEnd("mx.good.invalid", verified)},
			MTASTS: policy("mx.good.invalid", map[string]bool{"mx.good.invalid": true})},
		{Name: "bad.invalid", MX: []probe.MXHost{{Host: "mx1.bad.invalid"}, {Host: "mx2.bad.invalid"}},
			Ends:   []*probe.Endpoint{mxEnd("mx1.bad.invalid", verified), mxEnd("mx2.bad.invalid", unverified)},
			MTASTS: policy("mx2.bad.invalid", map[string]bool{"mx2.bad.invalid": true})},
	}}
	fs := Explain(r)
	one(t, fs, "unread.invalid announces MTA-STS, but its policy could not be read", SevInfo, "HTTP 404", "as if there were none")
	one(t, fs, "test.invalid's MTA-STS policy is in testing mode", SevInfo, "not to hold mail back")
	one(t, fs, "good.invalid requires verified encryption, and mx.good.invalid qualifies", SevOK, "enforce; mx: mx.good.invalid")
	one(t, fs, "Direct mail to bad.invalid would wait", SevWarning,
		"mx1.bad.invalid: the policy does not name it", "mx2.bad.invalid: its certificate does not verify (certificate is valid for other.invalid)", "relay")
}
