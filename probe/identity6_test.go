package probe

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// echo6 is an echo service on [::1]: it answers AAAA with addr, as an echo
// service does with the address it sees over IPv6.
func echo6(t *testing.T, addr string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeAAAA {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN AAAA " + addr)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// A machine with both families has an identity over each: the echo
// services are asked again over IPv6 (for AAAA), and the IPv6 address gets
// its own reverse name check and blocklist look-ups.
func TestIdentityOverIPv6(t *testing.T) {
	const v6 = "2001:db8::7"
	server6 := echo6(t, v6)
	res := fakeDNS(t, nil, echoA, ptrHost, fwdHost,
		"7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 60 IN PTR host6.isp.test.",
		"host6.isp.test. 60 IN AAAA "+v6)
	opt := IdentityOptions{
		Echo:  []EchoService{{Name: "myip.test", Type: dns.TypeA, Server: res.Servers[0]}, {Name: "myip.test", Type: dns.TypeA, Server: server6}},
		DNSBL: []string{"zen.test"},
	}
	p := &Prober{Resolver: res, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := p.Identity(ctx, opt)
	if id.PublicIP != myIP || !id.ForwardConfirmed {
		t.Fatalf("IPv4 identity %+v", id)
	}
	six := id.IPv6
	if six == nil || six.PublicIP != v6 || !six.ForwardConfirmed || six.ConfirmedName != "host6.isp.test" ||
		len(six.Listings) != 1 || six.Listings[0].Listed || !strings.Contains(six.Source, "AAAA @[::1]:") {
		t.Fatalf("IPv6 identity %+v", six)
	}
	if s := identity6Summary(six); !strings.Contains(s, "Over IPv6 this machine is "+v6+"; its reverse name host6.isp.test points back to it") {
		t.Errorf("summary %q", s)
	}

	// Without an echo service reachable over IPv6 there is no IPv6 identity,
	// and nothing unknown about it either.
	opt.Echo = opt.Echo[:1]
	if id := p.Identity(ctx, opt); id.IPv6 != nil || len(id.Unknown) != 0 {
		t.Errorf("IPv4 only: %+v", id)
	}
}
