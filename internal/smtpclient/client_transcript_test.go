package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailroute/mailroute/internal/testpki"
)

// fakeServer is the server end of a net.Pipe, driven by a test's script in
// its own goroutine: it checks every byte the client sends (each line with
// its CRLF) and writes the replies it is given, byte for byte.
type fakeServer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// send writes raw reply bytes.
func (s *fakeServer) send(raw string) {
	if _, err := io.WriteString(s.conn, raw); err != nil {
		s.t.Errorf("server: writing %q: %v", raw, err)
	}
}

// expect reads one line and checks it is want followed by CRLF, exactly.
func (s *fakeServer) expect(want string) {
	got, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Errorf("server: waiting for %q: %v (got %q)", want, err, got)
		return
	}
	if got != want+"\r\n" {
		s.t.Errorf("server: client sent %q, want %q", got, want+"\r\n")
	}
}

// reply is expect, then send.
func (s *fakeServer) reply(want, raw string) {
	s.expect(want)
	s.send(raw)
}

// startTLS handshakes as a server over the pipe, then reads in TLS.
func (s *fakeServer) startTLS(cfg *tls.Config) {
	tc := tls.Server(s.conn, cfg)
	if err := tc.Handshake(); err != nil {
		s.t.Errorf("server: TLS handshake: %v", err)
		return
	}
	s.conn, s.r = tc, bufio.NewReader(tc)
}

// quit answers QUIT with 221 and hangs up, as Postfix does.
func (s *fakeServer) quit() {
	s.reply("QUIT", "221 2.0.0 Bye\r\n")
	_ = s.conn.Close()
}

// pipeClient starts script as the server over a net.Pipe and returns a
// Client on the other end, tracing into the buffer returned; done closes
// when the script has ended.
func pipeClient(t *testing.T, opts Options, script func(s *fakeServer)) (c *Client, trace *bytes.Buffer, done <-chan struct{}) {
	t.Helper()
	cli, srv := net.Pipe()
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer srv.Close()
		_ = srv.SetDeadline(time.Now().Add(10 * time.Second))
		script(&fakeServer{t: t, conn: srv, r: bufio.NewReader(srv)})
	}()
	trace = &bytes.Buffer{}
	opts.Trace = NewTrace(trace)
	if opts.Addr == "" {
		opts.Addr = "mx.test:25"
	}
	if opts.Helo == "" {
		opts.Helo = "client.test"
	}
	opts.Timeouts = Timeouts{Connect: 5 * time.Second, Command: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return New(ctx, cli, opts), trace, ch
}

// wait waits for the server's script to end.
func wait(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server script did not end")
	}
}

// lines joins trace lines, each ended by a newline, as Trace writes them.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func checkTrace(t *testing.T, got *bytes.Buffer, want string) {
	t.Helper()
	if got.String() != want {
		t.Errorf("trace:\n%s\nwant:\n%s", got, want)
	}
}

const ehloPlain = "250-mx.test Hello client.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 8BITMIME\r\n"

func TestTranscriptStartTLSRefused(t *testing.T) {
	c, trace, done := pipeClient(t, Options{TLS: Opportunistic}, func(s *fakeServer) {
		s.send("220 mx.test ESMTP\r\n")
		s.reply("EHLO client.test", ehloPlain)
		s.reply("STARTTLS", "454 4.7.0 TLS not available due to local problem\r\n")
		s.quit()
	})
	if err := c.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !c.Fallback() {
		t.Error("opportunistic TLS refused with 454: the session should go on in plaintext")
	}
	if _, ok := c.TLS(); ok {
		t.Error("TLS is up after a refused STARTTLS")
	}
	c.Quit()
	wait(t, done)
	checkTrace(t, trace, lines(
		"[1] === mx.test:25: connected to pipe",
		"[1] <-  220 mx.test ESMTP",
		"[1]  -> EHLO client.test",
		"[1] <-  250-mx.test Hello client.test",
		"[1] <-  250-PIPELINING",
		"[1] <-  250-SIZE 10240000",
		"[1] <-  250-STARTTLS",
		"[1] <-  250 8BITMIME",
		"[1]  -> STARTTLS",
		"[1] <-  454 4.7.0 TLS not available due to local problem",
		"[1]  -> QUIT",
		"[1] <-  221 2.0.0 Bye",
		"[1] === mx.test:25: closed",
	))
	if c.Refusals != 1 {
		t.Errorf("refusals %d, want 1 (the 454)", c.Refusals)
	}
}

func TestTranscriptStartTLSRequiredButRefused(t *testing.T) {
	c, trace, done := pipeClient(t, Options{TLS: StartTLS}, func(s *fakeServer) {
		s.send("220 mx.test ESMTP\r\n")
		s.reply("EHLO client.test", ehloPlain)
		s.reply("STARTTLS", "454 4.7.0 TLS not available\r\n")
		s.expect("QUIT") // and no more: the client closes
	})
	err := c.Open(context.Background())
	var se *Error
	if !errors.As(err, &se) || se.Command != "STARTTLS" || se.Code != 454 || se.Permanent {
		t.Fatalf("Open: %v, want a temporary STARTTLS 454", err)
	}
	c.Quit()
	wait(t, done)
	if !strings.Contains(trace.String(), "[1] <-  454 4.7.0 TLS not available\n[1]  -> QUIT\n") {
		t.Errorf("trace:\n%s", trace)
	}
}

func TestTranscriptStartTLSAccepted(t *testing.T) {
	ca, err := testpki.NewCA("smtpclient transcript test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue([]string{"mx.test"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg := leaf.ServerConfig()
	// TLS 1.3 session tickets are written after the handshake: over a
	// net.Pipe, which has no buffer, they would wait for a read the client
	// does not make while it writes its EHLO.
	srvCfg.SessionTicketsDisabled = true
	const ehloTLS = "250-mx.test Hello client.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-X-MADE-UP-EXTENSION 42\r\n250 CHUNKING\r\n"
	c, trace, done := pipeClient(t, Options{TLS: StartTLS, ServerName: "mx.test",
		TLSConfig: &tls.Config{ServerName: "mx.test", RootCAs: ca.Pool()}}, func(s *fakeServer) {
		s.send("220 mx.test ESMTP\r\n")
		s.reply("EHLO client.test", ehloPlain)
		s.reply("STARTTLS", "220 2.0.0 Ready to start TLS\r\n")
		s.startTLS(srvCfg)
		s.reply("EHLO client.test", ehloTLS)
		s.quit()
	})
	if err := c.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	st, ok := c.TLS()
	if !ok || c.TLSTime <= 0 {
		t.Fatalf("TLS %v, TLS time %s", ok, c.TLSTime)
	}
	// Every EHLO line is kept, before and after TLS, unknown ones too.
	if len(c.PlainEHLO.Lines) != 5 || c.PlainEHLO.Lines[3] != "STARTTLS" {
		t.Errorf("plaintext EHLO %+v", c.PlainEHLO)
	}
	if len(c.EHLO.Lines) != 7 || c.EHLO.Lines[5] != "X-MADE-UP-EXTENSION 42" {
		t.Errorf("EHLO after TLS %+v", c.EHLO)
	}
	if v, ok := c.Extension("X-MADE-UP-EXTENSION"); !ok || v != "42" || c.Has("STARTTLS") || !c.Has("CHUNKING") {
		t.Errorf("extensions after TLS %v", c.Extensions())
	}
	if c.Raw().Replies()[2].Code != 220 {
		t.Errorf("the recording connection should hold the plaintext replies: %+v", c.Raw().Replies())
	}
	c.Quit()
	wait(t, done)
	checkTrace(t, trace, lines(
		"[1] === mx.test:25: connected to pipe",
		"[1] <-  220 mx.test ESMTP",
		"[1]  -> EHLO client.test",
		"[1] <-  250-mx.test Hello client.test",
		"[1] <-  250-PIPELINING",
		"[1] <-  250-SIZE 10240000",
		"[1] <-  250-STARTTLS",
		"[1] <-  250 8BITMIME",
		"[1]  -> STARTTLS",
		"[1] <-  220 2.0.0 Ready to start TLS",
		"[1] === mx.test:25: TLS started: "+tls.VersionName(st.Version)+" "+tls.CipherSuiteName(st.CipherSuite),
		"[1]  -> EHLO client.test",
		"[1] <-  250-mx.test Hello client.test",
		"[1] <-  250-PIPELINING",
		"[1] <-  250-SIZE 10240000",
		"[1] <-  250-AUTH PLAIN LOGIN",
		"[1] <-  250-ENHANCEDSTATUSCODES",
		"[1] <-  250-X-MADE-UP-EXTENSION 42",
		"[1] <-  250 CHUNKING",
		"[1]  -> QUIT",
		"[1] <-  221 2.0.0 Bye",
		"[1] === mx.test:25: closed",
	))
}

func TestTranscriptHELOFallback(t *testing.T) {
	c, trace, done := pipeClient(t, Options{TLS: Opportunistic}, func(s *fakeServer) {
		s.send("220-old.test SMTP\r\n220 no ESMTP here\r\n")
		s.reply("EHLO client.test", "502 5.5.2 Error: command not recognized\r\n")
		s.reply("HELO client.test", "250 old.test\r\n")
		s.quit()
	})
	if err := c.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if len(c.Extensions()) != 0 || c.EHLO.Code != 0 || len(c.Greeting.Lines) != 2 {
		t.Errorf("after HELO: extensions %v EHLO %+v greeting %+v", c.Extensions(), c.EHLO, c.Greeting)
	}
	c.Quit()
	wait(t, done)
	checkTrace(t, trace, lines(
		"[1] === mx.test:25: connected to pipe",
		"[1] <-  220-old.test SMTP",
		"[1] <-  220 no ESMTP here",
		"[1]  -> EHLO client.test",
		"[1] <-  502 5.5.2 Error: command not recognized",
		"[1]  -> HELO client.test",
		"[1] <-  250 old.test",
		"[1]  -> QUIT",
		"[1] <-  221 2.0.0 Bye",
		"[1] === mx.test:25: closed",
	))
}

// The password, its base64, and the base64 of every line that carries it
// must never reach the trace.
const (
	authUser   = "alice@example.test"
	authSecret = "pa55-w0rd-8c1d-never-shown"
)

func checkNoSecret(t *testing.T, trace string) {
	t.Helper()
	for _, s := range []string{
		authSecret,
		base64.StdEncoding.EncodeToString([]byte(authSecret)),
		base64.StdEncoding.EncodeToString([]byte("\x00" + authUser + "\x00" + authSecret)),
		base64.StdEncoding.EncodeToString([]byte(authUser)),
	} {
		if strings.Contains(trace, s) {
			t.Errorf("the trace holds %q:\n%s", s, trace)
		}
	}
}

func TestTranscriptAuthPlain(t *testing.T) {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + authUser + "\x00" + authSecret))
	c, trace, done := pipeClient(t, Options{InsecureAuth: true,
		Auth: func() (sasl.Client, error) { return SASLClient("plain", authUser, authSecret) }}, func(s *fakeServer) {
		s.send("220 relay.test ESMTP\r\n")
		s.reply("EHLO client.test", "250-relay.test\r\n250 AUTH PLAIN LOGIN\r\n")
		s.reply("AUTH PLAIN "+ir, "235 2.7.0 Authentication successful\r\n")
		s.quit()
	})
	if err := c.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if c.AuthTime <= 0 {
		t.Errorf("AuthTime %s", c.AuthTime)
	}
	c.Quit()
	wait(t, done)
	checkTrace(t, trace, lines(
		"[1] === mx.test:25: connected to pipe",
		"[1] <-  220 relay.test ESMTP",
		"[1]  -> EHLO client.test",
		"[1] <-  250-relay.test",
		"[1] <-  250 AUTH PLAIN LOGIN",
		"[1]  -> AUTH PLAIN <hidden>",
		"[1] <-  235 2.7.0 Authentication successful",
		"[1]  -> QUIT",
		"[1] <-  221 2.0.0 Bye",
		"[1] === mx.test:25: closed",
	))
	checkNoSecret(t, trace.String())
}

func TestTranscriptAuthLoginRefused(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	c, trace, done := pipeClient(t, Options{InsecureAuth: true}, func(s *fakeServer) {
		s.send("220 relay.test ESMTP\r\n")
		s.reply("EHLO client.test", "250-relay.test\r\n250 AUTH LOGIN\r\n")
		s.reply("AUTH LOGIN", "334 "+b64([]byte("Username:"))+"\r\n")
		s.reply(b64([]byte(authUser)), "334 "+b64([]byte("Password:"))+"\r\n")
		s.reply(b64([]byte(authSecret)), "535 5.7.8 Error: authentication failed: "+b64([]byte(authSecret))+"\r\n")
		s.reply("RSET", "250 2.0.0 Ok\r\n") // the session stays usable, and traced again
		s.quit()
	})
	if err := c.Greet(); err != nil {
		t.Fatal(err)
	}
	if err := c.Hello(); err != nil {
		t.Fatal(err)
	}
	a, _ := SASLClient("LOGIN", authUser, authSecret)
	err := c.AuthWith(a)
	var se *Error
	if !errors.As(err, &se) || se.Command != "AUTH" || se.Code != 535 {
		t.Fatalf("AuthWith: %v, want AUTH 535", err)
	}
	if e := c.Rset(); e != nil {
		t.Fatalf("RSET: %v", e)
	}
	c.Quit()
	wait(t, done)
	// A server echoing the secret back is its own words: only what we send
	// is hidden. The test server above does so on purpose; strip it.
	got := strings.Replace(trace.String(), b64([]byte(authSecret)), "<echo>", 1)
	want := lines(
		"[1] === mx.test:25: connected to pipe",
		"[1] <-  220 relay.test ESMTP",
		"[1]  -> EHLO client.test",
		"[1] <-  250-relay.test",
		"[1] <-  250 AUTH LOGIN",
		"[1]  -> AUTH LOGIN",
		"[1] <-  334 VXNlcm5hbWU6",
		"[1]  -> <hidden>",
		"[1] <-  334 UGFzc3dvcmQ6",
		"[1]  -> <hidden>",
		"[1] <-  535 5.7.8 Error: authentication failed: <echo>",
		"[1]  -> RSET",
		"[1] <-  250 2.0.0 Ok",
		"[1]  -> QUIT",
		"[1] <-  221 2.0.0 Bye",
		"[1] === mx.test:25: closed",
	)
	if got != want {
		t.Errorf("trace:\n%s\nwant:\n%s", got, want)
	}
	checkNoSecret(t, got)
}

// XOAUTH2's bearer token is a secret like a password (#11): the initial
// response is hidden, and so is the empty line that answers the server's
// JSON error challenge.
func TestTranscriptAuthXOAUTH2Hidden(t *testing.T) {
	const token = "ya29.token-5f0e-never-shown"
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + authUser + "\x01auth=Bearer " + token + "\x01\x01"))
	challenge := base64.StdEncoding.EncodeToString([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`))
	c, trace, done := pipeClient(t, Options{InsecureAuth: true,
		Auth: func() (sasl.Client, error) { return SASLClient("xoauth2", authUser, token) }}, func(s *fakeServer) {
		s.send("220 relay.test ESMTP\r\n")
		s.reply("EHLO client.test", "250-relay.test\r\n250 AUTH XOAUTH2\r\n")
		s.reply("AUTH XOAUTH2 "+ir, "334 "+challenge+"\r\n")
		s.reply("", "535 5.7.8 Username and Password not accepted\r\n")
		s.quit()
	})
	err := c.Open(context.Background())
	var se *Error
	if !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("Open: %v, want AUTH 535", err)
	}
	c.Quit()
	wait(t, done)
	got := trace.String()
	for _, want := range []string{"[1]  -> AUTH XOAUTH2 <hidden>\n", "[1] <-  334 " + challenge + "\n", "[1]  -> <hidden>\n", "[1] <-  535 5.7.8"} {
		if !strings.Contains(got, want) {
			t.Errorf("trace lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, token) || strings.Contains(got, ir) || strings.Contains(got, base64.StdEncoding.EncodeToString([]byte(token))) {
		t.Errorf("the trace holds the token:\n%s", got)
	}
}

func TestTranscriptAuthRefusedWithoutTLS(t *testing.T) {
	// No InsecureAuth: not a byte of AUTH goes out in clear.
	c, trace, done := pipeClient(t, Options{
		Auth: func() (sasl.Client, error) { return SASLClient("plain", authUser, authSecret) }}, func(s *fakeServer) {
		s.send("220 relay.test ESMTP\r\n")
		s.reply("EHLO client.test", "250-relay.test\r\n250 AUTH PLAIN\r\n")
		s.quit()
	})
	if err := c.Open(context.Background()); !errors.Is(err, ErrPlaintextAuth) {
		t.Fatalf("Open: %v, want ErrPlaintextAuth", err)
	}
	c.Quit()
	wait(t, done)
	if strings.Contains(trace.String(), "AUTH PLAIN ") {
		t.Errorf("trace:\n%s", trace)
	}
}

// TestTranscriptTransactionSteps: Mail, Rcpt and Rset one at a time, as
// the probe's measurement sends them: 251 is a yes, a refusal is an
// *Error naming the command with the server's words.
func TestTranscriptTransactionSteps(t *testing.T) {
	c, trace, done := pipeClient(t, Options{}, func(s *fakeServer) {
		s.send("220 relay.test ESMTP\r\n")
		s.reply("EHLO client.test", "250-relay.test\r\n250 PIPELINING\r\n")
		s.reply("MAIL FROM:<a@example.test>", "250 2.1.0 Ok\r\n")
		s.reply("RCPT TO:<b@example.test>", "251 2.1.5 will forward\r\n")
		s.reply("RSET", "250 2.0.0 Ok\r\n")
		s.reply("MAIL FROM:<a@example.test>", "450 4.7.1 Error: too much mail from 192.0.2.1\r\n")
		s.quit()
	})
	if err := c.Greet(); err != nil {
		t.Fatal(err)
	}
	if err := c.Hello(); err != nil {
		t.Fatal(err)
	}
	for i, err := range []*Error{c.Mail("a@example.test"), c.Rcpt("b@example.test"), c.Rset()} {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	err := c.Mail("a@example.test")
	if err == nil || err.Command != "MAIL" || err.Code != 450 || err.Enhanced != "4.7.1" || err.Permanent || err.Message != "Error: too much mail from 192.0.2.1" {
		t.Errorf("refused MAIL: %+v", err)
	}
	if c.Refusals != 1 || c.Broken() {
		t.Errorf("refusals %d broken %v", c.Refusals, c.Broken())
	}
	c.Quit()
	wait(t, done)
	checkTrace(t, trace, lines(
		"[1] === mx.test:25: connected to pipe",
		"[1] <-  220 relay.test ESMTP",
		"[1]  -> EHLO client.test",
		"[1] <-  250-relay.test",
		"[1] <-  250 PIPELINING",
		"[1]  -> MAIL FROM:<a@example.test>",
		"[1] <-  250 2.1.0 Ok",
		"[1]  -> RCPT TO:<b@example.test>",
		"[1] <-  251 2.1.5 will forward",
		"[1]  -> RSET",
		"[1] <-  250 2.0.0 Ok",
		"[1]  -> MAIL FROM:<a@example.test>",
		"[1] <-  450 4.7.1 Error: too much mail from 192.0.2.1",
		"[1]  -> QUIT",
		"[1] <-  221 2.0.0 Bye",
		"[1] === mx.test:25: closed",
	))
}

// TestQuitDoesNotWaitLong: a server that answers QUIT but never hangs up
// holds Quit for 2 seconds, not the command timeout.
func TestQuitDoesNotWaitLong(t *testing.T) {
	release := make(chan struct{})
	c, _, done := pipeClient(t, Options{}, func(s *fakeServer) {
		s.send("220 relay.test ESMTP\r\n")
		s.reply("QUIT", "221 2.0.0 Bye\r\n")
		<-release // and no close
	})
	defer func() { close(release); wait(t, done) }()
	c.to.Command = time.Minute
	if err := c.Greet(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Quit()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Quit took %s", d)
	}
}

func TestTraceConnectFailed(t *testing.T) {
	var b bytes.Buffer
	tr := NewTrace(&b)
	tr.ConnectFailed("mx.test:25", errors.New("connection refused"))
	var none *Trace
	none.ConnectFailed("mx.test:25", errors.New("nothing happens")) // nil: no trace
	if b.String() != "[1] === mx.test:25: connect failed: connection refused\n" {
		t.Errorf("%q", b.String())
	}
}
