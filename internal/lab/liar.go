package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// More DNS servers in the namespace, besides the lab's own: lying resolvers that answer
// every name the same way, as captive portals, filtering DNS and some sandboxes do (point
// the tool at one with --resolver), and an echo service over IPv6.
const (
	// LiarAddr answers NXDOMAIN for every name (dnsmasq "address=/#/").
	LiarAddr = "127.0.0.11"
	// LiarPrivateAddr answers every A question with 127.0.0.1 ("address=/#/127.0.0.1"),
	// and every other question with no records.
	LiarPrivateAddr = "127.0.0.12"
	// Echo6Addr is where StartEcho6 listens.
	Echo6Addr = "fd00::53"
)

// StartLyingDNS starts a dnsmasq on addr (LiarAddr or LiarPrivateAddr, or another loopback
// address) that answers every name with answer: "" for NXDOMAIN, or an address. It fails
// the test on error; the lab's teardown stops it with every process in the namespace.
func (l *Lab) StartLyingDNS(t testing.TB, addr, answer string) {
	t.Helper()
	lines := []string{"address=/#/" + answer}
	if answer != "" {
		// Without it dnsmasq REFUSES the other types (MX, AAAA); a portal's DNS answers
		// them empty (NODATA), so MX falls back to the address (RFC 5321 §5.1).
		lines = append(lines, "local=/#/")
	}
	in := l.startDNSAt(t, addr, lines...)
	want := dns.RcodeNameError
	if answer != "" {
		want = dns.RcodeSuccess
	}
	if in.Rcode != want {
		t.Fatalf("lab: lying dnsmasq on %s: rcode %s, want %s", addr, dns.RcodeToString[in.Rcode], dns.RcodeToString[want])
	}
}

// StartEcho6 starts a DNS server on Echo6Addr, over IPv6, that answers name's AAAA with
// addr: the echo service a probe asks over IPv6 for its public IPv6 address (--ip-echo
// name@[fd00::53]). The lab cannot echo the real source address, so the answer is fixed.
func (l *Lab) StartEcho6(t testing.TB, name, addr string) {
	t.Helper()
	l.startDNSAt(t, Echo6Addr, "local=/#/", "address=/"+name+"/"+addr)
}

// startDNSAt adds addr to the namespace's lo and runs a dnsmasq there with lines, and
// returns its answer to one question (gmail.com A) once it answers.
func (l *Lab) startDNSAt(t testing.TB, addr string, lines ...string) *dns.Msg {
	t.Helper()
	ip := netip.MustParseAddr(addr)
	args := []string{"-n", l.Name, "addr", "add", addr + "/32", "dev", "lo"}
	if ip.Is6() {
		args = []string{"-n", l.Name, "addr", "add", addr + "/128", "dev", "lo", "nodad"}
	}
	if out, err := exec.Command(tool("ip"), args...).CombinedOutput(); err != nil {
		t.Fatalf("lab: ip addr add %s: %v: %s", addr, err, out)
	}
	dir := filepath.Join(l.Dir, "dns-"+strings.ReplaceAll(addr, ":", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := append([]string{
		"no-resolv", "no-hosts", "no-poll", "bind-interfaces",
		"listen-address=" + addr, "port=53",
		"log-queries", "log-facility=" + filepath.Join(dir, "dnsmasq.log"),
		"user=nobody", "group=nogroup",
	}, lines...)
	path := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := l.startDaemon(filepath.Join(dir, "start.out"), tool("dnsmasq"),
		"--conf-file="+path, "--pid-file="+filepath.Join(dir, "dnsmasq.pid")); err != nil {
		t.Fatalf("lab: dnsmasq on %s: %v: %s", addr, err, out)
	}
	// dnsmasq binds before it forks (dns.go); one question shows it answers.
	m := new(dns.Msg)
	m.SetQuestion("gmail.com.", dns.TypeA)
	var in *dns.Msg
	err := l.Do(func() error {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		var err error
		in, _, err = c.ExchangeContext(context.Background(), m, net.JoinHostPort(addr, "53"))
		return err
	})
	if err != nil {
		t.Fatalf("lab: dnsmasq on %s: %v", addr, fmt.Errorf("no answer: %w", err))
	}
	return in
}
