package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// chunkServer is a scripted SMTP server on one end of a net.Pipe: it keeps
// every byte the client sent (the transcript), reads a BDAT chunk by its
// declared size as RFC 3030 §2 says, and answers each command with
// reply(cmd), default 250.
type chunkServer struct {
	mu    sync.Mutex
	in    bytes.Buffer
	reply func(cmd string) string
	// stopAfter, when > 0, closes the connection after that many chunks
	// were read, without answering the last (a reset in flight).
	stopAfter int
}

func (s *chunkServer) serve(conn net.Conn, caps string) {
	defer conn.Close()
	r := bufio.NewReader(io.TeeReader(conn, writerFunc(func(p []byte) {
		s.mu.Lock()
		s.in.Write(p)
		s.mu.Unlock()
	})))
	w := bufio.NewWriter(conn)
	say := func(l string) { w.WriteString(l + "\r\n") }
	say("220 pipe.test ESMTP")
	w.Flush()
	chunks := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		verb, _, _ := strings.Cut(cmd, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-pipe.test")
			for _, c := range strings.Fields(caps) {
				say("250-" + c)
			}
			say("250 8BITMIME")
		case "QUIT":
			say("221 bye")
			w.Flush()
			return
		case "BDAT":
			f := strings.Fields(cmd)
			n, _ := strconv.Atoi(f[1])
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return
			}
			chunks++
			if s.stopAfter > 0 && chunks == s.stopAfter {
				return // no reply is flushed: net.Pipe has no buffer, the client is still writing
			}
			say(s.answer(cmd))
		default:
			say(s.answer(cmd))
		}
		if r.Buffered() == 0 { // as Postfix: replies go out when input runs dry
			w.Flush()
		}
	}
}

func (s *chunkServer) answer(cmd string) string {
	if s.reply != nil {
		if a := s.reply(cmd); a != "" {
			return a
		}
	}
	return "250 2.0.0 ok"
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func (s *chunkServer) transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.in.String()
}

func streamClient(t *testing.T, srv *chunkServer, caps string, tr *Trace) *Client {
	t.Helper()
	a, b := net.Pipe()
	go srv.serve(b, caps)
	c := New(context.Background(), a, Options{Addr: "pipe", Helo: "client.test", Trace: tr,
		Timeouts: Timeouts{Command: 5 * time.Second, Data: 5 * time.Second}})
	if err := c.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func txnTo(to, body string) *Txn { return &Txn{From: "s@x.test", To: to, Data: []byte(body)} }

// Three transactions go out in one write; the replies come back matched in
// order, and the bytes on the wire are exactly RFC 3030's: the declared
// size counts the content with bare LFs made CRLF and a final CRLF added,
// and no dot-stuffing.
func TestStreamThreeInOneWrite(t *testing.T) {
	srv := &chunkServer{reply: func(cmd string) string {
		if strings.HasPrefix(cmd, "BDAT") {
			return "250 2.0.0 queued as Q" + cmd[5:7]
		}
		return ""
	}}
	c := streamClient(t, srv, "PIPELINING CHUNKING", nil)
	if !c.CanStream() {
		t.Fatal("CHUNKING and PIPELINING offered; CanStream false")
	}
	for i, to := range []string{"a@x.test", "b@x.test", "c@x.test"} {
		body := "Subject: " + strconv.Itoa(i) + "\n\n.dot line\r\nend"
		if err := c.Stream(txnTo(to, body)); err != nil {
			t.Fatal(err)
		}
	}
	if c.InFlight() != 3 {
		t.Fatalf("in flight %d", c.InFlight())
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"a@x.test", "b@x.test", "c@x.test"} {
		m, reply, st, err := c.Result()
		if err != nil || st != StageDot || m.To != to || !strings.HasPrefix(reply, "2.0.0 queued") {
			t.Fatalf("%s: %s %q %v %v", to, m.To, reply, st, err)
		}
	}
	c.Quit()
	one := func(to, n string) string {
		return "MAIL FROM:<s@x.test> BODY=8BITMIME\r\nRCPT TO:<" + to + ">\r\nBDAT 30 LAST\r\nSubject: " + n + "\r\n\r\n.dot line\r\nend\r\n"
	}
	want := "EHLO client.test\r\n" + one("a@x.test", "0") + one("b@x.test", "1") + one("c@x.test", "2") + "QUIT\r\n"
	if got := srv.transcript(); got != want {
		t.Errorf("transcript\n got %q\nwant %q", got, want)
	}
}

// A refused RCPT in the middle of the stream: the server still reads the
// chunk and answers it; that transaction alone fails, at RCPT, and the
// ones after it are delivered on the same session.
func TestStreamRefusedRcptInTheMiddle(t *testing.T) {
	refusedNext := false
	srv := &chunkServer{reply: func(cmd string) string {
		switch {
		case cmd == "RCPT TO:<bad@x.test>":
			refusedNext = true
			return "550 5.1.1 <bad@x.test>: no such user"
		case strings.HasPrefix(cmd, "BDAT") && refusedNext:
			refusedNext = false
			return "554 5.5.1 Error: no valid recipients"
		}
		return ""
	}}
	c := streamClient(t, srv, "PIPELINING CHUNKING", nil)
	var after []string
	for _, to := range []string{"a@x.test", "bad@x.test", "c@x.test"} {
		m := txnTo(to, "x\r\n")
		m.AfterRcpt = func() { after = append(after, to) }
		if err := c.Stream(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		m, _, st, err := c.Result()
		var se *Error
		switch {
		case err == nil && st == StageDot:
			got = append(got, m.To+" sent")
		case errors.As(err, &se) && st == StageRcpt && se.Code == 550 && se.Enhanced == "5.1.1":
			got = append(got, m.To+" refused")
		default:
			t.Fatalf("%s: %v %v", m.To, st, err)
		}
	}
	if strings.Join(got, ",") != "a@x.test sent,bad@x.test refused,c@x.test sent" || c.Broken() {
		t.Errorf("results %v, broken %v", got, c.Broken())
	}
	if strings.Join(after, ",") != "a@x.test,c@x.test" {
		t.Errorf("AfterRcpt for %v", after)
	}
}

// A 421 in the middle: the transaction it answers is refused with it, and
// those after it, of which the server read nothing, are at StageMail
// with an error that is not a reply, so no one counts it as a refusal.
func TestStream421InTheMiddle(t *testing.T) {
	srv := &chunkServer{reply: func(cmd string) string {
		if cmd == "MAIL FROM:<s@x.test> BODY=8BITMIME" {
			return ""
		}
		if cmd == "RCPT TO:<b@x.test>" {
			return "421 4.7.0 pipe.test Error: too many errors"
		}
		return ""
	}}
	c := streamClient(t, srv, "PIPELINING CHUNKING", nil)
	for _, to := range []string{"a@x.test", "b@x.test", "c@x.test"} {
		if err := c.Stream(txnTo(to, "x\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Flush()
	var got []string
	for range 3 {
		m, _, st, err := c.Result()
		code := 0
		var se *Error
		if errors.As(err, &se) {
			code = se.Code
		}
		got = append(got, m.To+":"+strconv.Itoa(int(st))+":"+strconv.Itoa(code))
	}
	want := "a@x.test:3:0,b@x.test:1:421,c@x.test:0:0" // c: not a reply (lostErr): the server did not refuse it
	if strings.Join(got, ",") != want || !c.Broken() {
		t.Errorf("got %v want %s, broken %v", got, want, c.Broken())
	}
}

// The connection drops with transactions in flight, before any reply: the
// ones whose bytes all went out are at StageDot (the server may have them:
// RFC 1047), the one cut short at StageData; none is reported sent.
func TestStreamResetInFlight(t *testing.T) {
	srv := &chunkServer{stopAfter: 2}
	c := streamClient(t, srv, "PIPELINING CHUNKING", nil)
	for _, to := range []string{"a@x.test", "b@x.test", "c@x.test"} {
		body := "x\r\n"
		if to == "c@x.test" {
			body = strings.Repeat("long line\r\n", 2000) // more than the server reads at once
		}
		if err := c.Stream(txnTo(to, body)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Flush()
	var got []string
	for range 3 {
		m, _, st, err := c.Result()
		got = append(got, m.To+":"+strconv.Itoa(int(st))+":"+strconv.FormatBool(err == nil))
	}
	// a, b: read, not answered: unknown. c: net.Pipe writes are
	// synchronous, so c's bytes went out only as far as the server read
	// them before it hung up, and its 22 kB are more than one read: the
	// write failed, and c is at StageData, never StageDot.
	if got[0] != "a@x.test:3:false" || got[1] != "b@x.test:3:false" || got[2] != "c@x.test:2:false" {
		t.Errorf("got %v", got)
	}
}

// BDAT refused as an unknown command although CHUNKING was offered: the
// session is done and says so, so the caller goes back to DATA.
func TestStreamBDATNotUnderstood(t *testing.T) {
	srv := &chunkServer{reply: func(cmd string) string {
		if strings.HasPrefix(cmd, "BDAT") {
			return "502 5.5.2 command not recognized"
		}
		return ""
	}}
	c := streamClient(t, srv, "PIPELINING CHUNKING", nil)
	if err := c.Stream(txnTo("a@x.test", "x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.Flush()
	_, _, st, err := c.Result()
	if err == nil || st != StageMail || !c.ChunkingFailed() || c.CanStream() {
		t.Errorf("stage %v err %v chunking failed %v", st, err, c.ChunkingFailed())
	}
}

// The trace shows the commands and the chunk's size, never its content.
func TestStreamTraceHidesContent(t *testing.T) {
	var out bytes.Buffer
	srv := &chunkServer{}
	c := streamClient(t, srv, "PIPELINING CHUNKING", NewTrace(&out))
	if err := c.Stream(txnTo("a@x.test", "Subject: secret plans\r\n\r\nthe body\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.Flush()
	if _, _, _, err := c.Result(); err != nil {
		t.Fatal(err)
	}
	tr := out.String()
	for _, want := range []string{"[1] <-  220 pipe.test ESMTP", "[1]  -> EHLO client.test", "[1]  -> RCPT TO:<a@x.test>",
		"[1]  -> BDAT 35 LAST", "[1]  -> <message content, 35 bytes, not shown>", "[1] <-  250 2.0.0 ok"} {
		if !strings.Contains(tr, want+"\n") {
			t.Errorf("trace lacks %q:\n%s", want, tr)
		}
	}
	if strings.Contains(tr, "secret plans") || strings.Contains(tr, "the body") {
		t.Errorf("trace shows the content:\n%s", tr)
	}
}

func TestContentSize(t *testing.T) {
	for _, in := range []string{"", "a", "a\n", "a\r\n", "a\nb", "a\r\nb\r\n", "\n\n", "a\r", ".\r\n..\n"} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		writeLines(w, []byte(in), false)
		w.Flush()
		if contentSize([]byte(in)) != b.Len() {
			t.Errorf("%q: size %d, written %d (%q)", in, contentSize([]byte(in)), b.Len(), b.String())
		}
		if b.Len() > 0 && (!strings.HasSuffix(b.String(), "\r\n") || strings.Contains(strings.ReplaceAll(b.String(), "\r\n", ""), "\n")) {
			t.Errorf("%q written %q: not CRLF lines", in, b.String())
		}
	}
}
