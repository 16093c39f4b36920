package advisor

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/probe"
)

func TestExplainIdentity6(t *testing.T) {
	id := &probe.Identity{PublicIP: "192.0.2.10", PTR: []string{"mail.example.test"}, ForwardConfirmed: true, ConfirmedName: "mail.example.test",
		IPv6: &probe.Identity{PublicIP: "2001:db8::7"}}
	fs := explainIdentity6(id)
	if len(fs) != 1 || fs[0].Title != "Over IPv6: This machine's address has no name" || fs[0].Severity != SevWarning ||
		!strings.Contains(fs[0].Meaning, "2001:db8::7") || !strings.Contains(fs[0].Meaning, "Gmail refuses mail from IPv6 addresses without a reverse name") {
		t.Errorf("%+v", fs)
	}
	if fs := explainIdentity6(&probe.Identity{PublicIP: "192.0.2.10"}); fs != nil {
		t.Errorf("no IPv6: %+v", fs)
	}
}

// Port 25 open over IPv6 only: direct mail would leave from the IPv6
// address, so that is the identity that decides.
func TestDecideJudgesTheIPv6IdentityWhenOnlyIPv6Works(t *testing.T) {
	v4 := &probe.Endpoint{Role: probe.RoleMX, Host: "mx.a.test", Addr: "192.0.2.1", Port: 25, Verdict: probe.Filtered}
	v6 := &probe.Endpoint{Role: probe.RoleMX, Host: "mx.a.test", Addr: "2001:db8::1", Port: 25, Verdict: probe.Open,
		Banner: &smtpclient.Reply{Code: 220, Lines: []string{"mx.a.test ESMTP"}}}
	good := func(ip string) *probe.Identity {
		return &probe.Identity{PublicIP: ip, PTR: []string{"mail.example.test"}, ForwardConfirmed: true, ConfirmedName: "mail.example.test"}
	}
	rep := &probe.Report{Domains: []*probe.Domain{{Name: "a.test", Ends: []*probe.Endpoint{v4, v6}}},
		Port25ByFamily: []probe.FamilyPort25{{Family: "IPv4", Endpoints: 1}, {Family: "IPv6", Endpoints: 1, Open: 1}}}

	rep.Identity = good("192.0.2.10") // a good IPv4 name, and no IPv6 identity known
	rec := Decide(Input{Report: rep})
	if !strings.Contains(stepReason(rec, "port 25"), "over IPv6 only") || !strings.Contains(stepReason(rec, "identity"), "IPv6 address was not found") {
		t.Errorf("the IPv4 identity judged where only IPv6 works: %+v", rec.Steps)
	}
	rep.Identity.IPv6 = good("2001:db8::7")
	rec = Decide(Input{Report: rep})
	if rec.Mode != config.ModeDirect || !strings.Contains(stepReason(rec, "identity"), "2001:db8::7") {
		t.Errorf("a good IPv6 identity: mode %q, steps %+v", rec.Mode, rec.Steps)
	}
	// The config sends over the family that works.
	if rec.Config == nil || rec.Config.Direct.AddressFamily != config.FamilyIPv6 {
		t.Errorf("config direct %+v, want address_family ipv6", rec.Config)
	}
}

func stepReason(rec *Recommendation, topic string) string {
	for _, s := range rec.Steps {
		if s.Topic == topic {
			return s.Reason
		}
	}
	return ""
}
