package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/mailroute/mailroute/internal/dnstest"
	"github.com/mailroute/mailroute/internal/resolve"
)

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":                "example.com",
		"news.example.com":           "example.com",
		"a.b.news.example.com.":      "example.com",
		"Mail.Example.CO.UK":         "example.co.uk",
		"example.co.uk":              "example.co.uk",
		"shop.example":               "shop.example", // an unlisted TLD is a public suffix (the PSL's "*" rule)
		"news.shop.example":          "shop.example",
		"user.github.io":             "user.github.io", // a private-section suffix: users are separate organizations
		"www.user.github.io":         "user.github.io",
		"com":                        "com",
		"mail.city.kawasaki.jp":      "city.kawasaki.jp", // an exception rule (!city.kawasaki.jp)
		"foo.bar.kawasaki.jp":        "foo.bar.kawasaki.jp",
		"mailer.foo.bar.kawasaki.jp": "foo.bar.kawasaki.jp",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAligned: RFC 7489 §3.1 with its examples: relaxed alignment takes any
// two names of one organizational domain, strict only the same name.
func TestAligned(t *testing.T) {
	tests := []struct {
		auth, from string
		mode       dmarc.AlignmentMode
		want       bool
	}{
		{"example.com", "example.com", dmarc.AlignmentStrict, true},
		{"Example.COM.", "example.com", dmarc.AlignmentStrict, true},
		{"news.example.com", "example.com", dmarc.AlignmentStrict, false},
		{"news.example.com", "example.com", dmarc.AlignmentRelaxed, true},
		{"example.com", "news.example.com", dmarc.AlignmentRelaxed, true},
		{"a.example.com", "b.example.com", dmarc.AlignmentRelaxed, true},
		{"a.example.com", "b.example.com", dmarc.AlignmentStrict, false},
		{"example.net", "example.com", dmarc.AlignmentRelaxed, false},
		// Two customers of one public suffix are not one organization.
		{"alice.github.io", "bob.github.io", dmarc.AlignmentRelaxed, false},
		{"a.example.co.uk", "example.co.uk", dmarc.AlignmentRelaxed, true},
		{"example.co.uk", "other.co.uk", dmarc.AlignmentRelaxed, false},
		// A relay's bounce domain (SES, SendGrid) is not the sender's.
		{"amazonses.com", "example.com", dmarc.AlignmentRelaxed, false},
		{"", "example.com", dmarc.AlignmentRelaxed, false},
		{"bounce.news.shop.example", "shop.example", dmarc.AlignmentRelaxed, true},
	}
	for _, tt := range tests {
		if got := Aligned(tt.auth, tt.from, tt.mode); got != tt.want {
			t.Errorf("Aligned(%q, %q, %s) = %v, want %v", tt.auth, tt.from, tt.mode, got, tt.want)
		}
	}
}

func TestParseKeyRecord(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	p := base64.StdEncoding.EncodeToString(pub)
	good := []struct {
		txt, kind string
		revoked   bool
		testing   bool
	}{
		{"v=DKIM1; k=ed25519; p=" + p, "ed25519", false, false},
		{" v = DKIM1 ;k=ed25519;p=" + p[:10] + " \t" + p[10:] + ";", "ed25519", false, false},
		{"k=rsa; t=y:s; p=", "rsa", true, true},
		{"p=" + p + "; x_unknown=whatever", "rsa", false, false},
	}
	for _, g := range good {
		k, err := ParseKeyRecord(g.txt)
		if err != nil {
			t.Errorf("ParseKeyRecord(%q): %v", g.txt, err)
			continue
		}
		if k.KeyType != g.kind || k.Revoked() != g.revoked || k.Testing() != g.testing {
			t.Errorf("ParseKeyRecord(%q) = %+v", g.txt, k)
		}
	}
	for _, bad := range []string{
		"",
		"v=DKIM1; k=rsa",
		"k=rsa; v=DKIM1; p=" + p,
		"v=DKIM2; p=" + p,
		"v=DKIM1; p=" + p + "; p=" + p,
		"v=DKIM1; p=!!!",
		"v=DKIM1; nonsense; p=" + p,
		"v=DKIM1; =x; p=" + p,
	} {
		if k, err := ParseKeyRecord(bad); err == nil {
			t.Errorf("ParseKeyRecord(%q) = %+v, want an error", bad, k)
		}
	}
}

func TestSameKey(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	pkcs1 := x509.MarshalPKCS1PublicKey(&rk.PublicKey)
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		record string
		pub    any
		want   bool
		err    bool
	}{
		{"k=ed25519; p=" + b64(edPub), edPub, true, false},
		{"k=ed25519; p=" + b64(edPub), otherPub, false, false},
		{"k=rsa; p=" + b64(spki), &rk.PublicKey, true, false},
		{"p=" + b64(pkcs1), &rk.PublicKey, true, false},
		{"k=rsa; p=" + b64(spki), edPub, false, false},
		{"k=ed25519; p=" + b64(spki), edPub, false, true},
		{"k=rsa; p=", &rk.PublicKey, false, true},
		{"k=dsa; p=" + b64(spki), &rk.PublicKey, false, true},
	}
	for _, tt := range tests {
		rec, err := ParseKeyRecord(tt.record)
		if err != nil {
			t.Fatal(err)
		}
		got, err := SameKey(rec, tt.pub)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("SameKey(%.40q…) = %v, %v; want %v, error %v", tt.record, got, err, tt.want, tt.err)
		}
	}
	if KeyBits(&rk.PublicKey) != 1024 || KeyBits(edPub) != 0 || KeyType(edPub) != "ed25519" {
		t.Errorf("KeyBits/KeyType")
	}
}

func FuzzParseKeyRecord(f *testing.F) {
	for _, s := range []string{"v=DKIM1; k=ed25519; p=AAAA", "p=", "k=rsa; t=y:s; h=sha256; p=MIIB", ";;;", "v=DKIM1;p=a b c d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyRecord(s)
		if err != nil {
			return
		}
		if k.KeyType == "" {
			t.Fatalf("%q: parsed with no key type", s)
		}
		_, _ = k.PublicKey() // must not panic on any p=
		if k.Version != "" && !strings.HasPrefix(strings.TrimSpace(s), "v") {
			t.Fatalf("%q: v= accepted but not first", s)
		}
	})
}

var authZone = dnstest.Zone{Records: map[string][]string{
	"shop.example. TXT": {
		`shop.example. 300 IN TXT "v=spf1 a:relay.shop.example include:_spf.provider.example -all"`,
		`shop.example. 300 IN TXT "google-site-verification=x"`,
	},
	"relay.shop.example. A":            {"relay.shop.example. 300 IN A 192.0.2.25"},
	"_spf.provider.example. TXT":       {`_spf.provider.example. 300 IN TXT "v=spf1 redirect=_netblocks.provider.example"`},
	"_netblocks.provider.example. TXT": {`_netblocks.provider.example. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 ~all"`},
	"two.example. TXT": {
		`two.example. 300 IN TXT "v=spf1 -all"`,
		`two.example. 300 IN TXT "v=spf1 +all"`,
	},
	"_dmarc.shop.example. TXT":         {`_dmarc.shop.example. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine; adkim=s"`},
	"_dmarc.own.shop.example. TXT":     {`_dmarc.own.shop.example. 300 IN TXT "v=DMARC1; p=none"`},
	"_dmarc.double.example. TXT":       {`_dmarc.double.example. 300 IN TXT "v=DMARC1; p=none"`, `_dmarc.double.example. 300 IN TXT "v=DMARC1; p=reject"`},
	"_dmarc.broken.example. TXT":       {`_dmarc.broken.example. 300 IN TXT "v=DMARC1; p=maybe"`},
	"sel._domainkey.shop.example. TXT": {`sel._domainkey.shop.example. 300 IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`},
}}

func testResolver(t *testing.T) (*resolve.Resolver, *dnstest.Server) {
	srv := dnstest.Start(t, authZone)
	return &resolve.Resolver{Servers: []string{srv.Addr}, Timeout: 500 * time.Millisecond, Attempts: 1}, srv
}

func TestCheckSPF(t *testing.T) {
	r, srv := testResolver(t)
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.25"), netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.1")}
	s := CheckSPF(t.Context(), r, "news@shop.example", "helo.example", addrs)
	if s.Record == "" || !strings.HasPrefix(s.Record, "v=spf1 a:") {
		t.Fatalf("record %q (%s)", s.Record, s.RecordErr)
	}
	want := []string{"pass", "pass", "fail"}
	for i, r := range s.Results {
		if r.Result != want[i] {
			t.Errorf("%s: %s (%s), want %s", r.Addr, r.Result, r.Detail, want[i])
		}
	}
	if s.Passed() {
		t.Errorf("Passed with a failing address")
	}
	if !CheckSPF(t.Context(), r, "news@shop.example", "", addrs[:2]).Passed() {
		t.Errorf("not Passed with two passing addresses")
	}
	if s := CheckSPF(t.Context(), r, "x@nospf.example", "", addrs[:1]); s.Results[0].Result != "none" || s.RecordErr == "" {
		t.Errorf("no record: %+v", s)
	}
	if s := CheckSPF(t.Context(), r, "x@two.example", "", addrs[:1]); s.Results[0].Result != "permerror" || !strings.Contains(s.RecordErr, "permerror") {
		t.Errorf("two records: %+v", s)
	}
	srv.SetRcode("shop.example", 2)
	if s := CheckSPF(t.Context(), r, "x@shop.example", "", addrs[:1]); s.Results[0].Result != "temperror" {
		t.Errorf("SERVFAIL: %+v", s)
	}
}

func TestFindInclude(t *testing.T) {
	r, _ := testResolver(t)
	ok, path, err := FindInclude(t.Context(), r, "shop.example", "_netblocks.provider.example.")
	if !ok || err != nil || strings.Join(path, " ") != "shop.example _spf.provider.example _netblocks.provider.example" {
		t.Errorf("FindInclude = %v %v %v", ok, path, err)
	}
	if ok, _, err := FindInclude(t.Context(), r, "shop.example", "spf.other.example"); ok || err != nil {
		t.Errorf("absent include: %v %v", ok, err)
	}
	if _, _, err := FindInclude(t.Context(), r, "nospf.example", "x.example"); err == nil {
		t.Errorf("no record: no error")
	}
}

func TestLookupDMARC(t *testing.T) {
	r, _ := testResolver(t)
	tests := []struct {
		from, found string
		effective   dmarc.Policy
		err         string
	}{
		{"shop.example", "shop.example", dmarc.PolicyReject, ""},
		// A subdomain without its own record gets the organizational
		// domain's sp= (RFC 7489 §6.6.3, §6.3).
		{"news.shop.example", "shop.example", dmarc.PolicyQuarantine, ""},
		{"own.shop.example", "own.shop.example", dmarc.PolicyNone, ""},
		{"double.example", "", "", "none applies"},
		{"broken.example", "", "", "does not parse"},
		{"none.example", "", "", "no DMARC record"},
	}
	for _, tt := range tests {
		d := LookupDMARC(t.Context(), r, tt.from)
		if d.Found != tt.found || d.Effective != tt.effective || !strings.Contains(d.Err, tt.err) || d.Temporary {
			t.Errorf("LookupDMARC(%s) = found %q effective %q err %q", tt.from, d.Found, d.Effective, d.Err)
		}
	}
	d := LookupDMARC(t.Context(), r, "news.shop.example")
	if d.DKIMAlignment() != dmarc.AlignmentStrict || d.SPFAlignment() != dmarc.AlignmentRelaxed || d.OrgDomain != "shop.example" {
		t.Errorf("alignment modes %s %s org %s", d.DKIMAlignment(), d.SPFAlignment(), d.OrgDomain)
	}
}

func TestLookupDKIM(t *testing.T) {
	r, _ := testResolver(t)
	if k := LookupDKIM(t.Context(), r, "sel", "shop.example"); k.Key == nil || k.Key.KeyType != "ed25519" {
		t.Errorf("LookupDKIM = %+v", k)
	}
	if k := LookupDKIM(t.Context(), r, "nosel", "shop.example"); k.Key != nil || !k.NotFound {
		t.Errorf("missing selector = %+v", k)
	}
}
