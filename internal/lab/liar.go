package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Lying resolvers: more dnsmasq instances in the namespace that answer every name the same
// way, as captive portals, filtering DNS and some sandboxes do. Point the tool at one with
// --resolver.
const (
	// LiarAddr answers NXDOMAIN for every name (dnsmasq "address=/#/").
	LiarAddr = "127.0.0.11"
	// LiarPrivateAddr answers every A question with 127.0.0.1 ("address=/#/127.0.0.1"),
	// and every other question with no records.
	LiarPrivateAddr = "127.0.0.12"
)

// StartLyingDNS starts a dnsmasq on addr (LiarAddr or LiarPrivateAddr, or another loopback
// address) that answers every name with answer: "" for NXDOMAIN, or an address. It fails
// the test on error; the lab's teardown stops it with every process in the namespace.
func (l *Lab) StartLyingDNS(t testing.TB, addr, answer string) {
	t.Helper()
	if out, err := exec.Command(tool("ip"), "-n", l.Name, "addr", "add", addr+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("lab: ip addr add %s: %v: %s", addr, err, out)
	}
	dir := filepath.Join(l.Dir, "liar-"+addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"no-resolv", "no-hosts", "no-poll", "bind-interfaces",
		"listen-address=" + addr, "port=53",
		"address=/#/" + answer,
		"log-queries", "log-facility=" + filepath.Join(dir, "dnsmasq.log"),
		"user=nobody", "group=nogroup",
	}
	if answer != "" {
		// Without it dnsmasq REFUSES the other types (MX, AAAA); a portal's DNS answers
		// them empty (NODATA), so MX falls back to the address (RFC 5321 §5.1).
		lines = append(lines, "local=/#/")
	}
	conf := strings.Join(lines, "\n") + "\n"
	path := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := l.startDaemon(filepath.Join(dir, "start.out"), tool("dnsmasq"),
		"--conf-file="+path, "--pid-file="+filepath.Join(dir, "dnsmasq.pid")); err != nil {
		t.Fatalf("lab: lying dnsmasq on %s: %v: %s", addr, err, out)
	}
	// dnsmasq binds before it forks (dns.go), but check it answers as configured.
	m := new(dns.Msg)
	m.SetQuestion("gmail.com.", dns.TypeA)
	var in *dns.Msg
	err := l.Do(func() error {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		var err error
		in, _, err = c.ExchangeContext(context.Background(), m, net.JoinHostPort(addr, "53"))
		return err
	})
	want := dns.RcodeNameError
	if answer != "" {
		want = dns.RcodeSuccess
	}
	if err == nil && in.Rcode != want {
		err = fmt.Errorf("rcode %s, want %s", dns.RcodeToString[in.Rcode], dns.RcodeToString[want])
	}
	if err != nil {
		t.Fatalf("lab: lying dnsmasq on %s: %v", addr, err)
	}
}
