package advisor

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/probe"
)

// A resolver that denies the built-in targets is one finding that names
// it, never a spelling mistake per domain (issue 14).
func TestExplainLyingResolver(t *testing.T) {
	lie := func(name string) *probe.Domain {
		return &probe.Domain{Name: name, DNSError: &probe.DNSError{Kind: probe.KindLyingResolver, Seen: "nxdomain",
			Message: "the DNS server 192.0.2.53:53 says " + name + " does not exist (NXDOMAIN), and it certainly does"}}
	}
	rep := &probe.Report{Resolver: []string{"192.0.2.53:53"}, Domains: []*probe.Domain{lie("gmail.com"), lie("outlook.com"), lie("yahoo.com")},
		ResolverLies: &probe.ResolverDoubt{Resolver: []string{"192.0.2.53:53"}, Seen: "nxdomain", Names: []string{"gmail.com", "outlook.com", "yahoo.com"},
			Text: "The DNS server 192.0.2.53:53 is lying or filtering: it answers that gmail.com, outlook.com, yahoo.com do not exist (NXDOMAIN), and they certainly do."}}
	fs := explainDomains(rep)
	if len(fs) != 1 || fs[0].Severity != SevProblem || fs[0].Title != "The DNS server (192.0.2.53:53) is lying or filtering" ||
		len(fs[0].Hosts) != 3 || !strings.Contains(fs[0].Action, "--resolver") || !strings.Contains(fs[0].Meaning, "gmail.com, outlook.com, yahoo.com") {
		t.Fatalf("%+v", fs)
	}
	for _, f := range Explain(rep) {
		if strings.Contains(strings.ToLower(f.Action+f.Meaning), "spelling") {
			t.Errorf("spelling: %+v", f)
		}
	}
}
