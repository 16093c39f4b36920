package probe_test

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/probe"
)

// TestLabProbeMTASTS: the probe reports each domain's MTA-STS policy as the
// lab publishes it (dnsmasq TXT, openssl s_server over HTTPS), which MX
// hosts it names, and, in the human report, one line per policy; advise
// says what that means for direct delivery. delta's MX is the lab Postfix
// under a name its certificate lacks: a shared server, not interception
// (its certificate's name resolves to the address that answered, README
// "Design: interception"), whose certificate cannot meet the policy.
func TestLabProbeMTASTS(t *testing.T) {
	const delta = lab.DeltaDomain
	dns := append(lab.MTASTSDNS(lab.AlphaDomain, "20261128"), lab.MTASTSDNS(delta, "7")...)
	l := lab.Start(t, lab.Options{ExtraDNS: append(dns, lab.DeltaDNS()...)})
	l.ServeMTASTS(t, "version: STSv1\nmode: enforce\nmx: "+lab.MXHost+"\nmx: *."+delta+"\nmax_age: 604800\n")
	args := []string{"--timeout", "2s", "--tls-ca", l.CAFile, "--to", lab.AlphaDomain, "--to", delta, "--to", lab.BetaDomain}
	rep, _ := probeLab(t, l, args...)

	a := domain(t, rep, lab.AlphaDomain).MTASTS
	if a == nil || a.Error != "" || a.Mode != "enforce" || a.ID != "20261128" || !a.Matches[lab.MXHost] {
		t.Errorf("alpha: %+v", a)
	}
	d := domain(t, rep, delta)
	if d.MTASTS == nil || !d.MTASTS.Matches["mx."+delta] || d.MTASTS.ID != "7" {
		t.Errorf("delta: %+v", d.MTASTS)
	}
	if e := d.Ends[0]; e.TLS == nil || e.TLS.Verified || !strings.Contains(e.TLS.VerifyError, "mx."+delta) {
		t.Errorf("delta's MX certificate should not verify for its name: %+v", e.TLS)
	} else if e.Verdict != probe.Open {
		t.Errorf("delta's MX is the lab Postfix, shared: %s %q", e.Verdict, e.Evidence)
	}
	if b := domain(t, rep, lab.BetaDomain).MTASTS; b != nil {
		t.Errorf("beta publishes no policy: %+v", b)
	}

	human := l.RunMailroute(t, []string{"NO_COLOR=1"}, append([]string{"probe"}, args...)...)
	if !strings.Contains(string(human.Stdout), "MTA-STS: enforce (mx: "+lab.MXHost+" *."+delta+"; id 20261128)") {
		t.Errorf("the human report lacks the policy line:\n%s", human.Stdout)
	}
	// advise explains what the policies mean for direct delivery.
	adv := l.RunMailroute(t, []string{"NO_COLOR=1"}, append([]string{"advise", "--ip-echo", "myip.lab.example@" + lab.DNSAddr, "--dnsbl", "zen.lab.example"}, args...)...)
	for _, want := range []string{"alpha.example requires verified encryption, and " + lab.MXHost + " qualifies",
		"Direct mail to " + delta + " would wait", "mx." + delta + ": its certificate does not verify (the certificate is"} {
		if !strings.Contains(string(adv.Stdout), want) {
			t.Errorf("advise lacks %q:\n%s\n%s", want, adv.Stdout, adv.Stderr)
		}
	}
}
