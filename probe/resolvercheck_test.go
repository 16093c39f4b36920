package probe

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/dnstest"
	"github.com/mailroute/mailroute/internal/resolve"
)

// liar is a resolver that answers every question with NXDOMAIN, or, with
// addr set, every A question with addr (and nothing else), as captive
// portals and filtering DNS do.
func liar(t *testing.T, addr string) *resolve.Resolver {
	t.Helper()
	srv := dnstest.StartHandler(t, func(q *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(q)
		switch {
		case addr == "":
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + addr)
			m.Answer = append(m.Answer, rr)
		}
		return m
	})
	res, err := resolve.New(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	res.Timeout = 500 * time.Millisecond
	return res
}

func TestLyingResolver(t *testing.T) {
	t.Run("built-in targets NXDOMAIN", func(t *testing.T) {
		res := liar(t, "")
		rep := run(t, &Prober{Resolver: res, Timeout: time.Second}, Request{})
		d := rep.ResolverLies
		if d == nil || d.Seen != "nxdomain" || len(d.Names) != len(Builtin) || d.Resolver[0] != res.Servers[0] {
			t.Fatalf("resolver_lies %+v", d)
		}
		for _, dom := range rep.Domains {
			if dom.DNSError == nil || dom.DNSError.Kind != KindLyingResolver || dom.DNSError.Seen != "nxdomain" ||
				!strings.Contains(dom.DNSError.Message, "it certainly does: that server is lying or filtering; ask another with --resolver IP") {
				t.Errorf("%s: %+v", dom.Name, dom.DNSError)
			}
		}
		sum := strings.Join(rep.Summary, "\n")
		if !strings.Contains(sum, "The DNS server "+res.Servers[0]+" is lying or filtering: it answers that gmail.com, outlook.com, yahoo.com do not exist (NXDOMAIN)") ||
			!strings.Contains(sum, "--resolver IP") {
			t.Errorf("summary:\n%s", sum)
		}
		if strings.Contains(strings.ToLower(sum), "spelling") || rep.Offline {
			t.Errorf("offline %v, summary:\n%s", rep.Offline, sum)
		}
	})
	t.Run("built-in targets at a loopback address", func(t *testing.T) {
		rep := run(t, &Prober{Resolver: liar(t, "127.0.0.1"), Timeout: time.Second}, Request{})
		if d := rep.ResolverLies; d == nil || d.Seen != "private" || len(d.Addrs) != 1 || d.Addrs[0] != "127.0.0.1" {
			t.Fatalf("resolver_lies %+v", d)
		}
		if n := len(rep.Endpoints()); n != 0 {
			t.Errorf("%d endpoints probed at the false addresses", n)
		}
		if sum := strings.Join(rep.Summary, "\n"); !strings.Contains(sum, "it points gmail.com, outlook.com, yahoo.com to private or local addresses (127.0.0.1)") {
			t.Errorf("summary:\n%s", sum)
		}
	})
	t.Run("a --to domain NXDOMAIN, and gmail.com too", func(t *testing.T) {
		rep := run(t, &Prober{Resolver: liar(t, ""), Timeout: time.Second}, Request{Domains: []string{"example.test"}})
		if d := rep.ResolverLies; d == nil || len(d.Names) != 1 || d.Names[0] != "gmail.com" {
			t.Fatalf("resolver_lies %+v", d)
		}
		sum := strings.Join(rep.Summary, "\n")
		if !strings.Contains(sum, "example.test: the same DNS server says it does not exist, which proves nothing") || strings.Contains(sum, "spelling") {
			t.Errorf("summary:\n%s", sum)
		}
	})
	t.Run("a misspelt domain, honest resolver", func(t *testing.T) {
		rep := run(t, &Prober{Resolver: fakeDNS(t, nil), Timeout: time.Second}, Request{Domains: []string{"gmial.test"}})
		if rep.ResolverLies != nil || !strings.Contains(strings.Join(rep.Summary, "\n"), "gmial.test does not exist (NXDOMAIN): check the spelling") {
			t.Errorf("resolver_lies %+v summary %q", rep.ResolverLies, rep.Summary)
		}
	})
}
