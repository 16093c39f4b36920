package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/internal/lab"
)

// The check lab: sender domains whose SPF, DKIM and DMARC records are real
// TXT records served by the lab dnsmasq, and a relay (the lab Postfix relay)
// the mail would leave through. check must judge each as a receiver would.
const (
	goodDomain     = "good.example"     // SPF authorizes the relay, Ed25519 key published, p=reject
	goodRSADomain  = "rsa.example"      // the same with a 2048-bit RSA key
	badDomain      = "bad.example"      // SPF excludes the relay, no DKIM, p=reject
	wrongKeyDomain = "wrongkey.example" // SPF passes, but the published key is not key_file's
	directDomain   = "direct.example"   // direct mode: SPF authorizes this machine's public address
	labPublicIP    = "127.0.1.1"        // what the lab's echo service says this machine's address is
	labPublicName  = "out.direct.example"
	hostedDomain   = "hosted.example" // MX at Outlook.com
	labSelector    = "lab"
)

// labCheckDoc mirrors check --json.
type labCheckDoc struct {
	OK       bool `json:"ok"`
	Findings []struct {
		Check    string   `json:"check"`
		Verdict  string   `json:"verdict"`
		Title    string   `json:"title"`
		Evidence []string `json:"evidence"`
		Meaning  string   `json:"meaning"`
		Fix      string   `json:"fix"`
		Sources  []string `json:"sources"`
	} `json:"findings"`
	Problems []string `json:"problems"`
}

func (d *labCheckDoc) verdict(check string) string {
	for _, f := range d.Findings {
		if f.Check == check {
			return f.Verdict
		}
	}
	return ""
}

// checkLab starts a lab with the check domains' records and returns it with
// the DKIM keys: the published ones and one that is published nowhere.
func checkLab(t *testing.T) (l *lab.Lab, ed, rsaKey, stray lab.DKIMKey) {
	t.Helper()
	dir := t.TempDir()
	ed = lab.NewDKIMKey(t, dir, "ed25519")
	rsaKey = lab.NewDKIMKey(t, dir, "rsa")
	stray = lab.NewDKIMKey(t, dir, "ed25519")
	relaySPF := "v=spf1 a:" + lab.RelayHost + " -all"
	l = lab.Start(t, lab.Options{ExtraDNS: []string{
		lab.TXTRecord(goodDomain, relaySPF),
		lab.TXTRecord(labSelector+"._domainkey."+goodDomain, ed.Record),
		lab.TXTRecord("_dmarc."+goodDomain, "v=DMARC1; p=reject"),

		lab.TXTRecord(goodRSADomain, relaySPF),
		lab.TXTRecord(labSelector+"._domainkey."+goodRSADomain, rsaKey.Record),
		lab.TXTRecord("_dmarc."+goodRSADomain, "v=DMARC1; p=quarantine"),

		lab.TXTRecord(badDomain, "v=spf1 ip4:192.0.2.1 -all"),
		lab.TXTRecord("_dmarc."+badDomain, "v=DMARC1; p=reject"),

		lab.TXTRecord(wrongKeyDomain, relaySPF),
		lab.TXTRecord(labSelector+"._domainkey."+wrongKeyDomain, ed.Record),
		lab.TXTRecord("_dmarc."+wrongKeyDomain, "v=DMARC1; p=none"),

		lab.TXTRecord(directDomain, "v=spf1 ip4:"+labPublicIP+" -all"),
		lab.TXTRecord(labSelector+"._domainkey."+directDomain, ed.Record),
		lab.TXTRecord("_dmarc."+directDomain, "v=DMARC1; p=reject"),
		"address=/myip.lab.example/" + labPublicIP,         // the echo service's answer
		"host-record=" + labPublicName + "," + labPublicIP, // A and PTR: forward-confirmed
		// A company domain whose mail Outlook.com's servers receive: found
		// by its MX, not its name.
		"mx-host=" + hostedDomain + ",hosted-example.olc.protection.outlook.com,10",
	}})
	return l, ed, rsaKey, stray
}

// checkMailing writes a relay config (with [dkim] when key is not ""), a
// message from news@domain, and a list of n recipients at rcptDomain.
func checkMailing(t *testing.T, l *lab.Lab, domain, key, extra string, n int, rcptDomain string) (dir string, args []string) {
	t.Helper()
	dir = t.TempDir()
	cfg := fmt.Sprintf(`mode = "relay"
threads = 2

[[relay]]
host = %q
port = 587
tls = "starttls"
username = %q
password_env = "LAB_PW"
ca_file = %q
`, lab.RelayHost, lab.RelayUser, l.CAFile)
	if domain == directDomain {
		cfg = "mode = \"direct\"\nthreads = 2\n"
	}
	if key != "" {
		cfg += fmt.Sprintf("\n[dkim]\ndomain = %q\nselector = %q\nkey_file = %q\n", domain, labSelector, key)
	}
	cfg += extra
	var list strings.Builder
	list.WriteString("email,id\n")
	for i := range n {
		fmt.Fprintf(&list, "user%05d@%s,%d\n", i, rcptDomain, i)
	}
	for name, body := range map[string]string{
		"mailing.toml": cfg,
		"list.csv":     list.String(),
		"message.txt":  "From: News <news@" + domain + ">\nSubject: Hello\n\nHello.\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, []string{"check", "--config", filepath.Join(dir, "mailing.toml"), "--message", filepath.Join(dir, "message.txt"),
		"--list", filepath.Join(dir, "list.csv"), "--resolver", lab.DNSAddr, "--ip-echo", "myip.lab.example@" + lab.DNSAddr}
}

func labCheck(t *testing.T, l *lab.Lab, args []string) (labRun, *labCheckDoc) {
	t.Helper()
	text := mailroute(t, l, "", nil, args...)
	r := mailroute(t, l, "", nil, append(args, "--json")...)
	var doc labCheckDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("check --json printed no JSON (exit %d): %v\nstdout:\n%s\nstderr:\n%s", r.code, err, r.stdout, r.stderr)
	}
	if text.code != r.code {
		t.Errorf("exit %d as text, %d as JSON", text.code, r.code)
	}
	t.Logf("check %s: exit %d in %s\n%s%s", strings.Join(args[1:], " "), text.code, text.took, text.stdout, text.stderr)
	return text, &doc
}

// TestLabCheck: the cases, each against the real records.
func TestLabCheck(t *testing.T) {
	l, ed, rsaKey, stray := checkLab(t)

	t.Run("authenticated/ed25519", func(t *testing.T) {
		_, args := checkMailing(t, l, goodDomain, ed.File, "", 3, lab.AlphaDomain)
		r, doc := labCheck(t, l, args)
		if r.code != 0 || !doc.OK || len(doc.Problems) != 0 {
			t.Fatalf("exit %d, ok %v, problems %v", r.code, doc.OK, doc.Problems)
		}
		for _, c := range []string{"spf", "dkim", "dmarc"} {
			if v := doc.verdict(c); v != "pass" {
				t.Errorf("%s: verdict %q, want pass", c, v)
			}
		}
		if !strings.Contains(r.stdout, lab.RelayAddr) || !strings.Contains(r.stdout, "p=reject") {
			t.Errorf("the text names neither the relay's address nor the policy:\n%s", r.stdout)
		}
	})

	t.Run("authenticated/rsa", func(t *testing.T) {
		_, args := checkMailing(t, l, goodRSADomain, rsaKey.File, "", 3, lab.AlphaDomain)
		r, doc := labCheck(t, l, args)
		if r.code != 0 || doc.verdict("dkim") != "pass" {
			t.Fatalf("exit %d, dkim %q", r.code, doc.verdict("dkim"))
		}
	})

	t.Run("spf fails, no dkim, p=reject", func(t *testing.T) {
		_, args := checkMailing(t, l, badDomain, "", "", 3, lab.AlphaDomain)
		r, doc := labCheck(t, l, args)
		if r.code != 1 || doc.OK {
			t.Fatalf("exit %d, ok %v, want 1", r.code, doc.OK)
		}
		for _, c := range []string{"SPF", "DMARC"} {
			if !slices.Contains(doc.Problems, c) {
				t.Errorf("problems %v lack %s", doc.Problems, c)
			}
			if !strings.Contains(r.stdout, c) {
				t.Errorf("the text does not name %s", c)
			}
		}
		if doc.verdict("spf") != "fail" || doc.verdict("dmarc") != "fail" {
			t.Errorf("spf %q dmarc %q, want fail, fail", doc.verdict("spf"), doc.verdict("dmarc"))
		}
		// The receiver's likely reply is quoted.
		if !strings.Contains(r.stdout, "5.7.26") {
			t.Errorf("the text does not quote Gmail's 550 5.7.26:\n%s", r.stdout)
		}
	})

	t.Run("key_file is not the published key", func(t *testing.T) {
		_, args := checkMailing(t, l, wrongKeyDomain, stray.File, "", 3, lab.AlphaDomain)
		r, doc := labCheck(t, l, args)
		if r.code != 1 || !slices.Contains(doc.Problems, "DKIM") || doc.verdict("dkim") != "fail" {
			t.Fatalf("exit %d, problems %v, dkim %q", r.code, doc.Problems, doc.verdict("dkim"))
		}
		if !strings.Contains(r.stdout, "DKIM") {
			t.Errorf("the text does not name DKIM")
		}
	})

	// Direct mode: SPF is judged for this machine's public address, which
	// check asks of the (lab's) DNS echo service.
	t.Run("direct", func(t *testing.T) {
		_, args := checkMailing(t, l, directDomain, ed.File, "", 3, lab.AlphaDomain)
		r, doc := labCheck(t, l, args)
		if r.code != 0 || doc.verdict("spf") != "pass" || doc.verdict("dmarc") != "pass" {
			t.Fatalf("exit %d, spf %q, dmarc %q", r.code, doc.verdict("spf"), doc.verdict("dmarc"))
		}
		if !strings.Contains(r.stdout, labPublicIP+" (this machine's public address") {
			t.Errorf("the text does not say where the address came from")
		}
		// The same mailing as if it left from another address.
		r, doc = labCheck(t, l, append(args, "--sending-ip", "192.0.2.99"))
		if r.code != 1 || doc.verdict("spf") != "fail" || doc.verdict("dmarc") != "pass" {
			t.Fatalf("--sending-ip 192.0.2.99: exit %d, spf %q, dmarc %q", r.code, doc.verdict("spf"), doc.verdict("dmarc"))
		}
	})

	t.Run("bad input", func(t *testing.T) {
		dir, args := checkMailing(t, l, goodDomain, ed.File, "", 1, lab.AlphaDomain)
		if err := os.WriteFile(filepath.Join(dir, "message.txt"), []byte("Subject: no from\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := mailroute(t, l, "", nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "From") {
			t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
		}
	})
}

// TestLabCheckBulk: 6,000 Gmail recipients from a fully authenticated
// domain. Without [unsubscribe] Gmail's bulk-sender rule for one-click
// unsubscribe is broken (exit 1, the rule named); with it every rule check
// can see is met (exit 0). gmail.com is known by name: no MX is asked.
func TestLabCheckBulk(t *testing.T) {
	l, ed, _, _ := checkLab(t)
	_, args := checkMailing(t, l, goodDomain, ed.File, "", 6000, "gmail.com")
	r, doc := labCheck(t, l, args)
	if r.code != 1 || doc.verdict("bulk:gmail") != "fail" || !slices.Contains(doc.Problems, "Gmail bulk-sender rules") {
		t.Fatalf("exit %d, bulk:gmail %q, problems %v", r.code, doc.verdict("bulk:gmail"), doc.Problems)
	}
	for _, want := range []string{"6000 recipients", "5000", "NOT met: one-click unsubscribe", "https://support.google.com/a/answer/81126"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the text lacks %q", want)
		}
	}
	for _, c := range []string{"spf", "dkim", "dmarc"} {
		if v := doc.verdict(c); v != "pass" {
			t.Errorf("%s: %q, want pass: only the bulk rule may fail", c, v)
		}
	}

	unsub := "\n[unsubscribe]\nurl = \"https://" + goodDomain + "/u?id={{.id}}\"\n"
	_, args = checkMailing(t, l, goodDomain, ed.File, unsub, 6000, "gmail.com")
	r, doc = labCheck(t, l, args)
	if r.code != 0 || doc.verdict("bulk:gmail") != "pass" {
		t.Fatalf("with [unsubscribe]: exit %d, bulk:gmail %q, problems %v", r.code, doc.verdict("bulk:gmail"), doc.Problems)
	}

	// Microsoft's rules count domains it hosts, found by MX; they need no
	// unsubscribe header, so this authenticated mailing meets them.
	_, args = checkMailing(t, l, goodDomain, ed.File, "", 6000, hostedDomain)
	r, doc = labCheck(t, l, args)
	if r.code != 0 || doc.verdict("bulk:microsoft") != "pass" || !strings.Contains(r.stdout, "6000 at domains whose MX is Outlook.com") {
		t.Fatalf("hosted by Outlook.com: exit %d, bulk:microsoft %q", r.code, doc.verdict("bulk:microsoft"))
	}

	// Direct mode adds the PTR rule: the lab's public address has one
	// that points back.
	_, args = checkMailing(t, l, directDomain, ed.File, unsub, 6000, "gmail.com")
	r, doc = labCheck(t, l, args)
	want := "met: the sending address has a forward-confirmed PTR (yes: " + labPublicIP + " → " + labPublicName
	if r.code != 0 || doc.verdict("bulk:gmail") != "pass" || !strings.Contains(r.stdout, want) {
		t.Fatalf("direct: exit %d, bulk:gmail %q, want %q in the text", r.code, doc.verdict("bulk:gmail"), want)
	}
	r, doc = labCheck(t, l, append(args, "--sending-ip", "192.0.2.99"))
	if r.code != 1 || !strings.Contains(r.stdout, "NOT met: the sending address has a forward-confirmed PTR (no: ") {
		t.Fatalf("direct from an address without PTR: exit %d, problems %v", r.code, doc.Problems)
	}
}

// TestLabCheckInAdvise: advise --from judges mail from that address over
// the route it recommends (here direct, from the lab's public address),
// with check's findings among its own.
func TestLabCheckInAdvise(t *testing.T) {
	l, _, _, _ := checkLab(t)
	type adviceFindings struct {
		Recommendation advisor.Recommendation `json:"recommendation"`
		Findings       []advisor.Finding      `json:"findings"`
	}
	advise := func(from string) *adviceFindings {
		args := append([]string{"advise", "--json", "--timeout", "2s", "--tls-ca", l.CAFile, "--to", lab.AlphaDomain, "--from", from}, labIdentity...)
		r := mailroute(t, l, t.TempDir(), nil, args...)
		var doc adviceFindings
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Recommendation.Mode != "direct" {
			t.Fatalf("advise --from %s: %v %+v\n%s", from, err, doc.Recommendation, r.stderr)
		}
		return &doc
	}
	find := func(doc *adviceFindings, prefix string) (sev, title string) {
		for _, f := range doc.Findings {
			if strings.HasPrefix(f.Title, prefix) {
				return string(f.Severity), f.Title
			}
		}
		return "", ""
	}
	doc := advise("news@" + directDomain)
	if sev, title := find(doc, "SPF: "); sev != "ok" || !strings.Contains(title, labPublicIP) {
		t.Errorf("SPF finding %s %q", sev, title)
	}
	if sev, title := find(doc, "DMARC: "); sev != "ok" || !strings.Contains(title, "p=reject") {
		t.Errorf("DMARC finding %s %q", sev, title)
	}
	doc = advise("news@" + badDomain)
	if sev, _ := find(doc, "SPF: "); sev != "problem" {
		t.Errorf("bad.example: SPF finding %s", sev)
	}
	if sev, title := find(doc, "DMARC: "); sev != "problem" || !strings.Contains(title, "p=reject") {
		t.Errorf("bad.example: DMARC finding %s %q", sev, title)
	}
}
