package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsRecords is the lab zone in dnsmasq syntax. host-record also makes the PTR record
// (for the first name given), so every server address reverse-resolves to its host name.
var dnsRecords = []string{
	"host-record=" + MXHost + "," + MXAddr,
	"host-record=" + BetaMX2Host + "," + BetaMX2Addr,
	"host-record=" + GammaDomain + "," + GammaAddr,
	"host-record=" + OneMXHost + "," + OneMXAddr,
	"host-record=" + TwoMXHost + "," + TwoMXAddr,
	"host-record=" + BetaMX1Host + "," + BetaMX1Addr,
	"host-record=" + FilteredMXHost + "," + FilteredMXAddr,
	"host-record=" + RelayHost + "," + RelayDomain + "," + RelayAddr,
	"host-record=" + RefusedMXHost + "," + RefusedMXAddr,
	"host-record=" + UnreachMXHost + "," + UnreachMXAddr,
	"host-record=" + ISPHost + "," + ISPAddr,

	"mx-host=" + AlphaDomain + "," + MXHost + ",10",
	"mx-host=" + BetaDomain + "," + BetaMX1Host + ",10",
	"mx-host=" + BetaDomain + "," + BetaMX2Host + ",20",
	"mx-host=" + NullMXDomain + ",.,0", // RFC 7505 null MX
	"mx-host=" + FilteredDomain + "," + FilteredMXHost + ",10",
	"mx-host=" + RefusedDomain + "," + RefusedMXHost + ",10",
	"mx-host=" + UnreachDomain + "," + UnreachMXHost + ",10",
	"mx-host=" + OneDomain + "," + OneMXHost + ",10",
	"mx-host=" + TwoDomain + "," + TwoMXHost + ",10",

	fmt.Sprintf("srv-host=_submissions._tcp.%s,%s,%d,0,1", RelayDomain, RelayHost, SubmissionsPort),
	fmt.Sprintf("srv-host=_submission._tcp.%s,%s,%d,0,1", RelayDomain, RelayHost, SubmissionPort),
}

func (l *Lab) dnsmasqConf() string {
	dir := filepath.Join(l.Dir, "dns")
	lines := []string{
		// Authoritative-only: no upstream, no /etc/hosts, nothing but 127.0.0.10:53.
		"no-resolv",
		"no-hosts",
		"no-poll",
		"bind-interfaces",
		"listen-address=" + DNSAddr,
		"port=53",
		// Unknown names under these zones are NXDOMAIN instead of REFUSED (no upstream).
		"local=/example/",
		"local=/in-addr.arpa/",
		"log-queries",
		"log-facility=" + filepath.Join(dir, "dnsmasq.log"),
		"user=nobody",
		"group=nogroup",
	}
	lines = append(lines, dnsRecords...)
	lines = append(lines, l.opts.ExtraDNS...)
	return strings.Join(lines, "\n") + "\n"
}

// startDNS runs dnsmasq in the namespace. dnsmasq binds its sockets before it forks and
// reports setup errors in the exit status of the first process, so a zero exit means it
// listens.
func (l *Lab) startDNS() error {
	dir := filepath.Join(l.Dir, "dns")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(conf, []byte(l.dnsmasqConf()), 0o644); err != nil {
		return err
	}
	out, err := l.startDaemon(filepath.Join(dir, "start.out"), tool("dnsmasq"),
		"--conf-file="+conf, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"))
	if err != nil {
		return fmt.Errorf("dnsmasq: %v: %s\n%s", err, out, l.logTail("dns", 20))
	}
	return nil
}

// Query asks the lab DNS one question from inside the namespace and returns the answer.
func (l *Lab) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	var in *dns.Msg
	err := l.Do(func() error {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		var err error
		in, _, err = c.ExchangeContext(ctx, m, net.JoinHostPort(DNSAddr, "53"))
		return err
	})
	return in, err
}

// dnsReady checks that dnsmasq answers and serves the lab zone.
func (l *Lab) dnsReady(ctx context.Context) error {
	in, err := l.Query(ctx, MXHost, dns.TypeA)
	if err != nil {
		return err
	}
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok && a.A.String() == MXAddr {
			return nil
		}
	}
	return fmt.Errorf("dnsmasq answered %s A with %v", MXHost, in.Answer)
}
