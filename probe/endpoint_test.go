package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// TestEndpointEveryEHLOLineAndHelo: the EHLO before STARTTLS says the
// Prober's Helo (go-smtp said "localhost"), and every capability offered
// after TLS is reported, not only those of a list known in advance.
func TestEndpointEveryEHLOLineAndHelo(t *testing.T) {
	pk := newPKI(t)
	srvCfg := pk.server(t, "mx.alpha.test")
	ln := listen(t, "127.0.0.2", 0)
	var mu sync.Mutex
	var helos []string
	scripted(t, ln, func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "220 mx.alpha.test ESMTP\r\n")
		var conn net.Conn = c
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
			case "EHLO":
				mu.Lock()
				helos = append(helos, line)
				mu.Unlock()
				if _, ok := conn.(*tls.Conn); ok {
					io.WriteString(conn, "250-mx.alpha.test\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250-X-ODD-ONE 7\r\n250-REQUIRETLS\r\n250 XCLIENTISH\r\n")
				} else {
					io.WriteString(conn, "250-mx.alpha.test\r\n250-SIZE 1000\r\n250-X-PLAIN-ONLY\r\n250 STARTTLS\r\n")
				}
			case "STARTTLS":
				io.WriteString(conn, "220 go ahead\r\n")
				tc := tls.Server(c, srvCfg)
				if tc.Handshake() != nil {
					return
				}
				conn, r = tc, bufio.NewReader(tc)
			case "QUIT":
				io.WriteString(conn, "221 bye\r\n")
				return
			default:
				io.WriteString(conn, "502 no\r\n")
			}
		}
	})
	var trace bytes.Buffer
	p := &Prober{Timeout: time.Second, Roots: pk.ca.Pool(), Helo: "probe.example", Trace: smtpclient.NewTrace(&trace)}
	p.defaults()
	e := &Endpoint{Role: RoleMX, Host: "mx.alpha.test", Addr: "127.0.0.2", Port: portOf(ln), TLSMode: "starttls"}
	p.probeEndpoint(context.Background(), e)
	if !e.Usable() || e.TLS == nil || !e.TLS.Verified {
		t.Fatalf("endpoint %+v problem %q TLS %+v", e, e.Problem, e.TLS)
	}
	mu.Lock()
	got := strings.Join(helos, ", ")
	mu.Unlock()
	if got != "EHLO probe.example, EHLO probe.example" {
		t.Errorf("EHLOs %q, want the Helo both times", got)
	}
	if _, ok := e.EHLO["X-PLAIN-ONLY"]; !ok || e.EHLO["SIZE"] != "1000" {
		t.Errorf("EHLO before TLS %v", e.EHLO)
	}
	for _, kw := range []string{"PIPELINING", "AUTH", "X-ODD-ONE", "REQUIRETLS", "XCLIENTISH"} {
		if _, ok := e.EHLOTLS[kw]; !ok {
			t.Errorf("EHLO after TLS %v lacks %s", e.EHLOTLS, kw)
		}
	}
	if e.EHLOTLS["X-ODD-ONE"] != "7" || len(e.EHLOTLS) != 5 || strings.Join(e.AuthTLS, " ") != "PLAIN" {
		t.Errorf("EHLO after TLS %v auth %v", e.EHLOTLS, e.AuthTLS)
	}
	if e.Timings.Greeting <= 0 || e.Timings.TLS <= 0 {
		t.Errorf("timings %+v", e.Timings)
	}
	for _, want := range []string{"]  -> EHLO probe.example\n", "]  -> STARTTLS\n", "] <-  250 XCLIENTISH\n", "]  -> QUIT\n"} {
		if !strings.Contains(trace.String(), want) {
			t.Errorf("trace lacks %q:\n%s", want, trace.String())
		}
	}
}

// TestEndpointImplicitTLSProblems: on an implicit-TLS port, a plaintext
// greeting is named as such, and inside TLS a server that does not speak
// SMTP, or refuses EHLO, is told apart as over plaintext.
func TestEndpointImplicitTLSProblems(t *testing.T) {
	pk := newPKI(t)
	srvCfg := pk.server(t, "smtp.relay.test")
	cases := []struct {
		name   string
		tls    bool
		script func(c net.Conn, r *bufio.Reader)
		kind   ProblemKind
		want   string
	}{
		{"plaintext greeting", false, func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 smtp.relay.test ESMTP\r\n")
			r.ReadString('\n')
		}, ProblemPlaintextOnTLS, "got a plaintext greeting: 220 smtp.relay.test ESMTP"},
		{"not SMTP inside TLS", true, func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n")
			r.ReadString('\n')
		}, ProblemNotSMTP, `not SMTP: the server's first line is "SSH-2.0-OpenSSH_9.2"`},
		{"EHLO refused inside TLS", true, func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "220 smtp.relay.test ESMTP\r\n")
			r.ReadString('\n')
			io.WriteString(c, "550 5.7.1 go away\r\n")
			r.ReadString('\n')
		}, ProblemOther, "550 5.7.1 go away"},
		{"greeting busy inside TLS", true, func(c net.Conn, r *bufio.Reader) {
			io.WriteString(c, "421 4.7.0 busy\r\n")
		}, ProblemGreetingBusy, "busy or limiting (temporary) at greeting: 421 4.7.0 busy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln := listen(t, "127.0.0.3", 0)
			var serve net.Listener = ln
			if tc.tls {
				serve = tls.NewListener(ln, srvCfg)
			}
			scripted(t, serve, tc.script)
			p := &Prober{Timeout: 500 * time.Millisecond, Roots: pk.ca.Pool()}
			p.defaults()
			e := &Endpoint{Role: RoleRelay, Host: "smtp.relay.test", Addr: "127.0.0.3", Port: portOf(ln), TLSMode: "implicit"}
			p.probeEndpoint(context.Background(), e)
			if e.ProblemKind != tc.kind || !strings.Contains(e.Problem, tc.want) {
				t.Errorf("problem %s %q, want %s %q", e.ProblemKind, e.Problem, tc.kind, tc.want)
			}
		})
	}
}
