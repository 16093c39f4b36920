package probe_test

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/lab"
)

// TestLabLyingResolver: issue 14's third case. A dnsmasq with address=/#/
// answers NXDOMAIN for every name; another sends every name to 127.0.0.1.
// With either as --resolver, probe (built-in targets), probe --to and
// advise name the resolver as lying and suggest --resolver, and never ask
// to check the spelling of gmail.com.
func TestLabLyingResolver(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	l.StartLyingDNS(t, lab.LiarAddr, "")
	l.StartLyingDNS(t, lab.LiarPrivateAddr, "127.0.0.1")
	noSpelling := func(t *testing.T, text string) {
		t.Helper()
		if strings.Contains(strings.ToLower(text), "spelling") {
			t.Errorf("asks to check the spelling:\n%s", text)
		}
	}

	t.Run("NXDOMAIN for the built-in targets", func(t *testing.T) {
		rep, code := probeLab(t, l, "--timeout", "2s", "--resolver", lab.LiarAddr)
		if code != 1 {
			t.Errorf("exit %d, want 1 (nothing can send)", code)
		}
		d := rep.ResolverLies
		if d == nil || d.Seen != "nxdomain" || len(d.Names) != 3 || rep.Offline {
			t.Fatalf("resolver_lies %+v offline %v", d, rep.Offline)
		}
		sum := strings.Join(rep.Summary, "\n")
		if !strings.Contains(sum, "The DNS server "+lab.LiarAddr+":53 is lying or filtering: it answers that gmail.com, outlook.com, yahoo.com do not exist (NXDOMAIN), and they certainly do") ||
			!strings.Contains(sum, "--resolver IP") {
			t.Errorf("summary:\n%s", sum)
		}
		noSpelling(t, sum)
	})
	t.Run("private addresses for the built-in targets", func(t *testing.T) {
		rep, _ := probeLab(t, l, "--timeout", "2s", "--resolver", lab.LiarPrivateAddr)
		if d := rep.ResolverLies; d == nil || d.Seen != "private" || len(rep.Endpoints()) != 0 {
			t.Fatalf("resolver_lies %+v, %d endpoints", d, len(rep.Endpoints()))
		}
		if sum := strings.Join(rep.Summary, "\n"); !strings.Contains(sum, "to private or local addresses (127.0.0.1)") {
			t.Errorf("summary:\n%s", sum)
		}
	})
	t.Run("a --to domain", func(t *testing.T) {
		rep, _ := probeLab(t, l, "--timeout", "2s", "--resolver", lab.LiarAddr, "--to", lab.AlphaDomain)
		sum := strings.Join(rep.Summary, "\n")
		if rep.ResolverLies == nil || !strings.Contains(sum, lab.AlphaDomain+": the same DNS server says it does not exist, which proves nothing") {
			t.Errorf("resolver_lies %+v summary:\n%s", rep.ResolverLies, sum)
		}
		noSpelling(t, sum)
	})
	// advise (and the wizard, which prints the same advisor.Explain
	// findings) inherits the words from the report.
	t.Run("advise", func(t *testing.T) {
		res := l.RunMailroute(t, nil, "advise", "--json", "--timeout", "2s", "--resolver", lab.LiarAddr,
			"--ip-echo", "myip.lab.example@"+lab.DNSAddr, "--dnsbl", "zen.lab.example")
		out := string(res.Stdout)
		for _, want := range []string{"The DNS server (" + lab.LiarAddr + ":53) is lying or filtering",
			"gmail.com does not exist (NXDOMAIN), and it certainly does: that server is lying or filtering", "--resolver"} {
			if !strings.Contains(out, want) {
				t.Errorf("advise lacks %q:\n%s\n%s", want, out, res.Stderr)
			}
		}
		noSpelling(t, out)
	})
}
