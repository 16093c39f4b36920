package probe_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/probe"
)

// probeLab runs the real mailroute binary inside the lab's namespace and
// decodes its --json report. Exit code 1 (nothing can send) is a result,
// not a failure.
func probeLab(t testing.TB, l *lab.Lab, args ...string) (*probe.Report, int) {
	t.Helper()
	res := l.RunMailroute(t, nil, append([]string{"probe", "--json"}, args...)...)
	var rep probe.Report
	if err := json.Unmarshal(res.Stdout, &rep); err != nil {
		t.Fatalf("probe --json printed no JSON (exit %d): %v\nstdout:\n%s\nstderr:\n%s", res.Code, err, res.Stdout, res.Stderr)
	}
	return &rep, res.Code
}

func domain(t *testing.T, rep *probe.Report, name string) *probe.Domain {
	t.Helper()
	for _, d := range rep.Domains {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no domain %s in report", name)
	return nil
}

func endpoint(t *testing.T, ends []*probe.Endpoint, host string, port int) *probe.Endpoint {
	t.Helper()
	for _, e := range ends {
		if e.Host == host && e.Port == port {
			return e
		}
	}
	t.Fatalf("no endpoint %s:%d", host, port)
	return nil
}

// TestLabProbe: one lab, every ISP behaviour at once, against real Postfix,
// dnsmasq and iptables; each verdict asserted with its evidence.
func TestLabProbe(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	for _, rule := range []struct {
		f   func(string, int) error
		net string
	}{{l.Filter, lab.FilterNet}, {l.Refuse, lab.RefuseNet}, {l.Unreachable, lab.UnreachNet}, {l.Intercept, lab.InterceptNet}} {
		if err := rule.f(rule.net, 25); err != nil {
			t.Fatal(err)
		}
	}
	domains := []string{lab.AlphaDomain, lab.BetaDomain, lab.GammaDomain, lab.NullMXDomain, lab.NoSuchDomain,
		lab.FilteredDomain, lab.RefusedDomain, lab.UnreachDomain, lab.OneDomain, lab.TwoDomain}
	args := []string{"--timeout", "2s", "--tls-ca", l.CAFile, "--relay", lab.RelayHost}
	for _, d := range domains {
		args = append(args, "--to", d)
	}
	start := time.Now()
	rep, code := probeLab(t, l, args...)
	t.Logf("probe of %d endpoints took %s (report says %s)", len(rep.Endpoints()), time.Since(start), rep.Elapsed)
	if code != 0 {
		t.Errorf("exit %d, want 0: the open MX and the relay can take mail", code)
	}

	t.Run("open MX, STARTTLS verified through --tls-ca", func(t *testing.T) {
		e := domain(t, rep, lab.AlphaDomain).Ends[0]
		if e.Verdict != probe.Open || !e.Usable() || e.BannerHost != lab.MXHost {
			t.Fatalf("%+v", e)
		}
		if e.TLS == nil || !e.TLS.Verified || !strings.HasPrefix(e.TLS.Version, "TLS 1.") {
			t.Fatalf("TLS %+v", e.TLS)
		}
		if _, ok := e.EHLO["STARTTLS"]; !ok {
			t.Errorf("EHLO %v lacks STARTTLS", e.EHLO)
		}
		if len(e.Evidence) > 0 {
			t.Errorf("the open MX must not be called intercepted: %q", e.Evidence)
		}
	})
	t.Run("first MX filtered, second open", func(t *testing.T) {
		d := domain(t, rep, lab.BetaDomain)
		if len(d.MX) != 2 || d.MX[0].Host != lab.BetaMX1Host || d.MX[1].Pref != 20 {
			t.Fatalf("MX %+v", d.MX)
		}
		if e := endpoint(t, d.Ends, lab.BetaMX1Host, 25); e.Verdict != probe.Filtered {
			t.Errorf("mx1: %s %q", e.Verdict, e.Error)
		}
		if e := endpoint(t, d.Ends, lab.BetaMX2Host, 25); !e.Usable() || !e.TLS.Verified {
			t.Errorf("mx2: %s %q %+v", e.Verdict, e.Problem, e.TLS)
		}
	})
	t.Run("implicit MX", func(t *testing.T) {
		d := domain(t, rep, lab.GammaDomain)
		if !d.Implicit || len(d.Ends) != 1 || d.Ends[0].Addr != lab.GammaAddr || !d.Ends[0].Usable() {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("null MX", func(t *testing.T) {
		if d := domain(t, rep, lab.NullMXDomain); !d.NullMX || len(d.Ends) != 0 {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("NXDOMAIN", func(t *testing.T) {
		if d := domain(t, rep, lab.NoSuchDomain); d.DNSError == nil || d.DNSError.Kind != "nxdomain" {
			t.Fatalf("%+v", d)
		}
	})
	for _, c := range []struct {
		dom  string
		want probe.Verdict
		err  string
	}{
		{lab.FilteredDomain, probe.Filtered, "no answer before the timeout"},
		{lab.RefusedDomain, probe.Refused, "connection refused"},
		{lab.UnreachDomain, probe.Unreachable, "host unreachable"},
	} {
		t.Run(string(c.want), func(t *testing.T) {
			e := domain(t, rep, c.dom).Ends[0]
			if e.Verdict != c.want || !strings.Contains(e.Error, c.err) {
				t.Fatalf("%s: %s %q, want %s %q", c.dom, e.Verdict, e.Error, c.want, c.err)
			}
		})
	}
	t.Run("intercepted", func(t *testing.T) {
		for _, dom := range []string{lab.OneDomain, lab.TwoDomain} {
			e := domain(t, rep, dom).Ends[0]
			if e.Verdict != probe.Intercepted || e.BannerHost != lab.ISPHost || len(e.Evidence) != 3 {
				t.Fatalf("%s: %s banner %q evidence %q", dom, e.Verdict, e.BannerHost, e.Evidence)
			}
			// README "Design: interception": the shared unconfirmed identity
			// decides; the foreign certificate and greeting are notes.
			if !strings.Contains(e.Evidence[0], "(greeting as "+lab.ISPHost+") answers for the MX hosts of 2 unrelated domains") ||
				!strings.Contains(e.Evidence[1], "certificate is for "+lab.ISPHost) ||
				!strings.Contains(e.Evidence[2], "greeting names "+lab.ISPHost) {
				t.Errorf("%s evidence %q", dom, e.Evidence)
			}
		}
	})
	t.Run("relay", func(t *testing.T) {
		if len(rep.Relays) != 1 {
			t.Fatalf("relays %+v", rep.Relays)
		}
		ends := rep.Relays[0].Ends
		sub := endpoint(t, ends, lab.RelayHost, 587)
		if !sub.Usable() || sub.TLS == nil || !sub.TLS.Verified {
			t.Fatalf("587: %s %q %+v", sub.Verdict, sub.Problem, sub.TLS)
		}
		if len(sub.AuthPlain) != 0 || len(sub.AuthTLS) == 0 {
			t.Errorf("587: AUTH before TLS %v, after %v: want only after", sub.AuthPlain, sub.AuthTLS)
		}
		subs := endpoint(t, ends, lab.RelayHost, 465)
		if !subs.Usable() || subs.TLSMode != "implicit" || !subs.TLS.Verified || len(subs.AuthTLS) == 0 {
			t.Errorf("465: %s %q %+v auth %v", subs.Verdict, subs.Problem, subs.TLS, subs.AuthTLS)
		}
		for _, port := range []int{25, 2525} {
			if e := endpoint(t, ends, lab.RelayHost, port); e.Verdict != probe.Refused {
				t.Errorf("relay :%d: %s %q, want refused", port, e.Verdict, e.Error)
			}
		}
	})
	t.Run("summary", func(t *testing.T) {
		sum := strings.Join(rep.Summary, "\n")
		for _, want := range []string{
			"null.example accepts no mail",
			"nosuch.example does not exist (NXDOMAIN)",
			"port 25 is intercepted on 2 of",
			"port 25 is filtered on 2 of",
			"(they all answer as smtp.ispnet.example)",
			"Relay smtp.relay.example: :465 (implicit TLS) and :587 (STARTTLS) accept connections; AUTH",
		} {
			if !strings.Contains(sum, want) {
				t.Errorf("summary lacks %q:\n%s", want, sum)
			}
		}
	})

	// Without the lab CA the same MX is reported untrusted, not broken.
	rep2, _ := probeLab(t, l, "--timeout", "2s", "--to", lab.AlphaDomain)
	e := domain(t, rep2, lab.AlphaDomain).Ends[0]
	if e.TLS == nil || e.TLS.Verified || !strings.Contains(e.TLS.VerifyError, "unknown authority") || !e.Usable() {
		t.Errorf("without --tls-ca: %+v", e.TLS)
	}
}

// TestLabProbeHumanAndDiscovery: the human report (no colour when not a
// terminal) and --from finding the submission server through SRV records.
func TestLabProbeHumanAndDiscovery(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	if err := l.Filter(lab.FilterNet, 25); err != nil {
		t.Fatal(err)
	}
	if err := l.Intercept(lab.InterceptNet, 25); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := l.Command(ctx, lab.Mailroute(t), "probe", "--timeout", "2s", "--tls-ca", l.CAFile,
		"--to", lab.AlphaDomain, "--to", lab.OneDomain, "--to", lab.TwoDomain, "--to", lab.FilteredDomain,
		"--relay", lab.RelayHost).Output()
	text := string(out)
	t.Logf("human report:\n%s", text)
	for _, want := range []string{"alpha.example\n  MX 10 mx.alpha.example\n    127.0.2.1:25  open", "intercepted", "evidence: ", "Summary\n", "verified"} {
		if !strings.Contains(text, want) {
			t.Errorf("human report lacks %q", want)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Errorf("colour codes on a non-terminal")
	}

	rep, code := probeLab(t, l, "--timeout", "2s", "--tls-ca", l.CAFile, "--from", "alice@"+lab.RelayDomain)
	if code != 0 || len(rep.Relays) != 1 || rep.Relays[0].Host != lab.RelayHost || rep.Relays[0].Source != "srv" {
		t.Fatalf("discovery: exit %d relays %+v", code, rep.Relays)
	}
	ends := rep.Relays[0].Ends
	if len(ends) != 2 || ends[0].Port != 465 || ends[0].TLSMode != "implicit" || ends[1].Port != 587 || !ends[0].Usable() || !ends[1].Usable() {
		t.Errorf("discovered endpoints: %+v %+v", ends[0], ends[len(ends)-1])
	}
}

// TestLabProbeIdentity: probe --identity asks the lab's echo service, PTR and
// blocklist (never an outside name): one address forward-confirmed and clean,
// then the same address listed in the PBL.
func TestLabProbeIdentity(t *testing.T) {
	l := lab.Start(t, lab.Options{ExtraDNS: []string{
		"host-record=out.lab.example,127.0.1.1",                // A and PTR: forward-confirmed
		"address=/myip.lab.example/127.0.1.1",                  // the echo service's answer
		"host-record=1.1.0.127.zen.pbl.lab.example,127.0.0.10", // a "zen" label: decoded as Spamhaus
	}})
	echo := "myip.lab.example@" + lab.DNSAddr
	rep, _ := probeLab(t, l, "--timeout", "2s", "--to", lab.AlphaDomain, "--ip-echo", echo, "--dnsbl", "zen.lab.example")
	id := rep.Identity
	if id == nil || id.PublicIP != "127.0.1.1" || !id.ForwardConfirmed || id.ConfirmedName != "out.lab.example" {
		t.Fatalf("identity %+v", id)
	}
	if len(id.Listings) != 1 || id.Listings[0].Listed || id.Listings[0].Error != "" {
		t.Errorf("listings %+v, want not listed", id.Listings)
	}
	if s := strings.Join(rep.Summary, "\n"); !strings.Contains(s, "its reverse name out.lab.example points back to it (forward-confirmed); not listed on zen.lab.example") {
		t.Errorf("summary:\n%s", s)
	}

	res := l.RunMailroute(t, nil, "probe", "--timeout", "2s", "--to", lab.AlphaDomain, "--ip-echo", echo, "--dnsbl", "zen.pbl.lab.example")
	out := string(res.Stdout)
	for _, want := range []string{"this machine\n  public address: 127.0.1.1", "reverse name: out.lab.example (forward-confirmed)", "zen.pbl.lab.example: listed: ", "end-user range"} {
		if !strings.Contains(out, want) {
			t.Errorf("human report lacks %q:\n%s", want, out)
		}
	}
}
