package probe_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/probe"
)

// The relay's limits in these tests: few sessions and transactions, so
// the exact limits are found in well under a second, and a short window.
const (
	labConnLimit = 3
	labMsgLimit  = 8
	labWindow    = 5 * time.Second
)

func labRelay(b testing.TB) *lab.Lab {
	return lab.Start(b, lab.Options{RelayConnLimit: labConnLimit, RelayMsgRateLimit: labMsgLimit, RelayRateWindow: labWindow})
}

// labProber returns a Prober that connects from inside the lab namespace,
// from the client address src. Postfix's anvil keeps its counts per client
// address, so each test (and each benchmark iteration) takes its own
// 127.x address and starts from clean counts: every 127.0.0.0/8 address
// is local on the namespace's loopback, so any of them can be bound.
func labProber(t testing.TB, l *lab.Lab, src string) *probe.Prober {
	t.Helper()
	pem, err := os.ReadFile(l.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", l.CAFile)
	}
	local := &net.TCPAddr{IP: net.ParseIP(src)}
	return &probe.Prober{
		Timeout: 2 * time.Second,
		Roots:   roots,
		Helo:    "client.example",
		// Lab.Do runs on a thread inside the namespace; the socket made
		// there stays in the namespace wherever it is used afterwards.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := l.Do(func() error {
				d := net.Dialer{LocalAddr: local}
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
}

func relayEndpoint(port int) *probe.Endpoint {
	mode := "starttls"
	if port == lab.SubmissionsPort {
		mode = "implicit"
	}
	return &probe.Endpoint{Role: probe.RoleRelay, Host: lab.RelayHost, Addr: lab.RelayAddr, Port: port, TLSMode: mode}
}

var labCred = &probe.Credentials{User: lab.RelayUser, Secret: lab.RelayPassword}

func labMeasure(t testing.TB, p *probe.Prober, budget time.Duration) *probe.Measurement {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return p.Measure(ctx, relayEndpoint(lab.SubmissionsPort), probe.MeasureOptions{
		Cred: labCred, To: "bob@" + lab.AlphaDomain, WindowBudget: budget,
	})
}

// TestLabMeasure measures the real Postfix relay's anvil limits on :465:
// the exact session and message counts, and the window.
func TestLabMeasure(t *testing.T) {
	l := labRelay(t)

	t.Run("login", func(t *testing.T) {
		p := labProber(t, l, "127.0.77.1")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, port := range []int{lab.SubmissionPort, lab.SubmissionsPort} {
			lg := p.Login(ctx, relayEndpoint(port), *labCred)
			if !lg.OK || lg.Mechanism != "PLAIN" || strings.Join(lg.Offered, " ") != "PLAIN LOGIN" {
				t.Errorf(":%d: %+v", port, lg)
			}
		}
		lg := p.Login(ctx, relayEndpoint(lab.SubmissionPort), probe.Credentials{User: lab.RelayUser, Secret: "wrong-horse-battery", Mechanism: "LOGIN"})
		if lg.OK || !strings.HasPrefix(lg.Reply, "535 5.7.8") {
			t.Errorf("wrong password: %+v", lg)
		}
		t.Logf("wrong password: %s", lg.Reply)
		if b, _ := json.Marshal(lg); strings.Contains(string(b), "wrong-horse-battery") {
			t.Errorf("the secret is in the report: %s", b)
		}
		// Postfix offers no AUTH before STARTTLS (smtpd_tls_auth_only):
		// even when plaintext is allowed, the check says so.
		plain := relayEndpoint(lab.SubmissionPort)
		plain.TLSMode = "none"
		lg = p.Login(ctx, plain, probe.Credentials{User: lab.RelayUser, Secret: lab.RelayPassword, InsecureAuth: true})
		if lg.OK || !strings.Contains(lg.Error, "offers no AUTH on this plaintext session") {
			t.Errorf("plaintext: %+v", lg)
		}
	})

	t.Run("measure", func(t *testing.T) {
		start := time.Now()
		m := labMeasure(t, labProber(t, l, "127.0.77.2"), 0)
		t.Logf("measured in %s:\n  %s", time.Since(start).Round(time.Millisecond), strings.Join(m.Evidence, "\n  "))
		if m.Error != "" {
			t.Fatalf("error %q\n%s", m.Error, l.Log("relay"))
		}
		if m.SessionLimit != labConnLimit || !strings.Contains(m.SessionReply, "421 4.7.0 "+lab.RelayHost+" Error: too many connections from 127.0.77.2") {
			t.Errorf("sessions %d (want %d), reply %q", m.SessionLimit, labConnLimit, m.SessionReply)
		}
		if m.Transactions != labMsgLimit || m.TransactionCommand != "MAIL" || !strings.Contains(m.TransactionReply, "450 4.7.1 Error: too much mail from 127.0.77.2") {
			t.Errorf("transactions %d (want %d), refused at %s: %q", m.Transactions, labMsgLimit, m.TransactionCommand, m.TransactionReply)
		}
		if m.PerSession {
			t.Errorf("anvil counts per client, not per session")
		}
		// anvil counts time in whole seconds and restarts its window at the
		// first event more than anvil_rate_time_unit after the start: a
		// unit of W seconds lasts between W and W+1 s from the event that
		// started it (here the retry that opened the second cycle).
		w, prec := time.Duration(m.Window), time.Duration(m.WindowPrecision)
		if w-prec > labWindow+time.Second+200*time.Millisecond || w+prec < labWindow-200*time.Millisecond || prec > time.Second {
			t.Errorf("window %s ± %s, want %s..%s (note %q)", w, prec, labWindow, labWindow+time.Second, m.WindowNote)
		}
		if b, _ := json.Marshal(m); strings.Contains(string(b), lab.RelayPassword) {
			t.Errorf("the password is in the report: %s", b)
		}
	})
}

// BenchmarkLabMeasure: the time to find the exact limits of the real relay
// (window not measured; goal ≤ 15 s), and separately the whole measurement
// with its window. Every iteration comes from a fresh client address.
func BenchmarkLabMeasure(b *testing.B) {
	l := labRelay(b)
	n := 0
	src := func() string { n++; return fmt.Sprintf("127.0.%d.%d", 78+n/250, 1+n%250) }
	b.Run("limits", func(b *testing.B) {
		for b.Loop() {
			m := labMeasure(b, labProber(b, l, src()), -1)
			if m.SessionLimit != labConnLimit || m.Transactions != labMsgLimit || m.Error != "" {
				b.Fatalf("sessions %d transactions %d error %q", m.SessionLimit, m.Transactions, m.Error)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/measure")
	})
	b.Run("window", func(b *testing.B) {
		var m *probe.Measurement
		for b.Loop() {
			m = labMeasure(b, labProber(b, l, src()), 0)
			if m.Window == 0 {
				b.Fatalf("no window: %q", m.WindowNote)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/measure")
		b.ReportMetric(time.Duration(m.Window).Seconds(), "window-s")
		b.ReportMetric(time.Duration(m.WindowPrecision).Seconds(), "precision-s")
	})
}
