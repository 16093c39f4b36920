package probe

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/dnstest"
)

// The fake DNS server plays the echo service, the reverse zone, the
// forward zone and the blocklists at once; every name is under .test, the
// public address is from TEST-NET-1 and is never connected to.
const myIP = "192.0.2.10"

var (
	echoA   = "myip.test. 60 IN A " + myIP
	ptrHost = "10.2.0.192.in-addr.arpa. 60 IN PTR host.isp.test."
	fwdHost = "host.isp.test. 60 IN A " + myIP
)

func identityOf(t *testing.T, opt IdentityOptions, lines ...string) *Identity {
	t.Helper()
	res := fakeDNS(t, nil, lines...)
	for i := range opt.Echo {
		if opt.Echo[i].Server == "" {
			opt.Echo[i].Server = res.Servers[0]
		}
	}
	p := &Prober{Resolver: res, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Identity(ctx, opt)
}

func echoOpt(zones ...string) IdentityOptions {
	return IdentityOptions{Echo: []EchoService{{Name: "myip.test", Type: dns.TypeA}}, DNSBL: append([]string{}, zones...)}
}

func TestIdentityReverseDNS(t *testing.T) {
	t.Run("forward-confirmed", func(t *testing.T) {
		id := identityOf(t, echoOpt("zen.test"), echoA, ptrHost, fwdHost, "other.test. 60 IN A 127.0.0.1")
		if id.PublicIP != myIP || !strings.HasPrefix(id.Source, "myip.test A @127.0.0.1:") {
			t.Fatalf("%+v", id)
		}
		if len(id.PTR) != 1 || id.PTR[0] != "host.isp.test" || !id.ForwardConfirmed || id.ConfirmedName != "host.isp.test" {
			t.Errorf("%+v", id)
		}
		if len(id.Listings) != 1 || id.Listings[0].Listed || id.Listings[0].Error != "" || len(id.Unknown) != 0 {
			t.Errorf("NXDOMAIN at the blocklist is not listed: %+v unknown %q", id.Listings, id.Unknown)
		}
	})
	t.Run("not confirmed", func(t *testing.T) {
		id := identityOf(t, echoOpt(), echoA, "10.2.0.192.in-addr.arpa. 60 IN PTR dyn.isp.test.", "dyn.isp.test. 60 IN A 192.0.2.99")
		if len(id.PTR) != 1 || id.ForwardConfirmed || id.ConfirmedName != "" || len(id.Unknown) != 0 || len(id.Listings) != 0 {
			t.Errorf("%+v", id)
		}
	})
	t.Run("no PTR is a fact, not an unknown", func(t *testing.T) {
		id := identityOf(t, echoOpt(), echoA)
		if len(id.PTR) != 0 || id.ForwardConfirmed || len(id.Unknown) != 0 {
			t.Errorf("%+v", id)
		}
	})
}

func TestIdentityDNSBL(t *testing.T) {
	for _, c := range []struct {
		name    string
		zone    string
		records []string
		check   func(l Listing) bool
		unknown string
	}{
		{"PBL", "zen.test", []string{"10.2.0.192.zen.test. 60 IN A 127.0.0.10"}, func(l Listing) bool {
			return l.Listed && l.PolicyBlock && !l.QueryRefused && l.Codes[0] == "127.0.0.10" &&
				strings.Contains(l.Meaning[0], "PBL (ISP maintained): end-user range, must not send direct")
		}, ""},
		{"SBL and XBL", "zen.test", []string{"10.2.0.192.zen.test. 60 IN A 127.0.0.2", "10.2.0.192.zen.test. 60 IN A 127.0.0.4"}, func(l Listing) bool {
			return l.Listed && !l.PolicyBlock && len(l.Meaning) == 2 && strings.HasPrefix(l.Meaning[0], "SBL:") && strings.HasPrefix(l.Meaning[1], "XBL:")
		}, ""},
		{"public resolver refused", "zen.test", []string{"10.2.0.192.zen.test. 60 IN A 127.255.255.254"}, func(l Listing) bool {
			return !l.Listed && l.QueryRefused && strings.Contains(l.Meaning[0], "query refused: use your own resolver")
		}, "blocklist zen.test: query refused: use your own resolver"},
		{"over quota", "zen.test", []string{"10.2.0.192.zen.test. 60 IN A 127.255.255.255"}, func(l Listing) bool {
			return !l.Listed && l.QueryRefused && strings.Contains(l.Meaning[0], "excessive number of queries")
		}, "excessive number of queries"},
		{"other list with TXT", "bl.test", []string{"10.2.0.192.bl.test. 60 IN A 127.0.0.2", `10.2.0.192.bl.test. 60 IN TXT "Listed: see https://bl.test/q?ip=192.0.2.10"`}, func(l Listing) bool {
			return l.Listed && !l.PolicyBlock && l.Meaning[0] == "Listed: see https://bl.test/q?ip=192.0.2.10"
		}, ""},
		{"other list, 127.0.0.10 is not PBL there", "bl.test", []string{"10.2.0.192.bl.test. 60 IN A 127.0.0.10"}, func(l Listing) bool {
			return l.Listed && !l.PolicyBlock && l.Meaning[0] == "listed (code 127.0.0.10)"
		}, ""},
		{"NXDOMAIN rewritten", "zen.test", []string{"10.2.0.192.zen.test. 60 IN A 198.51.100.1"}, func(l Listing) bool {
			return !l.Listed && strings.Contains(l.Error, "not a blocklist code")
		}, "rewrite NXDOMAIN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := identityOf(t, echoOpt(c.zone), append([]string{echoA, ptrHost, fwdHost}, c.records...)...)
			if len(id.Listings) != 1 || id.Listings[0].Zone != c.zone || !c.check(id.Listings[0]) {
				t.Fatalf("%+v", id.Listings)
			}
			u := strings.Join(id.Unknown, "\n")
			if (c.unknown == "") != (u == "") || !strings.Contains(u, c.unknown) {
				t.Errorf("unknown %q, want %q", u, c.unknown)
			}
		})
	}
}

func TestIdentityEcho(t *testing.T) {
	t.Run("Google-style TXT with an ECS record", func(t *testing.T) {
		opt := IdentityOptions{Echo: []EchoService{{Name: "o-o.myaddr.test", Type: dns.TypeTXT}}, DNSBL: []string{}}
		id := identityOf(t, opt, `o-o.myaddr.test. 60 IN TXT "edns0-client-subnet 198.51.100.0/24"`, `o-o.myaddr.test. 60 IN TXT "`+myIP+`"`)
		if id.PublicIP != myIP {
			t.Fatalf("%+v", id)
		}
	})
	t.Run("falls back to the second service, named by host", func(t *testing.T) {
		dead := dnstest.ClosedPort(t)
		res := fakeDNS(t, nil, echoA, ptrHost, fwdHost, "ns.echo.test. 60 IN A 127.0.0.1")
		_, port, _ := net.SplitHostPort(res.Servers[0])
		p := &Prober{Resolver: res, Timeout: 2 * time.Second}
		opt := IdentityOptions{Echo: []EchoService{
			{Name: "myip.test", Type: dns.TypeA, Server: dead},
			{Name: "myip.test", Type: dns.TypeA, Server: "ns.echo.test:" + port},
		}, DNSBL: []string{}}
		id := p.Identity(context.Background(), opt)
		if id.PublicIP != myIP || id.Source != "myip.test A @ns.echo.test:"+port || !id.ForwardConfirmed {
			t.Fatalf("%+v", id)
		}
	})
	t.Run("offline: unknown, quickly", func(t *testing.T) {
		res := fakeDNS(t, nil)
		res.Servers = []string{dnstest.ClosedPort(t)}
		p := &Prober{Resolver: res, Timeout: 2 * time.Second}
		start := time.Now()
		id := p.Identity(context.Background(), IdentityOptions{Echo: []EchoService{
			{Name: "myip.test", Type: dns.TypeA, Server: dnstest.ClosedPort(t)},
			{Name: "myip.test", Type: dns.TypeA, Server: "ns.echo.test"}, // needs the (dead) resolver
		}})
		// Refused ports answer at once: waiting a resolver timeout would
		// be treating them as silent.
		if took := time.Since(start); took >= res.Timeout {
			t.Errorf("took %s, a whole %s DNS timeout", took, res.Timeout)
		}
		if id.PublicIP != "" || len(id.Unknown) != 2 || !strings.HasPrefix(id.Unknown[0], "public address unknown: myip.test A @127.0.0.1:") {
			t.Fatalf("%+v", id)
		}
	})
	t.Run("silent servers: bounded by the context", func(t *testing.T) {
		silent, _ := dnstest.Silent(t)
		res := fakeDNS(t, nil)
		p := &Prober{Resolver: res, Timeout: 2 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		id := p.Identity(ctx, IdentityOptions{Echo: []EchoService{{Name: "myip.test", Type: dns.TypeA, Server: silent}}})
		// The context ends the wait before the first DNS timeout would.
		if took := time.Since(start); took >= res.Timeout || id.PublicIP != "" || len(id.Unknown) == 0 {
			t.Fatalf("took %s (the DNS timeout is %s): %+v", took, res.Timeout, id)
		}
	})
}

func TestRunFillsIdentity(t *testing.T) {
	res := fakeDNS(t, nil, echoA, ptrHost, fwdHost)
	p := &Prober{Resolver: res, Timeout: time.Second}
	opt := echoOpt("zen.test")
	opt.Echo[0].Server = res.Servers[0]
	rep := run(t, p, Request{Domains: []string{"nosuch.test"}, Identity: true, IdentityOptions: opt})
	if rep.Identity == nil || rep.Identity.PublicIP != myIP || !rep.Identity.ForwardConfirmed || len(rep.Identity.Listings) != 1 {
		t.Fatalf("%+v", rep.Identity)
	}
	if rep := run(t, p, Request{Domains: []string{"nosuch.test"}}); rep.Identity != nil {
		t.Errorf("identity filled without being asked for")
	}
}

func TestDNSBLName(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.10":       "10.2.0.192.zen.test",
		"::ffff:192.0.2.1": "1.2.0.192.zen.test",
		"2001:db8::1":      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test",
	} {
		if got := dnsblName(netip.MustParseAddr(ip), "zen.test"); got != want {
			t.Errorf("%s: %s, want %s", ip, got, want)
		}
	}
	for zone, want := range map[string]bool{"zen.spamhaus.org": true, "key.zen.dq.spamhaus.net": true, "zen.test": true, "bl.spamcop.net": false, "citizen.test": false} {
		if isSpamhaus(zone) != want {
			t.Errorf("isSpamhaus(%s) != %v", zone, want)
		}
	}
}
