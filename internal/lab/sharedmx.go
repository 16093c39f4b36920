package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The shared MX: one more Postfix instance ("shared") that plays the mail servers of a
// hosting company, the shapes that a naive interception rule mistakes for an ISP
// (README "Design: interception"):
//
//   - shared hosting: one server on two addresses serves three domains with one certificate,
//     for SharedMXHost only: open.example (its own MX), shop.example (implicit MX on the same
//     address) and hosted.example (an MX name of its own, on the second address);
//   - a lone MX (lonely.example) greeting with its own name but presenting a self-signed
//     certificate for another host (LonelyCertName, not in DNS), as a default install does;
//   - a dual-stack MX (dual.example): mx.dual.example has an A (DualAddr) and an AAAA
//     (DualAddr6, on the namespace's lo) record, and the server listens on both.
//
// StartSharedMX starts it after Start; its names come from SharedMXDNS in Options.ExtraDNS.
const (
	OpenDomain     = "open.example"   // MX 10 SharedMXHost → SharedAddr
	ShopDomain     = "shop.example"   // no MX; A → SharedAddr (implicit MX)
	HostedDomain   = "hosted.example" // MX 10 HostedMXHost → SharedAddr2
	LonelyDomain   = "lonely.example" // MX 10 LonelyMXHost → LonelyAddr
	DualDomain     = "dual.example"   // MX 10 DualMXHost → DualAddr and DualAddr6
	SharedMXHost   = "mx1.open.example"
	HostedMXHost   = "mx.hosted.example"
	LonelyMXHost   = "mx.lonely.example"
	LonelyCertName = "box.hostingco.example" // the self-signed certificate's only name; no DNS record
	DualMXHost     = "mx.dual.example"

	SharedAddr  = "127.0.12.1"
	SharedAddr2 = "127.0.12.2"
	LonelyAddr  = "127.0.12.3"
	DualAddr    = "127.0.12.4"
	DualAddr6   = "fd00::25"
	// SharedNet holds every IPv4 address of the shared MX, for firewall rules.
	SharedNet = "127.0.12.0/24"
)

// SharedMXDNS is the Options.ExtraDNS that publishes the shared MX's domains. host-record
// makes the PTR records too, so SharedMXHost is forward-confirmed at SharedAddr only.
func SharedMXDNS() []string {
	return []string{
		"host-record=" + SharedMXHost + "," + SharedAddr,
		"host-record=" + ShopDomain + "," + SharedAddr,
		"host-record=" + HostedMXHost + "," + SharedAddr2,
		"host-record=" + LonelyMXHost + "," + LonelyAddr,
		"host-record=" + DualMXHost + "," + DualAddr + "," + DualAddr6,
		"mx-host=" + OpenDomain + "," + SharedMXHost + ",10",
		"mx-host=" + HostedDomain + "," + HostedMXHost + ",10",
		"mx-host=" + LonelyDomain + "," + LonelyMXHost + ",10",
		"mx-host=" + DualDomain + "," + DualMXHost + ",10",
	}
}

// StartSharedMX adds the shared MX's addresses to the namespace and starts its Postfix,
// waiting until every listener greets with the name it should. It fails the test on error.
func (l *Lab) StartSharedMX(t testing.TB) {
	t.Helper()
	batch := "addr add " + SharedAddr + "/32 dev lo\n" +
		"addr add " + SharedAddr2 + "/32 dev lo\n" +
		"addr add " + LonelyAddr + "/32 dev lo\n" +
		"addr add " + DualAddr + "/32 dev lo\n" +
		// nodad: the address is usable at once, not after duplicate detection.
		"addr add " + DualAddr6 + "/128 dev lo nodad\n"
	cmd := exec.Command(tool("ip"), "-n", l.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lab: shared MX addresses: %v: %s", err, out)
	}
	p := newPostfix(l, "shared")
	nobody, err := lookupID("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSelfSigned(p.dir, LonelyCertName); err != nil {
		t.Fatalf("lab: self-signed certificate: %v", err)
	}
	main := p.common(SharedMXHost, OpenDomain, strings.Join([]string{SharedAddr, SharedAddr2, LonelyAddr, DualAddr, "[" + DualAddr6 + "]"}, ", "))
	for i := range main {
		if main[i].k == "inet_protocols" {
			main[i].v = "all" // the dual-stack listener
		}
	}
	main = append(main,
		param{"virtual_mailbox_domains", strings.Join([]string{OpenDomain, ShopDomain, HostedDomain, LonelyDomain, DualDomain}, " ")},
		param{"virtual_mailbox_base", filepath.Join(p.dir, "maildir")},
		param{"virtual_mailbox_maps", "static:all/"},
		param{"virtual_uid_maps", "static:" + strconv.Itoa(nobody.uid)},
		param{"virtual_gid_maps", "static:" + strconv.Itoa(nobody.gid)},
		param{"smtpd_relay_restrictions", "reject_unauth_destination"},
	)
	smtpd := func(listen string, opts ...string) string {
		s := listen + " inet  n       -       n       -       -       smtpd\n"
		for _, o := range opts {
			s += "  -o " + o + "\n"
		}
		return s
	}
	chain := func(dir string) string {
		return "smtpd_tls_chain_files=" + filepath.Join(dir, "key.pem") + "," + filepath.Join(dir, "cert.pem")
	}
	master := masterBase +
		smtpd(SharedAddr+":25") + smtpd(SharedAddr2+":25") +
		smtpd(LonelyAddr+":25", "myhostname="+LonelyMXHost,
			"smtpd_tls_chain_files="+filepath.Join(p.dir, "selfsigned-key.pem")+","+filepath.Join(p.dir, "selfsigned-cert.pem")) +
		smtpd(DualAddr+":25", "myhostname="+DualMXHost, chain(filepath.Join(l.Dir, "dual"))) +
		smtpd("["+DualAddr6+"]:25", "myhostname="+DualMXHost, chain(filepath.Join(l.Dir, "dual")))
	if err := p.write(main, master); err != nil {
		t.Fatalf("lab: shared MX config: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(p.dir, "maildir"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := p.start(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	for _, c := range []struct{ addr, host string }{
		{SharedAddr, SharedMXHost}, {SharedAddr2, SharedMXHost}, {LonelyAddr, LonelyMXHost},
		{DualAddr, DualMXHost}, {"[" + DualAddr6 + "]", DualMXHost},
	} {
		l.waitGreeting(t, c.addr+":25", c.host, p)
	}
}

// waitGreeting waits until addr greets as host, failing the test with p's log after
// startTimeout.
func (l *Lab) waitGreeting(t testing.TB, addr, host string, p *postfix) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := l.greeting(ctx, addr, host, nil)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("lab: %s does not greet as %s within %s: %v\n%s", addr, host, startTimeout, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeSelfSigned writes selfsigned-{cert,key}.pem into dir: a certificate for name signed
// by its own key, as Debian's ssl-cert "snakeoil" is for the machine's hostname.
func writeSelfSigned(dir, name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "selfsigned-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "selfsigned-cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
