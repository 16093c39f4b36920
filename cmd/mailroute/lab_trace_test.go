package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/probe"
)

// labHelo is the name the lab runs say in EHLO: with it, an "EHLO
// localhost" in a trace is a bug (go-smtp said it before STARTTLS).
const labHelo = "client.lab.example"

// noSecrets fails when out holds the lab password, in clear or in any of
// the base64 forms AUTH PLAIN and LOGIN send it (and LOGIN's user name).
func noSecrets(t *testing.T, what, out string) {
	t.Helper()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		lab.RelayPassword,
		b64(lab.RelayPassword),
		b64("\x00" + lab.RelayUser + "\x00" + lab.RelayPassword),
		b64(lab.RelayUser),
	} {
		if strings.Contains(out, s) {
			t.Errorf("%s holds %q", what, s)
		}
	}
}

// traceSessions splits a trace into its sessions' lines, by session
// number, the "[n] " taken off.
func traceSessions(trace string) map[string][]string {
	out := map[string][]string{}
	re := regexp.MustCompile(`^\[(\d+)\] (.*)$`)
	for _, l := range strings.Split(trace, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			out[m[1]] = append(out[m[1]], m[2])
		}
	}
	return out
}

// sessionTo is the lines of the session with addr ("127.0.5.1:587").
func sessionTo(t *testing.T, trace, addr string) []string {
	t.Helper()
	for _, ls := range traceSessions(trace) {
		if len(ls) > 0 && strings.HasPrefix(ls[0], "=== "+addr+": connected") {
			return ls
		}
	}
	t.Fatalf("no session with %s in the trace:\n%s", addr, trace)
	return nil
}

// ehloAfterTLS is the keywords of the EHLO reply traced after "TLS
// started" (every line but the first, the server's name).
func ehloAfterTLS(lines []string) []string {
	var kws []string
	inTLS, inEHLO := false, false
	for _, l := range lines {
		switch {
		case strings.Contains(l, ": TLS started: "):
			inTLS = true
		case inTLS && strings.HasPrefix(l, " -> EHLO "):
			inEHLO = true
		case inEHLO && strings.HasPrefix(l, "<-  250"):
			if !strings.HasPrefix(l, "<-  250-"+lab.RelayHost) && !strings.HasPrefix(l, "<-  250 "+lab.RelayHost) {
				kw, _, _ := strings.Cut(l[len("<-  250-"):], " ")
				kws = append(kws, strings.ToUpper(kw))
			}
			if strings.HasPrefix(l, "<-  250 ") {
				return kws
			}
		}
	}
	return kws
}

// TestLabTrace: --trace on probe and send, and Prober.Trace, against the
// real Postfix relay: the conversations are on stderr with every EHLO line,
// --helo in the first EHLO too, AUTH lines hidden, and never the password,
// its base64, or a message's content.
func TestLabTrace(t *testing.T) {
	l := lab.Start(t, lab.Options{})

	t.Run("probe", func(t *testing.T) {
		r := asLabRun(l.RunMailroute(t, nil, "probe", "--json", "--trace", "--timeout", "2s", "--tls-ca", l.CAFile,
			"--helo", labHelo, "--relay", lab.RelayHost, "--to", lab.AlphaDomain))
		var rep probe.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("probe --json --trace: stdout is not the JSON report (exit %d): %v\nstdout:\n%s\nstderr:\n%s", r.code, err, r.stdout, r.stderr)
		}
		trace := r.stderr
		t.Logf("probe took %s; trace:\n%s", r.took, trace)
		for _, want := range []string{
			"-> EHLO " + labHelo, "-> STARTTLS", "<-  220 ", ": TLS started: TLS 1.3", "-> QUIT",
			"=== " + lab.RelayAddr + ":2525: connect failed", // closed on the relay
		} {
			if !strings.Contains(trace, want) {
				t.Errorf("trace lacks %q", want)
			}
		}
		if strings.Contains(trace, "EHLO localhost") {
			t.Errorf("an EHLO said localhost, not --helo")
		}
		noSecrets(t, "the probe's stderr", trace)

		// Every EHLO line after TLS is reported, not a list of known ones.
		for _, e := range rep.Endpoints() {
			if e.Addr != lab.RelayAddr || e.Port != lab.SubmissionPort {
				continue
			}
			lines := sessionTo(t, trace, net.JoinHostPort(lab.RelayAddr, "587"))
			if lines[2] != " -> EHLO "+labHelo {
				t.Errorf("587: first command %q, want EHLO %s", lines[2], labHelo)
			}
			kws := ehloAfterTLS(lines)
			if len(kws) < 5 {
				t.Fatalf("587: EHLO after TLS in the trace: %v", kws)
			}
			for _, kw := range kws {
				if _, ok := e.EHLOTLS[kw]; !ok && !strings.HasPrefix(kw, "AUTH=") {
					t.Errorf("587: %s was offered after TLS but the report's ehlo_tls is %v", kw, e.EHLOTLS)
				}
			}
			if len(e.AuthTLS) == 0 || e.TLS == nil || !e.TLS.Verified {
				t.Errorf("587: auth %v TLS %+v", e.AuthTLS, e.TLS)
			}
		}
	})

	t.Run("advise", func(t *testing.T) {
		// advise's probe, login and measurement (advisor.Run) share the trace.
		r := mailroute(t, l, t.TempDir(), []string{"LAB_PW=" + lab.RelayPassword}, append([]string{"advise", "--json", "--trace",
			"--timeout", "2s", "--tls-ca", l.CAFile, "--helo", labHelo, "--to", lab.AlphaDomain, "--relay", lab.RelayHost,
			"--user", lab.RelayUser, "--password-env", "LAB_PW", "--measure", "--measure-time", "3s"}, labIdentity...)...)
		trace := r.stderr
		if r.code != 0 {
			t.Fatalf("advise --trace: exit %d\n%s", r.code, trace)
		}
		for _, want := range []string{"-> EHLO " + labHelo, "-> AUTH PLAIN <hidden>", "<-  235 ", "-> MAIL FROM:<"} {
			if !strings.Contains(trace, want) {
				t.Errorf("advise's trace lacks %q:\n%s", want, trace)
			}
		}
		noSecrets(t, "advise's trace", trace)
	})

	t.Run("prober login and measurement", func(t *testing.T) {
		pem, err := os.ReadFile(l.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		var buf bytes.Buffer
		p := &probe.Prober{Timeout: 2 * time.Second, Roots: roots, Helo: labHelo, Trace: smtpclient.NewTrace(&buf),
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := l.Do(func() error {
					var err error
					c, err = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.78.1")}}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sub := &probe.Endpoint{Role: probe.RoleRelay, Host: lab.RelayHost, Addr: lab.RelayAddr, Port: lab.SubmissionPort, TLSMode: "starttls"}
		subs := &probe.Endpoint{Role: probe.RoleRelay, Host: lab.RelayHost, Addr: lab.RelayAddr, Port: lab.SubmissionsPort, TLSMode: "implicit"}
		if lg := p.Login(ctx, sub, probe.Credentials{User: lab.RelayUser, Secret: lab.RelayPassword}); !lg.OK || lg.Mechanism != "PLAIN" {
			t.Fatalf("login on 587: %+v", lg)
		}
		if lg := p.Login(ctx, subs, probe.Credentials{User: lab.RelayUser, Secret: lab.RelayPassword, Mechanism: "LOGIN"}); !lg.OK {
			t.Fatalf("login on 465: %+v", lg)
		}
		m := p.Measure(ctx, sub, probe.MeasureOptions{Cred: &probe.Credentials{User: lab.RelayUser, Secret: lab.RelayPassword},
			To: "bob@" + lab.AlphaDomain, MaxSessions: 2, MaxTransactions: 2, WindowBudget: -1})
		if m.Error != "" || m.Transactions != 2 || m.SessionLimit != 2 {
			t.Fatalf("measurement %+v", m)
		}
		trace := buf.String()
		t.Logf("trace:\n%s", trace)
		for _, want := range []string{
			"-> EHLO " + labHelo, "-> AUTH PLAIN <hidden>", "-> AUTH LOGIN\n", "-> <hidden>", "<-  235 2.7.0 Authentication successful",
			"-> MAIL FROM:<" + lab.RelayUser + ">", "-> RCPT TO:<bob@" + lab.AlphaDomain + ">", "-> RSET", "<-  221 ",
		} {
			if !strings.Contains(trace, want) {
				t.Errorf("trace lacks %q", want)
			}
		}
		if strings.Contains(trace, "-> DATA") {
			t.Errorf("the measurement sent DATA")
		}
		noSecrets(t, "the probe's trace", trace)
	})

	t.Run("send", func(t *testing.T) {
		const body = "the secret body text 41f9c2 must not be traced"
		const subject = "Subject line 8e0b77 not traced either"
		for _, c := range []struct {
			port      int
			tls, auth string
			want      []string
		}{
			{lab.SubmissionPort, "starttls", "plain", []string{"-> STARTTLS", "-> AUTH PLAIN <hidden>"}},
			{lab.SubmissionsPort, "implicit", "login", []string{"-> AUTH LOGIN\n", "-> <hidden>\n"}},
		} {
			t.Run(c.auth, func(t *testing.T) {
				dir := t.TempDir()
				cfg := fmt.Sprintf("mode = \"relay\"\nhelo = %q\n\n[[relay]]\nhost = %q\nport = %d\ntls = %q\nauth = %q\nusername = %q\npassword_env = \"LAB_PW\"\nca_file = %q\n",
					labHelo, lab.RelayHost, c.port, c.tls, c.auth, lab.RelayUser, l.CAFile)
				for name, data := range map[string]string{
					"cfg.toml":    cfg,
					"list.csv":    "email\ncarol@" + lab.AlphaDomain + "\ndave@" + lab.AlphaDomain + "\n",
					"message.txt": "From: Lab Sender <" + lab.RelayUser + ">\nSubject: " + subject + "\n\n" + body + "\n",
				} {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				r := asLabRun(l.RunMailrouteWith(t, lab.RunOptions{Dir: dir, Env: []string{"LAB_PW=" + lab.RelayPassword}},
					"send", "--config", "cfg.toml", "--list", "list.csv", "--message", "message.txt", "--trace", "--connect-timeout", "2s"))
				trace := r.stderr
				t.Logf("exit %d\nstdout:\n%s\ntrace:\n%s", r.code, r.stdout, trace)
				if r.code != 0 {
					t.Fatalf("send --trace: exit %d", r.code)
				}
				for _, want := range append([]string{
					"-> EHLO ", "-> MAIL FROM:<" + lab.RelayUser + ">", "-> RCPT TO:<carol@" + lab.AlphaDomain + ">",
					// Streamed with BDAT (RFC 3030), Postfix's reply names the size.
					"<-  235 ", "bytes, not shown>", "<-  250 2.0.0 Ok: ", " bytes queued as ",
				}, c.want...) {
					if !strings.Contains(trace, want) {
						t.Errorf("trace lacks %q", want)
					}
				}
				for _, leak := range []string{body, subject, "41f9c2", "8e0b77"} {
					if strings.Contains(r.stdout+trace, leak) {
						t.Errorf("the message content %q is in the output", leak)
					}
				}
				noSecrets(t, "send's output", r.stdout+trace)
			})
		}
	})
}
