package send

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/smtpclient"
)

// countWriter counts the writes that reach the connection: one per flush.
type countWriter struct {
	w io.Writer
	n int
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n++
	return c.w.Write(p)
}

// dialCounting opens a session to addr and counts its writes from now on.
func dialCounting(t *testing.T, addr string) (*session, *countWriter) {
	t.Helper()
	s, err := dial(context.Background(), &dialSpec{Addr: addr, TLS: config.TLSNone, Helo: "client.test", Timeouts: testTimeouts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	cw := &countWriter{w: s.conn}
	s.w.Reset(cw)
	return s, cw
}

func plainTxn(to string) *txn {
	return &txn{From: "s@x.test", To: to, Data: []byte("Subject: x\r\n\r\nhi\r\n")}
}

func TestPipelinedTransactions(t *testing.T) {
	f := newFakeServer(t, nil, false)
	s, cw := dialCounting(t, f.addr)
	if !s.pipelining {
		t.Fatal("go-smtp's server offers PIPELINING; the session did not see it")
	}
	for _, to := range []string{"a@x.test", "b@x.test"} {
		if _, _, err := s.deliver(plainTxn(to)); err != nil {
			t.Fatal(err)
		}
	}
	// RFC 2920: MAIL, RCPT and DATA in one write, the message and its dot
	// in another.
	if cw.n != 4 {
		t.Errorf("%d writes for 2 messages, want 4", cw.n)
	}

	// Chained: d, with c's commands riding on d's dot; then c, with e's.
	cw.n = 0
	c, d, e := plainTxn("c@x.test"), plainTxn("d@x.test"), plainTxn("e@x.test")
	if _, _, err := s.deliverThen(d, c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.deliverThen(c, e); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.deliver(e); err != nil {
		t.Fatal(err)
	}
	if cw.n != 4 { // d: group, dot+c's group; c: dot+e's group; e: dot
		t.Errorf("%d writes for 3 chained messages, want 4", cw.n)
	}
	for _, to := range []string{"a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test"} {
		if n := f.ackedFor(to); n != 1 {
			t.Errorf("%s acknowledged %d times", to, n)
		}
	}
	if f.sessionCount() != 1 {
		t.Errorf("%d sessions", f.sessionCount())
	}
}

func TestPipelinedRcptRefused(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.onRcpt = func(_ *smtp.Conn, to string, _ int) error {
		if to == "bad@x.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<bad@x.test>: no such user"}
		}
		return nil
	}
	s, cw := dialCounting(t, f.addr)
	var afterRcpt bool
	m := plainTxn("bad@x.test")
	m.AfterRcpt = func() { afterRcpt = true }
	_, st, err := s.deliver(m)
	var se *smtpclient.Error
	if !errors.As(err, &se) || st != stageRcpt || se.Command != "RCPT" || se.Code != 550 ||
		!strings.Contains(se.Error(), "550 5.1.1 <bad@x.test>: no such user") {
		t.Fatalf("stage %v, err %v", st, err)
	}
	if afterRcpt || s.broken {
		t.Errorf("after a refused RCPT: data_sent queued %v, session broken %v", afterRcpt, s.broken)
	}
	// The session goes on: RSET rides in the next group (RFC 2920 §3.1).
	cw.n = 0
	if _, _, err := s.deliver(plainTxn("good@x.test")); err != nil {
		t.Fatal(err)
	}
	if cw.n != 2 || f.ackedFor("good@x.test") != 1 || f.sessionCount() != 1 {
		t.Errorf("writes %d, acked %d, sessions %d", cw.n, f.ackedFor("good@x.test"), f.sessionCount())
	}
}

func TestPipelinedMailRefused(t *testing.T) {
	srv := newScriptServer(t, "PIPELINING")
	srv.script["MAIL"] = "550 5.7.1 sender not allowed"
	srv.script["RCPT"] = "503 5.5.1 MAIL first"
	srv.script["DATA"] = "503 5.5.1 RCPT first"
	s, _ := dialCounting(t, srv.addr)
	_, st, err := s.deliver(plainTxn("a@x.test"))
	var se *smtpclient.Error
	if !errors.As(err, &se) || st != stageMail || se.Command != "MAIL" || se.Code != 550 || se.Message != "sender not allowed" {
		t.Fatalf("stage %v, err %v", st, err)
	}
	if s.broken {
		t.Error("a refused MAIL broke the session")
	}
	delete(srv.script, "MAIL")
	delete(srv.script, "RCPT")
	delete(srv.script, "DATA")
	if _, _, err := s.deliver(plainTxn("a@x.test")); err != nil {
		t.Fatal(err)
	}
	want := "EHLO client.test|MAIL FROM:<s@x.test> BODY=8BITMIME|RCPT TO:<a@x.test>|DATA|" +
		"RSET|MAIL FROM:<s@x.test> BODY=8BITMIME|RCPT TO:<a@x.test>|DATA|."
	if got := strings.Join(srv.commands(), "|"); got != want {
		t.Errorf("commands\n got %s\nwant %s", got, want)
	}
}

func TestPipelined421InTheGroup(t *testing.T) {
	srv := newScriptServer(t, "PIPELINING")
	srv.script["RCPT"] = "421 4.3.2 shutting down"
	s, _ := dialCounting(t, srv.addr)
	_, st, err := s.deliver(plainTxn("a@x.test"))
	var se *smtpclient.Error
	if !errors.As(err, &se) || st != stageRcpt || se.Code != 421 || !s.broken {
		t.Fatalf("stage %v, err %v, broken %v", st, err, s.broken)
	}
	if s.usable(time.Now()) {
		t.Error("a session the server is closing is still usable")
	}
}

// A server that accepts DATA after refusing the only RCPT breaks RFC 2920
// §3.1; the message must not go out, and the session is done for.
func TestDataAcceptedAfterRefusedRcpt(t *testing.T) {
	srv := newScriptServer(t, "PIPELINING")
	srv.script["RCPT"] = "550 5.1.1 no such user"
	s, _ := dialCounting(t, srv.addr)
	_, st, err := s.deliver(plainTxn("a@x.test"))
	var se *smtpclient.Error
	if !errors.As(err, &se) || st != stageRcpt || se.Code != 550 || !s.broken {
		t.Fatalf("stage %v, err %v, broken %v", st, err, s.broken)
	}
	s.close()
	if srv.messages() != 0 {
		t.Error("the server got a message")
	}
}

func TestWithoutPipeliningOneCommandPerRoundTrip(t *testing.T) {
	srv := newScriptServer(t) // no PIPELINING
	s, cw := dialCounting(t, srv.addr)
	if s.pipelining {
		t.Fatal("PIPELINING seen where none was offered")
	}
	var calls []string
	m := plainTxn("a@x.test")
	m.BeforeRcpt = func() error { calls = append(calls, "rcpt"); return nil }
	m.AfterRcpt = func() { calls = append(calls, "queued") }
	m.BeforeDot = func() error { calls = append(calls, "dot"); return nil }
	if _, _, err := s.deliverThen(m, plainTxn("b@x.test")); err != nil { // no chaining either
		t.Fatal(err)
	}
	if _, _, err := s.deliver(plainTxn("b@x.test")); err != nil {
		t.Fatal(err)
	}
	if strings.Join(calls, ",") != "rcpt,queued,dot" || cw.n != 8 || srv.pipelined() != 0 || srv.messages() != 2 {
		t.Errorf("hooks %v, writes %d, commands sent before the reply to the one before: %d, messages %d",
			calls, cw.n, srv.pipelined(), srv.messages())
	}
}

func TestDotStuffingArrivesIntact(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &keepSession{keep: func(b []byte) { mu.Lock(); got = append(got, b); mu.Unlock() }}, nil
	}))
	srv.Domain, srv.ErrorLog = "fake.test", nopLogger{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	body := "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nbare LF\nnext.\r\n. \r\nlast line, no end"
	want := "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nbare LF\r\nnext.\r\n. \r\nlast line, no end\r\n"
	s, _ := dialCounting(t, ln.Addr().String())
	if _, _, err := s.deliver(&txn{From: "s@x.test", To: "a@x.test", Data: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	s.close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || string(got[0]) != want {
		t.Errorf("the server got %q\nwant %q", got, want)
	}
}

func TestWriteData(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb", "a\r\nb\r\n"},
		{".a\r\n..b\r\n.\r\n", "..a\r\n...b\r\n..\r\n"},
		{"x\r\n.", "x\r\n..\r\n"},
	} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writeData(w, []byte(c.in)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if b.String() != c.want {
			t.Errorf("%q: wrote %q, want %q", c.in, b.String(), c.want)
		}
	}
}

type keepSession struct{ keep func([]byte) }

func (s *keepSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *keepSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *keepSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.keep(b)
	return err
}
func (s *keepSession) Reset()        {}
func (s *keepSession) Logout() error { return nil }

// scriptServer is a plain SMTP server on 127.0.0.1 that answers from a
// table, command by command (after chasquid's fake server), for what
// go-smtp's server will not do: leave PIPELINING out, or break RFC 2920.
// It notes each command, and the ones that came in before the reply to
// the one before (pipelined).
type scriptServer struct {
	addr   string
	caps   []string
	script map[string]string // verb ("MAIL", "." for the end of data) → reply; unset: success

	mu    sync.Mutex
	cmds  []string
	early int
	msgs  int
}

func newScriptServer(t *testing.T, caps ...string) *scriptServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &scriptServer{addr: ln.Addr().String(), caps: append([]string{"8BITMIME"}, caps...), script: map[string]string{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { srv.serve(c) })
		}
	})
	return srv
}

func (srv *scriptServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) { _, _ = io.WriteString(c, strings.ReplaceAll(s, "\n", "\r\n")+"\r\n") }
	say("220 script.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, _, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		srv.mu.Lock()
		srv.cmds = append(srv.cmds, line)
		if r.Buffered() > 0 {
			srv.early++
		}
		reply, scripted := srv.script[verb]
		srv.mu.Unlock()
		switch {
		case verb == "QUIT":
			say("221 2.0.0 bye")
			return
		case scripted:
			say(reply)
			if strings.HasPrefix(reply, "421") {
				return
			}
			if verb == "DATA" && strings.HasPrefix(reply, "354") && !srv.readData(r) {
				return
			}
		case verb == "EHLO":
			say("250-script.test\n250-" + strings.Join(srv.caps, "\n250-") + "\n250 SIZE 100000")
		case verb == "DATA":
			say("354 go ahead")
			if !srv.readData(r) {
				return
			}
			say("250 2.0.0 queued")
		default:
			say("250 2.0.0 ok")
		}
	}
}

// readData reads a message up to its dot; false when the client left first.
func (srv *scriptServer) readData(r *bufio.Reader) bool {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		if line == ".\r\n" {
			srv.mu.Lock()
			srv.cmds = append(srv.cmds, ".")
			srv.msgs++
			srv.mu.Unlock()
			return true
		}
	}
}

func (srv *scriptServer) commands() []string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var out []string
	for _, c := range srv.cmds {
		if c != "QUIT" {
			out = append(out, c)
		}
	}
	return out
}

func (srv *scriptServer) pipelined() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.early
}

func (srv *scriptServer) messages() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.msgs
}

// TestAuthExchange: the SASL exchange of RFC 4954 §4 with a challenge
// (LOGIN), and a refusal answered by nothing more (no "*": that answers a
// 334 only).
func TestAuthExchange(t *testing.T) {
	srv := newScriptServer(t, "AUTH LOGIN")
	srv.script["AUTH"] = "334 UGFzc3dvcmQ6" // "Password:", after the user name as initial response
	srv.script["CZNJCMV0"] = "235 2.7.0 welcome"
	spec := &dialSpec{Addr: srv.addr, TLS: config.TLSNone, Helo: "client.test", Timeouts: testTimeouts, InsecureAuth: true,
		Auth: func() (sasl.Client, error) { return sasl.NewLoginClient("bob", "s3cret"), nil }}
	s, err := dial(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	s.close()
	srv.script["CZNJCMV0"] = "535 5.7.8 bad credentials"
	_, err = dial(context.Background(), spec)
	var se *smtpclient.Error
	if !errors.As(err, &se) || se.Command != "AUTH" || se.Code != 535 {
		t.Fatalf("err = %v", err)
	}
	want := "EHLO client.test|AUTH LOGIN Ym9i|czNjcmV0|EHLO client.test|AUTH LOGIN Ym9i|czNjcmV0"
	if got := strings.Join(srv.commands(), "|"); got != want {
		t.Errorf("commands\n got %s\nwant %s", got, want)
	}
}
