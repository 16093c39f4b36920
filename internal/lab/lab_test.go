package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestLab starts one lab and checks each peer from inside the namespace with real clients.
func TestLab(t *testing.T) {
	began := time.Now()
	l := Start(t, Options{
		RelayConnLimit:    2,
		RelayMsgRateLimit: 5,
		ExtraDNS:          []string{"txt-record=" + AlphaDomain + ",v=spf1 -all"},
	})
	t.Logf("Start took %v", time.Since(began))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("dns", func(t *testing.T) { testDNS(ctx, t, l) })
	t.Run("resolver", func(t *testing.T) {
		// The namespace's system resolver (glibc via /etc/netns/<ns>/resolv.conf) uses the lab DNS.
		out, err := l.Command(ctx, "getent", "hosts", RelayHost).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), RelayAddr+" ") {
			t.Fatalf("getent hosts %s in namespace: %v: %q", RelayHost, err, out)
		}
	})
	t.Run("mx", func(t *testing.T) {
		for _, tc := range []struct{ addr, name string }{
			{MXAddr, MXHost}, {BetaMX2Addr, BetaMX2Host}, {GammaAddr, GammaDomain},
		} {
			c := dialSMTP(ctx, t, l, tc.addr+":25", MXHost)
			if ok, _ := c.Extension("STARTTLS"); !ok {
				t.Fatalf("%s: no STARTTLS in EHLO", tc.addr)
			}
			if err := c.StartTLS(&tls.Config{RootCAs: caPool(t, l), ServerName: tc.name}); err != nil {
				t.Fatalf("%s: STARTTLS as %s: %v", tc.addr, tc.name, err)
			}
			// Relaying through the MX is refused even from the namespace's loopback.
			if err := c.Mail("x@client.example"); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("someone@elsewhere.example"); err == nil || !strings.Contains(err.Error(), "Relay access denied") {
				t.Fatalf("%s: RCPT to a foreign domain: %v, want Relay access denied", tc.addr, err)
			}
		}
	})
	t.Run("relay-requires-starttls", func(t *testing.T) {
		c := dialSMTP(ctx, t, l, fmt.Sprintf("%s:%d", RelayAddr, SubmissionPort), RelayHost)
		if ok, _ := c.Extension("AUTH"); ok {
			t.Fatal("AUTH offered before STARTTLS")
		}
		if err := c.Mail(RelayUser); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
			t.Fatalf("MAIL before STARTTLS: %v, want 530 ... STARTTLS", err)
		}
	})
	t.Run("relay-wrong-password", func(t *testing.T) {
		c := dialSMTP(ctx, t, l, fmt.Sprintf("%s:%d", RelayAddr, SubmissionPort), RelayHost)
		if err := c.StartTLS(&tls.Config{RootCAs: caPool(t, l), ServerName: RelayHost}); err != nil {
			t.Fatal(err)
		}
		err := c.Auth(smtp.PlainAuth("", RelayUser, "wrong", RelayHost))
		if te := (*textproto.Error)(nil); !errors.As(err, &te) || te.Code != 535 {
			t.Fatalf("AUTH with a wrong password: %v, want 535", err)
		}
	})
	t.Run("relay-587-swaks", func(t *testing.T) {
		// A rule for uid 0 on the MX must not stop the relay, which delivers as user postfix.
		if err := l.Filter(MXAddr+"/32", 25); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.ResetFirewall() }()
		swaks(ctx, t, l, "--server", fmt.Sprintf("%s:%d", RelayHost, SubmissionPort), "-tls",
			"--to", "bob@"+AlphaDomain, "--h-Subject", "lab 587")
		l.WaitDelivered(t, "bob@"+AlphaDomain, 1, 10*time.Second)
		msgs := l.Messages("Bob@Alpha.example")
		if len(msgs) != 1 || !strings.Contains(string(msgs[0]), "Subject: lab 587") {
			t.Fatalf("messages for bob: %d, first %.300q", len(msgs), msgs)
		}
	})
	t.Run("relay-465-swaks", func(t *testing.T) {
		// beta.example's MX 10 refuses, so the relay falls back to MX 20, the Postfix MX.
		swaks(ctx, t, l, "--server", fmt.Sprintf("%s:%d", RelayAddr, SubmissionsPort), "--tlsc",
			"--to", "carol@"+BetaDomain, "--h-Subject", "lab 465")
		l.WaitDelivered(t, "carol@"+BetaDomain, 1, 10*time.Second)
	})
	t.Run("relay-port-25-closed", func(t *testing.T) {
		for _, port := range []string{"25", "2525"} {
			_, err := l.Dial(ctx, "tcp", RelayAddr+":"+port)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("%s:%s: %v, want connection refused", RelayAddr, port, err)
			}
		}
	})
	t.Run("firewall", func(t *testing.T) {
		defer func() { _ = l.ResetFirewall() }()
		for _, err := range []error{l.Filter(FilterNet, 25), l.Refuse(RefuseNet, 25), l.Unreachable(UnreachNet, 25)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := l.Dial(short, "tcp", FilteredMXAddr+":25"); !isTimeout(err) {
			t.Errorf("filtered: %v, want a timeout", err)
		}
		if _, err := l.Dial(ctx, "tcp", RefusedMXAddr+":25"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("refused: %v, want connection refused", err)
		}
		if _, err := l.Dial(ctx, "tcp", UnreachMXAddr+":25"); !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Errorf("unreachable: %v, want no route to host", err)
		}
	})
	t.Run("intercept", func(t *testing.T) {
		defer func() { _ = l.ResetFirewall() }()
		if err := l.Intercept(InterceptNet, 25); err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{OneMXAddr, TwoMXAddr} {
			c := dialSMTP(ctx, t, l, addr+":25", ISPHost)
			// The certificate names the ISP, not mx.one.example: the strongest evidence.
			if err := c.StartTLS(&tls.Config{RootCAs: caPool(t, l), ServerName: OneMXHost}); err == nil {
				t.Fatalf("%s: TLS verified as %s through the interceptor", addr, OneMXHost)
			}
		}
		c := dialSMTP(ctx, t, l, OneMXAddr+":25", ISPHost)
		if err := c.StartTLS(&tls.Config{RootCAs: caPool(t, l), ServerName: ISPHost}); err != nil {
			t.Fatalf("STARTTLS as %s: %v", ISPHost, err)
		}
	})
	t.Run("relay-connection-limit", func(t *testing.T) {
		addr := fmt.Sprintf("%s:%d", RelayAddr, SubmissionPort)
		var lines []string
		for i := range 3 {
			c, err := l.Dial(ctx, "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			// Say QUIT and wait for the server to close: smtpd releases its anvil slot
			// before it closes, so the next subtest finds the limit free again.
			defer func() {
				_, _ = c.Write([]byte("QUIT\r\n"))
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatalf("session %d: %v", i+1, err)
			}
			lines = append(lines, strings.TrimSpace(line))
		}
		if !strings.HasPrefix(lines[0], "220 ") || !strings.HasPrefix(lines[1], "220 ") {
			t.Fatalf("first two sessions: %q", lines[:2])
		}
		if !strings.HasPrefix(lines[2], "421 4.7.0") || !strings.Contains(lines[2], "too many connections") {
			t.Fatalf("third session: %q, want 421 4.7.0 ... too many connections", lines[2])
		}
	})
	t.Run("relay-message-rate", func(t *testing.T) {
		// 5 MAIL FROM per minute per client and port; the 587 subtests above used one.
		c := dialSMTP(ctx, t, l, fmt.Sprintf("%s:%d", RelayAddr, SubmissionPort), RelayHost)
		if err := c.StartTLS(&tls.Config{RootCAs: caPool(t, l), ServerName: RelayHost}); err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(smtp.PlainAuth("", RelayUser, RelayPassword, RelayHost)); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 6; i++ {
			if err := c.Mail(RelayUser); err != nil {
				var te *textproto.Error
				if !errors.As(err, &te) || te.Code != 450 || !strings.HasPrefix(te.Msg, "4.7.1 ") || !strings.Contains(te.Msg, "too much mail") {
					t.Fatalf("MAIL %d: %v, want 450 4.7.1 ... too much mail", i, err)
				}
				return
			}
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
		}
		t.Fatal("6 MAIL FROM commands accepted with RelayMsgRateLimit 5")
	})
	t.Run("mx-throughput", func(t *testing.T) {
		// smtp-source ships with postfix: 200 messages over 10 reused sessions.
		const n = 200
		began := time.Now()
		out, err := l.Command(ctx, "smtp-source", "-s", "10", "-m", fmt.Sprint(n), "-d", "-l", "1000",
			"-f", "load@client.example", "-t", "dave@"+GammaDomain, GammaAddr+":25").CombinedOutput()
		if err != nil {
			t.Fatalf("smtp-source: %v: %s", err, out)
		}
		l.WaitDelivered(t, "dave@"+GammaDomain, n, 30*time.Second)
		t.Logf("%d messages accepted and delivered in %v", n, time.Since(began).Round(time.Millisecond))
		if got := l.Delivered()["dave@"+GammaDomain]; got != n {
			t.Fatalf("delivered %d, want %d", got, n)
		}
	})
	t.Run("logs", func(t *testing.T) {
		for _, in := range []string{"mx", "relay", "isp", "dovecot", "dns"} {
			if l.Log(in) == "" {
				t.Errorf("empty %s log", in)
			}
		}
		if !strings.Contains(l.Log("dns"), "query[MX] "+BetaDomain) {
			t.Errorf("dns log lacks the relay's MX query for %s", BetaDomain)
		}
	})
}

func testDNS(ctx context.Context, t *testing.T, l *Lab) {
	q := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		in, err := l.Query(ctx, name, qtype)
		if err != nil {
			t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
		}
		return in
	}
	answers := func(in *dns.Msg) string {
		var s []string
		for _, rr := range in.Answer {
			f := strings.Fields(rr.String())
			s = append(s, strings.Join(f[3:], " "))
		}
		sort.Strings(s) // dnsmasq rotates the order of multiple records
		return strings.Join(s, "; ")
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  string
	}{
		{MXHost, dns.TypeA, dns.RcodeSuccess, "A " + MXAddr},
		{AlphaDomain, dns.TypeMX, dns.RcodeSuccess, "MX 10 " + MXHost + "."},
		{BetaDomain, dns.TypeMX, dns.RcodeSuccess, "MX 10 " + BetaMX1Host + ".; MX 20 " + BetaMX2Host + "."},
		{GammaDomain, dns.TypeMX, dns.RcodeSuccess, ""},
		{GammaDomain, dns.TypeA, dns.RcodeSuccess, "A " + GammaAddr},
		{NullMXDomain, dns.TypeMX, dns.RcodeSuccess, "MX 0 ."},
		{NoSuchDomain, dns.TypeMX, dns.RcodeNameError, ""},
		{"_submissions._tcp." + RelayDomain, dns.TypeSRV, dns.RcodeSuccess, "SRV 0 1 465 " + RelayHost + "."},
		{"_submission._tcp." + RelayDomain, dns.TypeSRV, dns.RcodeSuccess, "SRV 0 1 587 " + RelayHost + "."},
		{RelayDomain, dns.TypeA, dns.RcodeSuccess, "A " + RelayAddr},
		{"1.5.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "PTR " + RelayHost + "."},
		{"9.9.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "PTR " + ISPHost + "."},
		{"7.7.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, ""},
		{AlphaDomain, dns.TypeTXT, dns.RcodeSuccess, `TXT "v=spf1 -all"`},
	} {
		in := q(tc.name, tc.qtype)
		if in.Rcode != tc.rcode || answers(in) != tc.want {
			t.Errorf("%s %s: %s %q, want %s %q", tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[in.Rcode], answers(in), dns.RcodeToString[tc.rcode], tc.want)
		}
	}
}

// TestKilledLeavesNothing SIGKILLs a test process that holds a lab and checks that its
// watchdog removes the daemons, the namespace and the directories.
func TestKilledLeavesNothing(t *testing.T) {
	if os.Getenv("MAILROUTE_LAB_HELPER") == "1" {
		l := Start(t, Options{})
		fmt.Printf("NS=%s\n", l.Name)
		time.Sleep(time.Hour) // until killed
	}
	if Available() != "" {
		Start(t, Options{}) // skips or fails with the usual message
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), "MAILROUTE_LAB_HELPER=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var ns string
	var seen strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "NS="); ok {
			ns = s
			break
		}
		seen.WriteString(sc.Text() + "\n")
	}
	if ns == "" {
		t.Fatalf("helper did not start a lab:\n%s%s", seen.String(), stderr.String())
	}
	go func() { _, _ = bufio.NewReader(stdout).WriteTo(discard{}) }()
	ino, err := nsInode(ns)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pidsIn(ino)); n < 5 {
		t.Fatalf("only %d processes in %s before the kill", n, ns)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	deadline := time.Now().Add(10 * time.Second)
	for {
		left := leftovers(ns, ino)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGKILL of the test process, left behind: %s", strings.Join(left, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leftovers(ns string, ino uint64) []string {
	var left []string
	if pids := pidsIn(ino); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes %v", pids))
	}
	for _, p := range []string{filepath.Join("/run/netns", ns), filepath.Join("/etc/netns", ns), filepath.Join(Root, ns)} {
		if _, err := os.Stat(p); err == nil {
			left = append(left, p)
		}
	}
	return left
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestAvailable(t *testing.T) {
	m := Available()
	t.Logf("Available() = %q", m)
	if os.Getenv("MAILROUTE_LAB") == "1" && m != "" {
		t.Fatalf("MAILROUTE_LAB=1 but missing %s", m)
	}
}

// dialSMTP connects from inside the namespace, expects a greeting naming host and says EHLO.
func dialSMTP(ctx context.Context, t *testing.T, l *Lab, addr, host string) *smtp.Client {
	t.Helper()
	conn, err := l.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Peek at the greeting, so that smtp.NewClient can still read it.
	br := bufio.NewReader(conn)
	var line []byte
	for n := 1; len(line) == 0; n++ {
		b, err := br.Peek(n)
		if err != nil {
			t.Fatalf("%s: reading greeting: %v", addr, err)
		}
		if b[n-1] == '\n' {
			line = b
		}
	}
	if !strings.HasPrefix(string(line), "220 ") || !strings.Contains(string(line), " "+host+" ") {
		t.Fatalf("%s: greeting %q, want 220 naming %s", addr, line, host)
	}
	c, err := smtp.NewClient(&bufConn{Conn: conn, r: br}, host)
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	// At the end of the (sub)test: QUIT and wait for the server to close. smtpd releases
	// its anvil connection slot before it closes, so later subtests find the relay's
	// connection limit free; a bare Close would race with the next connect.
	t.Cleanup(func() {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_ = c.Text.PrintfLine("QUIT")
		_, _ = io.Copy(io.Discard, conn)
		conn.Close()
	})
	if err := c.Hello("client.example"); err != nil {
		t.Fatalf("%s: EHLO: %v", addr, err)
	}
	return c
}

// bufConn lets smtp.NewClient read the greeting already peeked at.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func caPool(t *testing.T, l *Lab) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(l.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", l.CAFile)
	}
	return pool
}

// swaks sends one message through the relay as RelayUser, verifying the relay's
// certificate against the lab CA.
func swaks(ctx context.Context, t *testing.T, l *Lab, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Skip("swaks not installed")
	}
	args = append(args, "--from", RelayUser, "--helo", "client.example",
		"--auth", "PLAIN", "--auth-user", RelayUser, "--auth-password", RelayPassword,
		"--tls-verify", "--tls-ca-path", l.CAFile, "--timeout", "10")
	out, err := l.Command(ctx, "swaks", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("swaks %s: %v\n%s\n%s", strings.Join(args, " "), err, out, l.logTails(20, "relay", "dovecot"))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
