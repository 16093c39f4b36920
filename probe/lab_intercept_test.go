package probe_test

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/probe"
)

// TestLabSharedHostingIsNotIntercepted is issue 14's first case, on real
// Postfix: one MX on two addresses serves three domains with one
// certificate (for mx1.open.example). Its foreign identity is
// forward-confirmed at one address and presents the same certificate at the
// other, so every endpoint is open; the two domains DNAT'ed to the "ISP"
// share an identity confirmed nowhere, and still read intercepted. A lone MX
// with a self-signed certificate for another name is open, with a note.
func TestLabSharedHostingIsNotIntercepted(t *testing.T) {
	l := lab.Start(t, lab.Options{ExtraDNS: lab.SharedMXDNS()})
	l.StartSharedMX(t)
	if err := l.Intercept(lab.InterceptNet, 25); err != nil {
		t.Fatal(err)
	}
	args := []string{"--timeout", "2s", "--tls-ca", l.CAFile}
	for _, d := range []string{lab.OpenDomain, lab.ShopDomain, lab.HostedDomain, lab.LonelyDomain, lab.OneDomain, lab.TwoDomain} {
		args = append(args, "--to", d)
	}
	rep, code := probeLab(t, l, args...)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	for _, dom := range []string{lab.OpenDomain, lab.ShopDomain, lab.HostedDomain} {
		e := domain(t, rep, dom).Ends[0]
		if e.Verdict != probe.Open || !e.Usable() || len(e.Evidence) > 0 {
			t.Errorf("%s (%s at %s): %s evidence %q signals %+v", dom, e.Host, e.Addr, e.Verdict, e.Evidence, e.Signals)
		}
		if e.BannerHost != lab.SharedMXHost || e.TLS == nil || e.TLS.SHA256 == "" {
			t.Errorf("%s: banner %q TLS %+v", dom, e.BannerHost, e.TLS)
		}
		if dom != lab.OpenDomain && !hasSignal(e, probe.WeightGenuine) {
			t.Errorf("%s: no signal that rules interception out: %+v", dom, e.Signals)
		}
	}
	if d := domain(t, rep, lab.ShopDomain); !d.Implicit || d.Ends[0].Addr != lab.SharedAddr {
		t.Errorf("shop.example: implicit %v at %s", d.Implicit, d.Ends[0].Addr)
	}
	if e := domain(t, rep, lab.HostedDomain).Ends[0]; e.Addr != lab.SharedAddr2 ||
		!strings.Contains(signalText(e, probe.WeightGenuine), "same certificate") {
		t.Errorf("hosted.example at %s: %+v", e.Addr, e.Signals)
	}

	lone := domain(t, rep, lab.LonelyDomain).Ends[0]
	if lone.Verdict != probe.Open || !lone.Usable() || len(lone.Evidence) > 0 {
		t.Errorf("lonely MX: %s %q", lone.Verdict, lone.Evidence)
	}
	if len(lone.Notes) == 0 || !strings.Contains(strings.Join(lone.Notes, "\n"), lab.LonelyCertName) {
		t.Errorf("lonely MX notes %q: want the foreign certificate named", lone.Notes)
	}
	if lone.TLS == nil || lone.TLS.Verified {
		t.Errorf("lonely MX TLS %+v: want an untrusted self-signed certificate", lone.TLS)
	}

	for _, dom := range []string{lab.OneDomain, lab.TwoDomain} {
		e := domain(t, rep, dom).Ends[0]
		if e.Verdict != probe.Intercepted || e.BannerHost != lab.ISPHost {
			t.Fatalf("%s: %s banner %q signals %+v", dom, e.Verdict, e.BannerHost, e.Signals)
		}
		if !strings.Contains(e.Evidence[0], "2 unrelated domains") || !strings.Contains(e.Evidence[0], lab.ISPHost) {
			t.Errorf("%s evidence %q", dom, e.Evidence)
		}
		if hasSignal(e, probe.WeightGenuine) {
			t.Errorf("%s: a genuine signal on the interceptor: %+v", dom, e.Signals)
		}
	}
	sum := strings.Join(rep.Summary, "\n")
	if !strings.Contains(sum, "port 25 is intercepted on 2 of 6 MX hosts") {
		t.Errorf("summary:\n%s", sum)
	}
}

func hasSignal(e *probe.Endpoint, w probe.Weight) bool { return signalText(e, w) != "" }

func signalText(e *probe.Endpoint, w probe.Weight) string {
	var out []string
	for _, s := range e.Signals {
		if s.Weight == w {
			out = append(out, s.Text)
		}
	}
	return strings.Join(out, "\n")
}
