package advisor

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/mailroute/mailroute/internal/auth"
	"github.com/mailroute/mailroute/internal/config"
)

func keyRecord(t *testing.T, txt string) *auth.DKIMKey {
	t.Helper()
	k, err := auth.ParseKeyRecord(txt)
	if err != nil {
		t.Fatal(err)
	}
	return &auth.DKIMKey{Name: "s._domainkey.shop.example", Record: txt, Key: k}
}

func policy(t *testing.T, from, found, txt string) *auth.DMARC {
	t.Helper()
	d := &auth.DMARC{FromDomain: from, OrgDomain: auth.OrgDomain(from)}
	if txt == "" {
		d.Err = "no DMARC record"
		return d
	}
	rec, err := dmarc.Parse(txt)
	if err != nil {
		t.Fatal(err)
	}
	d.Found, d.Record, d.Policy, d.Effective = found, txt, rec, rec.Policy
	return d
}

func verdicts(fs []CheckFinding) map[string]Verdict {
	m := map[string]Verdict{}
	for _, f := range fs {
		m[f.Check] = f.Verdict
	}
	return m
}

// TestJudgeAuth: the verdicts for the shapes of a mailing the issue names,
// and the DMARC prediction that follows from alignment.
func TestJudgeAuth(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	edRec := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.25")}
	spfPass := &auth.SPF{Domain: "shop.example", Record: "v=spf1 ip4:192.0.2.25 -all", Results: []auth.SPFAddr{{Addr: "192.0.2.25", Result: "pass"}}}
	spfFail := &auth.SPF{Domain: "shop.example", Record: "v=spf1 -all", Results: []auth.SPFAddr{{Addr: "192.0.2.25", Result: "fail"}}}
	dk := &config.DKIM{Domain: "shop.example", Selector: "s", KeyFile: "k.pem", Headers: []string{"From", "To", "Subject", "Date", "Message-ID"}}
	tests := []struct {
		name      string
		plan      AuthPlan
		facts     AuthFacts
		want      map[string]Verdict
		dmarcPass bool
		text      string // in the DMARC finding
	}{
		{
			name:  "all pass",
			plan:  AuthPlan{Envelope: "news@shop.example", From: "news@shop.example", Addrs: addrs, DKIM: dk, DKIMKey: pub},
			facts: AuthFacts{SPF: spfPass, DKIM: keyRecord(t, edRec), DMARC: policy(t, "shop.example", "shop.example", "v=DMARC1; p=reject")},
			want:  map[string]Verdict{"spf": Pass, "dkim": Pass, "dmarc": Pass}, dmarcPass: true,
		},
		{
			name:  "spf fails, unsigned, p=reject",
			plan:  AuthPlan{Envelope: "news@shop.example", From: "news@shop.example", Addrs: addrs},
			facts: AuthFacts{SPF: spfFail, DMARC: policy(t, "shop.example", "shop.example", "v=DMARC1; p=reject")},
			want:  map[string]Verdict{"spf": Fail, "dkim": Warn, "dmarc": Fail},
			text:  "550 5.7.26",
		},
		{
			name:  "wrong key; SPF carries DMARC",
			plan:  AuthPlan{Envelope: "news@shop.example", From: "news@shop.example", Addrs: addrs, DKIM: dk, DKIMKey: other},
			facts: AuthFacts{SPF: spfPass, DKIM: keyRecord(t, edRec), DMARC: policy(t, "shop.example", "shop.example", "v=DMARC1; p=quarantine")},
			want:  map[string]Verdict{"spf": Pass, "dkim": Fail, "dmarc": Pass}, dmarcPass: true,
		},
		{
			// The relay's bounce domain passes SPF but is not aligned;
			// DKIM signs for another organization: DMARC fails.
			name: "nothing aligned",
			plan: AuthPlan{Envelope: "bounce@relay.example", From: "news@shop.example", Addrs: addrs,
				DKIM: &config.DKIM{Domain: "relay.example", Selector: "s", Headers: dk.Headers}, DKIMKey: pub},
			facts: AuthFacts{SPF: &auth.SPF{Domain: "relay.example", Record: "v=spf1 a -all", Results: []auth.SPFAddr{{Addr: "192.0.2.25", Result: "pass"}}},
				DKIM: keyRecord(t, edRec), DMARC: policy(t, "shop.example", "shop.example", "v=DMARC1; p=quarantine")},
			want: map[string]Verdict{"spf": Pass, "dkim": Pass, "dmarc": Fail},
			text: "spam",
		},
		{
			// Strict DKIM alignment: d=shop.example does not cover
			// news.shop.example; relaxed SPF alignment through the
			// organizational domain's record does.
			name: "strict dkim, relaxed spf, subdomain",
			plan: AuthPlan{Envelope: "bounce@shop.example", From: "news@news.shop.example", Addrs: addrs, DKIM: dk, DKIMKey: pub},
			facts: AuthFacts{SPF: spfPass, DKIM: keyRecord(t, edRec),
				DMARC: policy(t, "news.shop.example", "shop.example", "v=DMARC1; p=reject; adkim=s")},
			want: map[string]Verdict{"dmarc": Pass}, dmarcPass: true,
			text: "aligned SPF pass",
		},
		{
			name: "small rsa key, testing flag",
			plan: AuthPlan{Envelope: "news@shop.example", From: "news@shop.example", Addrs: addrs, DKIM: dk, DKIMKey: &small.PublicKey},
			facts: AuthFacts{SPF: spfFail, DKIM: keyRecord(t, "k=rsa; t=y; p="+base64.StdEncoding.EncodeToString(smallDER)),
				DMARC: policy(t, "shop.example", "", "")},
			want: map[string]Verdict{"spf": Fail, "dkim": Warn, "dmarc": Warn},
		},
		{
			name:  "no address known",
			plan:  AuthPlan{Mode: config.ModeDirect, Envelope: "news@shop.example", From: "news@shop.example", AddrsErr: "echo: timed out"},
			facts: AuthFacts{SPF: &auth.SPF{Domain: "shop.example", Record: "v=spf1 -all"}, DMARC: &auth.DMARC{FromDomain: "shop.example", Err: "timeout", Temporary: true}},
			want:  map[string]Verdict{"spf": Unknown, "dmarc": Unknown},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, o := JudgeAuth(&tt.plan, &tt.facts)
			got := verdicts(fs)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: %s, want %s (%+v)", k, got[k], v, fs)
				}
			}
			if o.DMARCPass() != tt.dmarcPass {
				t.Errorf("DMARC pass %v, want %v (%+v)", o.DMARCPass(), tt.dmarcPass, o)
			}
			if tt.text != "" {
				d := fs[2]
				if all := d.Title + d.Meaning + strings.Join(d.Evidence, " "); !strings.Contains(all, tt.text) {
					t.Errorf("DMARC finding lacks %q: %+v", tt.text, d)
				}
			}
			for _, f := range fs {
				if f.Verdict != Pass && f.Fix == "" && f.Verdict != Unknown {
					t.Errorf("%s %s without a fix", f.Check, f.Verdict)
				}
			}
		})
	}
}

// TestJudgeAuthProviderInclude: a relay whose sending servers are not its
// submission host is judged by the provider's documented include.
func TestJudgeAuthProviderInclude(t *testing.T) {
	p := Lookup("google-workspace")
	plan := AuthPlan{Mode: config.ModeRelay, RelayHost: "smtp.gmail.com", Envelope: "a@shop.example", From: "a@shop.example",
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}, AddrsFrom: "relay smtp.gmail.com", Provider: p}
	spf := &auth.SPF{Domain: "shop.example", Record: "v=spf1 include:_spf.google.com ~all", Results: []auth.SPFAddr{{Addr: "192.0.2.9", Result: "softfail"}},
		Include: p.SPFInclude, IncludeFound: true, IncludePath: []string{"shop.example", "_spf.google.com"}}
	fs, _ := JudgeAuth(&plan, &AuthFacts{SPF: spf, DMARC: policy(t, "shop.example", "", "")})
	if fs[0].Verdict != Pass || len(fs[0].Sources) < 2 {
		t.Errorf("include found: %+v", fs[0])
	}
	spf.IncludeFound, spf.Record = false, "v=spf1 mx ~all"
	fs, _ = JudgeAuth(&plan, &AuthFacts{SPF: spf, DMARC: policy(t, "shop.example", "", "")})
	if fs[0].Verdict != Warn || !strings.Contains(fs[0].Fix, "include:_spf.google.com") {
		t.Errorf("include missing: %+v", fs[0])
	}
}

func TestJudgeBulk(t *testing.T) {
	facts := &AuthFacts{DMARC: &auth.DMARC{FromDomain: "shop.example", OrgDomain: "shop.example", Record: "v=DMARC1; p=none"}}
	good := Outcome{SPFPass: true, SPFAligned: true, DKIMPass: true, DKIMAligned: true}
	plan := BulkPlan{OneClick: false, TLS: "starttls", TLSOK: true}
	counts := map[string]BulkCount{"gmail": {ByDomain: 6000}, "microsoft": {ByDomain: 10}, "yahoo": {ByDomain: 4000, ByMX: 1500, MXDomains: []string{"aol.example"}}}
	fs := JudgeBulk(counts, plan, facts, good)
	got := verdicts(fs)
	if got["bulk:gmail"] != Fail || got["bulk:microsoft"] != Pass || got["bulk:yahoo"] != Fail {
		t.Fatalf("verdicts %v", got)
	}
	for _, f := range fs {
		if f.Check == "bulk:gmail" && (!strings.Contains(f.Meaning, "one-click unsubscribe") || !strings.Contains(f.Fix, "[unsubscribe]")) {
			t.Errorf("gmail: %+v", f)
		}
	}
	plan.OneClick = true
	if got := verdicts(JudgeBulk(counts, plan, facts, good)); got["bulk:gmail"] != Pass {
		t.Errorf("with unsubscribe: %v", got)
	}
	// Google Workspace domains (by MX) do not count toward Gmail's line.
	counts = map[string]BulkCount{"gmail": {ByDomain: 10, ByMX: 9000, MXDomains: []string{"corp.example"}}}
	if got := verdicts(JudgeBulk(counts, BulkPlan{}, facts, Outcome{})); got["bulk:gmail"] != Pass {
		t.Errorf("workspace counted: %v", got)
	}
	// Microsoft counts hosted domains, and wants no unsubscribe.
	counts = map[string]BulkCount{"microsoft": {ByDomain: 100, ByMX: 5000}}
	if got := verdicts(JudgeBulk(counts, BulkPlan{TLSOK: true}, facts, good)); got["bulk:microsoft"] != Pass {
		t.Errorf("microsoft: %v", got)
	}
	if got := verdicts(JudgeBulk(counts, BulkPlan{TLSOK: true, Direct: true, FCrDNS: "no: no PTR"}, facts, good)); got["bulk:microsoft"] != Fail {
		t.Errorf("direct without PTR: %v", got)
	}
}

// TestJudgeBulkUnknown: what DNS could not tell is unknown, not broken.
func TestJudgeBulkUnknown(t *testing.T) {
	counts := map[string]BulkCount{"gmail": {ByDomain: 6000}}
	facts := &AuthFacts{DMARC: &auth.DMARC{FromDomain: "shop.example", Temporary: true}}
	o := Outcome{SPFUnknown: true, DKIMPass: true, DKIMAligned: true, DMARCUnknown: true}
	if got := verdicts(JudgeBulk(counts, BulkPlan{OneClick: true, TLSOK: true}, facts, o)); got["bulk:gmail"] != Unknown {
		t.Errorf("unknowns only: %v", got)
	}
	// A broken rule beside an unknown one is still a fail.
	if got := verdicts(JudgeBulk(counts, BulkPlan{TLSOK: true}, facts, o)); got["bulk:gmail"] != Fail {
		t.Errorf("no unsubscribe: %v", got)
	}
}

// TestJudgeSPFSendingService: a sending service's bounce domain is out of
// check's sight; the finding says so instead of claiming more.
func TestJudgeSPFSendingService(t *testing.T) {
	plan := AuthPlan{Mode: config.ModeRelay, RelayHost: "smtp.sendgrid.net", Envelope: "a@shop.example", From: "a@shop.example",
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}, AddrsFrom: "relay smtp.sendgrid.net", Provider: Lookup("sendgrid")}
	spf := &auth.SPF{Domain: "shop.example", Record: "v=spf1 -all", Results: []auth.SPFAddr{{Addr: "192.0.2.9", Result: "fail"}}}
	fs, _ := JudgeAuth(&plan, &AuthFacts{SPF: spf, DMARC: policy(t, "shop.example", "", "")})
	if fs[0].Verdict != Fail || !strings.Contains(fs[0].Meaning, "custom MAIL FROM") {
		t.Errorf("%+v", fs[0])
	}
	plan.Provider = Lookup("google-workspace")
	if fs, _ := JudgeAuth(&plan, &AuthFacts{SPF: spf, DMARC: policy(t, "shop.example", "", "")}); strings.Contains(fs[0].Meaning, "custom MAIL FROM") {
		t.Errorf("a mailbox provider got the sending-service note")
	}
}
