package smtpclient

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"net/textproto"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		name, in string
		code     int
		text     string
		protocol bool // a protocol error
	}{
		{"one line", "250 ok\r\n", 250, "ok", false},
		{"bare code", "250\r\n", 250, "", false},
		{"multi-line", "250-mx.example hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 250, "mx.example hello\nPIPELINING\nSIZE 1000", false},
		{"LF only", "220 hi\n", 220, "hi", false},
		{"code changes mid-reply", "250-a\r\n251 b\r\n", 0, "", true},
		{"not a reply", "HTTP/1.1 400 Bad Request\r\n", 0, "", true},
		{"code out of range", "199 what\r\n", 0, "", true},
		{"line past the buffer", "250 " + strings.Repeat("x", 5000) + "\r\n", 0, "", true},
		{"too many lines", strings.Repeat("250-x\r\n", MaxReplyLines+1) + "250 end\r\n", 0, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, text, err := ReadReply(bufio.NewReaderSize(strings.NewReader(c.in), 4096))
			var pe textproto.ProtocolError
			if c.protocol != errors.As(err, &pe) || code != c.code || text != c.text {
				t.Errorf("got %d %q %v", code, text, err)
			}
		})
	}
}

func TestReplyError(t *testing.T) {
	e := ReplyError(535, "5.7.8 Error: authentication failed:\n5.7.8 try again")
	if e.Code != 535 || e.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) || e.Message != "Error: authentication failed:\ntry again" {
		t.Errorf("%+v", e)
	}
	if e := ReplyError(421, "smtp.relay.test Error: too many connections"); e.EnhancedCode != smtp.NoEnhancedCode || e.Message != "smtp.relay.test Error: too many connections" {
		t.Errorf("%+v", e)
	}
	if e := ReplyError(450, "5.7.1 mismatched class"); e.EnhancedCode != smtp.NoEnhancedCode {
		t.Errorf("an enhanced code of another class is text: %+v", e)
	}
}

func TestEHLOCapabilities(t *testing.T) {
	caps := EHLOCapabilities("mx.example hi\nPIPELINING\nauth=LOGIN PLAIN\nSIZE 10240000")
	if caps["AUTH"] != "LOGIN PLAIN" || caps["SIZE"] != "10240000" {
		t.Errorf("%v", caps)
	}
	if _, ok := caps["PIPELINING"]; !ok {
		t.Errorf("%v", caps)
	}
	if caps := EHLOCapabilities("mx\nAUTH PLAIN\nAUTH=LOGIN"); caps["AUTH"] != "PLAIN" {
		t.Errorf("an AUTH line wins over AUTH=: %v", caps)
	}
}

// script answers Authenticate's lines as a server would: each entry is the
// line expected and the reply to it.
type script struct {
	t     *testing.T
	steps [][3]string // want line, reply code, reply text
	sent  []string
}

func (s *script) cmd(line string) (int, string, error) {
	s.sent = append(s.sent, line)
	if len(s.steps) == 0 {
		s.t.Fatalf("unexpected line %q", line)
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	if st[0] != "" && st[0] != line {
		s.t.Errorf("sent %q, want %q", line, st[0])
	}
	code := 0
	for _, c := range st[1] {
		code = code*10 + int(c-'0')
	}
	return code, st[2], nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestAuthenticate(t *testing.T) {
	for _, c := range []struct {
		name  string
		mech  string
		steps [][3]string
		fail  string // substring of the error; "" for success
	}{
		{"plain", "plain", [][3]string{{"AUTH PLAIN " + b64("\x00bob\x00s3cret"), "235", "2.7.0 ok"}}, ""},
		{"login asks by name", "LOGIN", [][3]string{
			{"AUTH LOGIN", "334", b64("Username:")}, {b64("bob"), "334", b64("Password:")}, {b64("s3cret"), "235", "ok"}}, ""},
		{"login asks in other words", "login", [][3]string{
			{"AUTH LOGIN", "334", b64("User Name")}, {b64("bob"), "334", b64("Pass Phrase")}, {b64("s3cret"), "235", "ok"}}, ""},
		{"login by turn", "login", [][3]string{
			{"AUTH LOGIN", "334", b64("?")}, {b64("bob"), "334", b64("?")}, {b64("s3cret"), "235", "ok"}}, ""},
		// RFC 2195 §2's example, with its user and secret.
		{"cram-md5", "CRAM-MD5", [][3]string{
			{"AUTH CRAM-MD5", "334", b64("<1896.697170952@postoffice.reston.mci.net>")},
			{b64("tim b913a602c7eda7a495b4e6e7334d3890"), "235", "ok"}}, ""},
		{"xoauth2 failure", "XOAUTH2", [][3]string{
			{"AUTH XOAUTH2 " + b64("user=bob\x01auth=Bearer s3cret\x01\x01"), "334", b64(`{"status":"401"}`)},
			{"", "535", "5.7.8 Username and Password not accepted"}}, "535 5.7.8 Username and Password not accepted"},
		{"refused", "plain", [][3]string{{"", "535", "5.7.8 Error: authentication failed"}}, "AUTH: 535 5.7.8 Error: authentication failed"},
		{"a challenge that is not base64 is cancelled", "login", [][3]string{{"AUTH LOGIN", "334", "!!!"}, {"*", "501", "cancelled"}}, "cancelled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			user, secret := "bob", "s3cret"
			if c.mech == "CRAM-MD5" {
				user, secret = "tim", "tanstaaftanstaaf"
			}
			sc, err := SASLClient(c.mech, user, secret)
			if err != nil {
				t.Fatal(err)
			}
			s := &script{t: t, steps: c.steps}
			aerr := Authenticate(s.cmd, sc)
			switch {
			case c.fail == "" && aerr != nil:
				t.Errorf("failed: %v", aerr)
			case c.fail != "" && (aerr == nil || !strings.Contains(aerr.Error(), c.fail)):
				t.Errorf("error %v, want %q", aerr, c.fail)
			case len(s.steps) > 0:
				t.Errorf("%d steps left", len(s.steps))
			}
			if aerr != nil && strings.Contains(aerr.Error(), secret) {
				t.Errorf("the error carries the secret: %v", aerr)
			}
		})
	}
	if _, err := SASLClient("GSSAPI", "u", "p"); err == nil {
		t.Error("an unknown mechanism was accepted")
	}
}

// FuzzReadReply holds ReadReply to ParseReplies, the transcript parser:
// where ReadReply reads a reply, ParseReplies finds the same code and text
// at the start of the same bytes.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "220\n", "250-a\r\n251 b\r\n", "550 5.1.1 no\r\nrest", "2500\r\n", "250-\r\n250 \r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		code, text, err := ReadReply(bufio.NewReaderSize(bytes.NewReader(b), 512))
		if err != nil {
			return
		}
		if code < 200 || code > 599 || strings.Count(text, "\n") >= MaxReplyLines {
			t.Fatalf("%q: code %d, %d lines", b, code, strings.Count(text, "\n")+1)
		}
		rs := ParseReplies(b)
		if len(rs) == 0 || rs[0].Code != code || rs[0].Text() != text {
			t.Fatalf("%q: ReadReply %d %q, ParseReplies %+v", b, code, text, rs)
		}
	})
}
