package probe_test

import (
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/lab"
)

// TestLabIdentityOverIPv6: with an echo service over IPv4 (the lab DNS) and
// one over IPv6 (a dnsmasq on fd00::53), probe --identity reports this
// machine over each family, with the IPv6 address's own reverse name.
func TestLabIdentityOverIPv6(t *testing.T) {
	const v6 = "fd00::1:1"
	l := lab.Start(t, lab.Options{ExtraDNS: []string{
		"host-record=out.lab.example,127.0.1.1",
		"address=/myip.lab.example/127.0.1.1",
		"host-record=out6.lab.example," + v6, // AAAA and PTR: forward-confirmed
	}})
	l.StartEcho6(t, "myip.lab.example", v6)
	rep, _ := probeLab(t, l, "--timeout", "2s", "--to", lab.AlphaDomain, "--dnsbl", "zen.lab.example",
		"--ip-echo", "myip.lab.example@"+lab.DNSAddr, "--ip-echo", "myip.lab.example@["+lab.Echo6Addr+"]")
	id := rep.Identity
	if id == nil || id.PublicIP != "127.0.1.1" || !id.ForwardConfirmed {
		t.Fatalf("identity %+v", id)
	}
	six := id.IPv6
	if six == nil || six.PublicIP != v6 || !six.ForwardConfirmed || six.ConfirmedName != "out6.lab.example" || len(six.Listings) != 1 || six.Listings[0].Listed {
		t.Fatalf("IPv6 identity %+v (unknown %q)", six, id.Unknown)
	}
	if s := strings.Join(rep.Summary, "\n"); !strings.Contains(s, "Over IPv6 this machine is "+v6+"; its reverse name out6.lab.example points back to it (forward-confirmed); not listed on zen.lab.example") {
		t.Errorf("summary:\n%s", s)
	}
}
