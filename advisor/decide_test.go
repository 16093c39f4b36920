package advisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/probe"
)

// Synthetic reports: the advisor reads only probe.Report, so every case of
// the decision table is a report built by hand. Names are under .invalid
// and addresses in the documentation ranges.

func greet(host string) *smtpclient.Reply {
	return &smtpclient.Reply{Code: 220, Lines: []string{host + " ESMTP"}}
}

func mxEnd(host string, v probe.Verdict) *probe.Endpoint {
	e := &probe.Endpoint{Role: probe.RoleMX, Host: host, Addr: "192.0.2.25", Port: 25, TLSMode: "starttls", Verdict: v}
	switch v {
	case probe.Open:
		e.Banner = greet(host)
		e.TLS = &probe.TLSInfo{Verified: true}
	case probe.Intercepted:
		e.Banner = greet("smtp.isp.invalid")
		e.Evidence = []string{"the STARTTLS certificate is for smtp.isp.invalid, a host unrelated to the MX " + host}
	}
	return e
}

func relayEnd(port int, v probe.Verdict) *probe.Endpoint {
	e := &probe.Endpoint{Role: probe.RoleRelay, Host: "smtp.relay.invalid", Addr: "192.0.2.50", Port: port, TLSMode: "starttls", Verdict: v}
	if port == 465 {
		e.TLSMode = "implicit"
	}
	if v == probe.Open {
		e.Banner = greet(e.Host)
		if port != 25 {
			e.TLS = &probe.TLSInfo{Verified: true}
			e.AuthTLS = []string{"PLAIN", "LOGIN"}
		}
	}
	return e
}

// rep builds a report: one recipient domain whose MX endpoints have the
// given verdicts, and a relay whose ports 465, 587, 2525, 25 have the given
// verdicts ("" leaves the relay out).
func rep(mx []probe.Verdict, relay map[int]probe.Verdict, id *probe.Identity) *probe.Report {
	r := &probe.Report{Helo: "client.invalid", Identity: id}
	d := &probe.Domain{Name: "alpha.invalid"}
	for i, v := range mx {
		host := []string{"mx1.alpha.invalid", "mx2.alpha.invalid", "mx3.alpha.invalid"}[i]
		d.MX = append(d.MX, probe.MXHost{Host: host, Pref: uint16(10 * (i + 1))})
		d.Ends = append(d.Ends, mxEnd(host, v))
	}
	r.Domains = []*probe.Domain{d}
	if relay != nil {
		rl := &probe.Relay{Host: "smtp.relay.invalid", Source: "--relay"}
		for _, port := range []int{465, 587, 2525, 25} {
			if v, ok := relay[port]; ok {
				rl.Ends = append(rl.Ends, relayEnd(port, v))
			}
		}
		r.Relays = []*probe.Relay{rl}
	}
	return r
}

func clean() *probe.Identity {
	return &probe.Identity{PublicIP: "198.51.100.7", PTR: []string{"out.example.invalid"}, ForwardConfirmed: true,
		ConfirmedName: "out.example.invalid", Listings: []probe.Listing{{Zone: "zen.spamhaus.org"}}}
}

var (
	open3     = []probe.Verdict{probe.Open, probe.Open, probe.Open}
	filtered3 = []probe.Verdict{probe.Filtered, probe.Filtered, probe.Filtered}
	allRelay  = map[int]probe.Verdict{465: probe.Open, 587: probe.Open, 2525: probe.Refused, 25: probe.Refused}
)

func TestDecideTable(t *testing.T) {
	pbl := clean()
	pbl.Listings = []probe.Listing{{Zone: "zen.spamhaus.org", Listed: true, PolicyBlock: true, Codes: []string{"127.0.0.10"},
		Meaning: []string{"PBL: end-user range, must not send direct"}}}
	noPTR := &probe.Identity{PublicIP: "198.51.100.7", Listings: []probe.Listing{{Zone: "zen.spamhaus.org"}}}
	for _, c := range []struct {
		name     string
		rep      *probe.Report
		user     string
		ok       bool
		mode     config.Mode
		port     int
		tls      config.TLSMode
		contains []string // in steps, unknowns or todo
	}{
		{name: "25 open, FCrDNS, clean: direct", rep: rep(open3, allRelay, clean()), ok: true, mode: config.ModeDirect,
			contains: []string{"reaches 3 of 3 MX hosts", "resolves back to it (FCrDNS)", "not listed in zen.spamhaus.org"}},
		{name: "25 filtered: relay on 465", rep: rep(filtered3, allRelay, clean()), user: "me@relay.invalid", ok: true, mode: config.ModeRelay, port: 465, tls: config.TLSImplicit,
			contains: []string{"reaches none of the 3 MX hosts (filtered on 3 endpoints)", "RFC 8314 §3.3", "also usable: 587"}},
		{name: "465 closed, 587 open: 587", rep: rep(filtered3, map[int]probe.Verdict{465: probe.Refused, 587: probe.Open, 2525: probe.Open, 25: probe.Refused}, clean()),
			user: "me@relay.invalid", ok: true, mode: config.ModeRelay, port: 587, tls: config.TLSStartTLS,
			contains: []string{"port 587 (STARTTLS)", ":465 refused"}},
		{name: "only 2525", rep: rep(filtered3, map[int]probe.Verdict{465: probe.Filtered, 587: probe.Filtered, 2525: probe.Open, 25: probe.Filtered}, nil),
			user: "me@relay.invalid", ok: true, mode: config.ModeRelay, port: 2525, tls: config.TLSStartTLS},
		{name: "intercepted: relay even though open", rep: rep([]probe.Verdict{probe.Intercepted, probe.Intercepted, probe.Open}, allRelay, clean()),
			user: "me@relay.invalid", ok: true, mode: config.ModeRelay, port: 465,
			contains: []string{"intercepted on 2 of 3 MX hosts", "certificate is for smtp.isp.invalid"}},
		{name: "PBL listed: relay with the reason", rep: rep(open3, allRelay, pbl), user: "me@relay.invalid", ok: true, mode: config.ModeRelay, port: 465,
			contains: []string{"should not send direct", "as an end-user (dynamic) range", "PBL"}},
		{name: "no PTR: relay", rep: rep(open3, allRelay, noPTR), ok: true, mode: config.ModeRelay,
			contains: []string{"has no PTR (reverse DNS) name"}},
		{name: "identity unknown: relay, unknown said", rep: rep(open3, allRelay, nil), user: "me@relay.invalid", ok: true, mode: config.ModeRelay, port: 465,
			contains: []string{"identity: this machine's public address, PTR name and blocklist listings were not checked", "a relay is the safe choice"}},
		{name: "identity unknown, no relay: direct with the caveat", rep: rep(open3, nil, nil), ok: true, mode: config.ModeDirect,
			contains: []string{"no relay answered", "were not checked"}},
		{name: "no usable relay: what to do", rep: rep(filtered3, map[int]probe.Verdict{465: probe.Filtered, 587: probe.Filtered, 2525: probe.Filtered, 25: probe.Filtered}, clean()),
			ok: false, contains: []string{"no relay port can take the mail: :465 filtered", "ask your ISP", "2525"}},
		{name: "no relay given, 25 filtered", rep: rep(filtered3, nil, nil), ok: false,
			contains: []string{"no relay was given", "--relay HOST --user YOU"}},
		{name: "PBL and no relay: says why direct won't do", rep: rep(open3, nil, pbl), ok: false,
			contains: []string{"receivers will refuse mail from this address", "listed in the PBL"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := Decide(Input{Report: c.rep, User: c.user, PasswordEnv: map[bool]string{true: "PW"}[c.user != ""]})
			if rec.OK != c.ok || rec.Mode != c.mode {
				t.Fatalf("ok %v mode %q, want %v %q\n%s", rec.OK, rec.Mode, c.ok, c.mode, dump(rec))
			}
			if c.ok != (rec.Config != nil) {
				t.Errorf("config %v with ok %v", rec.Config != nil, rec.OK)
			}
			if c.port != 0 && (rec.Relay == nil || rec.Relay.Port != c.port || (c.tls != "" && rec.Relay.TLS != c.tls)) {
				t.Errorf("relay %+v, want port %d %s\n%s", rec.Relay, c.port, c.tls, dump(rec))
			}
			text := dump(rec)
			for _, want := range c.contains {
				if !strings.Contains(text, want) {
					t.Errorf("lacks %q:\n%s", want, text)
				}
			}
			if rec.OK && rec.Config.Mode != rec.Mode {
				t.Errorf("config mode %q", rec.Config.Mode)
			}
		})
	}
}

// dump is everything the recommendation says, for assertions and failures.
func dump(rec *Recommendation) string {
	var b strings.Builder
	b.WriteString(rec.Summary + "\n")
	for _, s := range rec.Steps {
		b.WriteString(s.Topic + ": " + s.Decision + ": " + s.Reason + "\n")
	}
	for _, u := range rec.Unknown {
		b.WriteString("unknown: " + u + "\n")
	}
	for _, u := range rec.Todo {
		b.WriteString("todo: " + u + "\n")
	}
	return b.String()
}

func TestDecideDirectConfig(t *testing.T) {
	rec := Decide(Input{Report: rep(open3, nil, clean()), ListSize: 1000})
	c := rec.Config
	if c == nil || c.Mode != config.ModeDirect || c.Helo != "out.example.invalid" || len(c.Relay) != 0 {
		t.Fatalf("%+v\n%s", c, dump(rec))
	}
	if c.Threads != 4 || rec.Threads.Source != "list size" || c.Direct.PerDomainThreads != 2 {
		t.Errorf("threads %d (%s), per domain %d", c.Threads, rec.Threads.Source, c.Direct.PerDomainThreads)
	}
}

func TestDecideRelayConfig(t *testing.T) {
	r := rep(filtered3, allRelay, nil)
	r.Login = &probe.Login{Host: "smtp.relay.invalid", Port: 465, Mechanism: "LOGIN", OK: true}
	r.Measure = &probe.Measurement{Host: "smtp.relay.invalid", Port: 465, SessionLimit: 3, Transactions: 30,
		Window: probe.Duration(58 * time.Second), LatencyMedian: probe.Duration(2 * time.Millisecond),
		MeasuredAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := Decide(Input{Report: r, User: "me@relay.invalid", PasswordCmd: "pass show smtp", CAFile: ca})
	c := rec.Config
	if c == nil {
		t.Fatal(dump(rec))
	}
	rl := c.Relay[0]
	if rl.Host != "smtp.relay.invalid" || rl.Port != 465 || rl.TLS != config.TLSImplicit || rl.Auth != "login" ||
		rl.Username != "me@relay.invalid" || rl.PasswordCmd != "pass show smtp" || rl.PasswordEnv != "" || rl.Password != "" || rl.CAFile != ca {
		t.Errorf("relay %+v", rl)
	}
	// Measured 30 per 58 s: held exactly, the window rounded up to a minute.
	if c.Threads != 2 || c.Rate.String() != "30/m" || c.Helo != "client.invalid" {
		t.Errorf("threads %d rate %s helo %q", c.Threads, c.Rate, c.Helo)
	}
	ev := c.Evidence
	if ev.SessionLimit != 3 || ev.BurstLimit != 30 || time.Duration(ev.Window) != 58*time.Second || ev.Source != "smtp.relay.invalid:465" ||
		!ev.MeasuredAt.Equal(r.Measure.MeasuredAt) || len(ev.Notes) == 0 {
		t.Errorf("evidence %+v", ev)
	}
	if rec.Threads.Source != "measured" || rec.Rate.Source != "measured" {
		t.Errorf("sources %q %q", rec.Threads.Source, rec.Rate.Source)
	}
	if rl.MessagesPerSession != 0 {
		t.Errorf("messages_per_session %d with no cap measured or published", rl.MessagesPerSession)
	}

	// A relay that measured a cap per session gets it in the config.
	r.Measure = &probe.Measurement{Host: "smtp.relay.invalid", Port: 465, SessionLimit: 3, Transactions: 20, PerSession: true}
	rec = Decide(Input{Report: r, User: "me@relay.invalid", PasswordCmd: "pass show smtp", CAFile: ca})
	if rec.Config == nil || rec.Config.Relay[0].MessagesPerSession != 20 || !strings.Contains(dump(rec), "messages per session: 20") {
		t.Errorf("a measured cap of 20 per session is not in the config:\n%s", dump(rec))
	}
	for _, u := range rec.Unknown {
		if strings.Contains(u, "login") || strings.Contains(u, "measured") {
			t.Errorf("unknown %q although checked", u)
		}
	}
}

func TestDecidePromptedPassword(t *testing.T) {
	rec := Decide(Input{Report: rep(filtered3, allRelay, nil), User: "me"})
	if rec.Config.Relay[0].PasswordEnv != DefaultPasswordEnv || !strings.Contains(dump(rec), "set "+DefaultPasswordEnv) {
		t.Errorf("%+v\n%s", rec.Config.Relay[0], dump(rec))
	}
	if !strings.Contains(dump(rec), "the login was not tried") || !strings.Contains(dump(rec), "limits were not measured (--measure)") {
		t.Errorf("unknowns not said:\n%s", dump(rec))
	}
}

func TestDecideLoginRefused(t *testing.T) {
	r := rep(filtered3, allRelay, nil)
	r.Login = &probe.Login{Host: "smtp.relay.invalid", Port: 465, OK: false, Reply: "535 5.7.8 Error: authentication failed"}
	rec := Decide(Input{Report: r, User: "me", PasswordEnv: "PW"})
	if rec.OK || rec.Config != nil || !strings.Contains(dump(rec), `said "535 5.7.8 Error: authentication failed"`) {
		t.Errorf("%s", dump(rec))
	}
}

func TestDecideAuthOnlyInClear(t *testing.T) {
	r := rep(filtered3, map[int]probe.Verdict{25: probe.Open}, nil)
	r.Relays[0].Ends[0].AuthPlain = []string{"PLAIN"}
	if rec := Decide(Input{Report: r, User: "me", PasswordEnv: "PW"}); rec.OK || !strings.Contains(dump(rec), "--insecure-auth allows that") {
		t.Errorf("without --insecure-auth: %s", dump(rec))
	}
	rec := Decide(Input{Report: r, User: "me", PasswordEnv: "PW", InsecureAuth: true})
	if !rec.OK || rec.Config.Relay[0].TLS != config.TLSNone || !rec.Config.Relay[0].InsecureAuth || !strings.Contains(dump(rec), "in clear") {
		t.Errorf("with --insecure-auth: %+v\n%s", rec.Config, dump(rec))
	}
}

func TestDecideUntrustedCertificateLast(t *testing.T) {
	r := rep(filtered3, allRelay, nil)
	r.Relays[0].Ends[0].TLS = &probe.TLSInfo{Verified: false, VerifyError: "x509: certificate signed by unknown authority"}
	rec := Decide(Input{Report: r})
	if rec.Relay.Port != 587 {
		t.Errorf("port %d: a verified 587 goes before an untrusted 465", rec.Relay.Port)
	}
}

func TestDecideOffline(t *testing.T) {
	r := rep(filtered3, nil, nil)
	r.Offline = true
	if rec := Decide(Input{Report: r}); rec.OK || !strings.Contains(dump(rec), "offline") {
		t.Errorf("%s", dump(rec))
	}
}

func TestHeader(t *testing.T) {
	rec := Decide(Input{Report: rep(filtered3, allRelay, nil)})
	h := strings.Join(rec.Header(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), "\n")
	for _, want := range []string{"Generated by mailroute advise on 2026-03-01 12:00 UTC.", "Why:", "mode: relay.", "Not known:"} {
		if !strings.Contains(h, want) {
			t.Errorf("header lacks %q:\n%s", want, h)
		}
	}
}

// With no way to send, the sender domain's MX hosts name the provider whose
// submission server to try.
func TestDecideSuggestsProviderFromMX(t *testing.T) {
	rec := Decide(Input{Report: rep(filtered3, nil, nil), FromDomain: "example.com", FromMX: []string{"aspmx.l.google.com"}})
	if rec.OK || !strings.Contains(dump(rec), "looks like Google Workspace: try mailroute advise --relay smtp.gmail.com:465 --user YOU@example.com") {
		t.Errorf("%s", dump(rec))
	}
	if rec.Provider == nil || rec.Provider.Provider.ID != "google-workspace" || rec.Provider.By != "MX host aspmx.l.google.com" {
		t.Errorf("provider %+v", rec.Provider)
	}
}

// A relay the catalog knows brings its published limits when nothing was
// measured: Microsoft 365's 30 messages per minute become 25/m.
func TestDecideCatalogNumbers(t *testing.T) {
	r := rep(filtered3, map[int]probe.Verdict{587: probe.Open}, nil)
	for _, e := range r.Relays[0].Ends {
		e.Host = "smtp.office365.com"
	}
	rec := Decide(Input{Report: r, User: "me@example.com", PasswordEnv: "PW", ListSize: 400, FromDomain: "example.com"})
	if !rec.OK || rec.Provider == nil || rec.Provider.Provider.ID != "microsoft-365" {
		t.Fatalf("%+v\n%s", rec.Provider, dump(rec))
	}
	if rec.Rate.Rate.String() != "25/m" || !strings.HasPrefix(rec.Rate.Source, "catalog: https://learn.microsoft.com/") {
		t.Errorf("rate %s from %s", rec.Rate.Rate, rec.Rate.Source)
	}
	if rec.Threads.Value != 2 || rec.Threads.Source != "list size" {
		t.Errorf("threads %+v", rec.Threads)
	}
	if ev := rec.Config.Evidence.PublishedLimit; !strings.Contains(ev, "Microsoft 365 (Exchange Online): 30 messages per minute (https://") {
		t.Errorf("published limit %q", ev)
	}
}

// A burst limit without its window: no rate is made up, and the unknown is
// said with what it means.
func TestDecideWindowNotFound(t *testing.T) {
	r := rep(filtered3, allRelay, nil)
	r.Measure = &probe.Measurement{Host: "smtp.relay.invalid", Port: 465, SessionLimit: 3, Transactions: 5, WindowNote: "still refused 1s after the refusal"}
	rec := Decide(Input{Report: r})
	if !rec.Rate.Rate.IsZero() || !strings.Contains(dump(rec), "the relay's rate window was not found: it refused after 5 messages") ||
		!strings.Contains(rec.Rate.Reason, "no rate limit: the relay refused after 5 messages") {
		t.Errorf("rate %s\n%s", rec.Rate.Rate, dump(rec))
	}
}
