package smtpclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestParseReplies(t *testing.T) {
	raw := "220-mx.example ESMTP\r\n220 ready\r\n250-mx.example\r\n250-SIZE 1000\r\n250 STARTTLS\r\n\x16\x03\x01garbage"
	rs := ParseReplies([]byte(raw))
	if len(rs) != 2 || rs[0].Code != 220 || len(rs[0].Lines) != 2 || rs[1].Code != 250 {
		t.Fatalf("%+v", rs)
	}
	if GreetingHost(rs[0]) != "mx.example" || rs[0].String() != "220 mx.example ESMTP / ready" {
		t.Errorf("greeting %q %q", GreetingHost(rs[0]), rs[0].String())
	}
	caps := Capabilities(rs[1])
	if caps["SIZE"] != "1000" || len(caps) != 2 {
		t.Errorf("caps %v", caps)
	}
	for _, bad := range []string{"SSH-2.0-OpenSSH\r\n", "220-a\r\n221 b\r\n", "220 incomplete", "99 x\r\n"} {
		if rs := ParseReplies([]byte(bad)); len(rs) != 0 {
			t.Errorf("ParseReplies(%q) = %+v, want none", bad, rs)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err       error
		permanent bool
		code      int
		msg       string
	}{
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, true, 550, "no such user"},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}, false, 451, "try later"},
		{textproto.ProtocolError("short response: SSH"), true, 0, "not SMTP"},
		{syscall.ECONNREFUSED, false, 0, "connection refused"},
		{io.EOF, false, 0, "closed the connection"},
		{context.DeadlineExceeded, false, 0, "timeout"},
	}
	for _, c := range cases {
		e := Classify("RCPT", c.err)
		if e.Permanent != c.permanent || e.Code != c.code || !strings.Contains(e.Error(), c.msg) || !errors.Is(e, c.err) {
			t.Errorf("Classify(%v) = %+v (%q)", c.err, e, e.Error())
		}
	}
	if Classify("x", nil) != nil {
		t.Error("nil error classified")
	}
	e := Classify("MAIL", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "denied"})
	if e.Enhanced != "5.7.1" || e.Error() != "MAIL: 550 5.7.1 denied" {
		t.Errorf("%q", e.Error())
	}
}

// A deadline go-smtp sets (minutes) never reaches past the context's, and
// cancelling the context unblocks a read at once.
func TestConnClampsDeadlinesAndCancels(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("220 hi\r\n"))
			time.Sleep(3 * time.Second)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := DialConn(ctx, nil, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	start := time.Now()
	buf := make([]byte, 64)
	for {
		if _, err = c.Read(buf); err != nil {
			break
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("read blocked %s past a 300ms context", el)
	}
	if rs := c.Replies(); len(rs) != 1 || rs[0].Code != 220 {
		t.Errorf("transcript replies %+v", rs)
	}
}
