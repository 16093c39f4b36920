package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// STSAddr is where ServeMTASTS's HTTPS server listens, on port 443.
const STSAddr = "127.0.11.1"

// MTASTSDNS is the ExtraDNS (Options) that publishes an MTA-STS policy for
// domain (alpha, beta or gamma: the lab certificate names their mta-sts
// hosts): the _mta-sts TXT record with id, and mta-sts.DOMAIN → STSAddr.
func MTASTSDNS(domain, id string) []string {
	return []string{
		fmt.Sprintf(`txt-record=_mta-sts.%s,"v=STSv1; id=%s;"`, domain, id),
		fmt.Sprintf("host-record=mta-sts.%s,%s", domain, STSAddr),
	}
}

// ServeMTASTS serves policy as /.well-known/mta-sts.txt over HTTPS on
// STSAddr:443, with the lab CA's certificate for the mta-sts hosts, until
// the lab ends; called again, it replaces the policy (the server reads the
// file per request). It is openssl s_server -WWW (in the Debian packages
// CI installs already): it serves the file as text/plain, as RFC 8461
// §3.2 wants, and needs no code of ours on the server side.
func (l *Lab) ServeMTASTS(t testing.TB, policy string) {
	t.Helper()
	dir := filepath.Join(l.Dir, "sts")
	if err := os.MkdirAll(filepath.Join(dir, ".well-known"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".well-known", "mta-sts.txt"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if l.stsServing {
		return
	}
	l.stsServing = true
	// The lab's teardown kills it with every process in the namespace.
	ctx := context.Background()
	cmd := l.Command(ctx, tool("openssl"), "s_server", "-quiet", "-WWW", "-accept", STSAddr+":443",
		"-cert", filepath.Join(dir, "cert.pem"), "-key", filepath.Join(dir, "key.pem"))
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("lab: openssl s_server: %v", err)
	}
	go cmd.Wait()
	l.WaitListening(t, STSAddr+":443", 5*time.Second)
}

// WaitListening waits until something in the namespace accepts TCP
// connections on addr, and fails the test after timeout.
func (l *Lab) WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := l.Dial(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: nothing listens on %s after %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DeltaDomain is a domain whose MX is the lab Postfix under a name its
// certificate lacks (mx.delta.example → MXAddr, no PTR): with an MTA-STS
// policy (MTASTSDNS) it is one that cannot be met. DeltaDNS publishes it.
const DeltaDomain = "delta.example"

// DeltaDNS is the ExtraDNS for DeltaDomain.
func DeltaDNS() []string {
	return []string{"mx-host=" + DeltaDomain + ",mx." + DeltaDomain + ",10", "address=/mx." + DeltaDomain + "/" + MXAddr}
}
