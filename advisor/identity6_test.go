package advisor

import (
	"strings"
	"testing"

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
