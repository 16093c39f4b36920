package smtpclient

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Reading replies, and the SASL exchange: the pieces under Client
// (session.go) that are plain functions of a reader or a command.

// MaxReplyLines bounds a multi-line reply; an EHLO reply has a dozen lines.
const MaxReplyLines = 100

// ReadReply reads one reply (RFC 5321 §4.2) from r: its code, and its text
// with the lines of a multi-line reply joined by newlines. A line longer
// than r's buffer, a line that is not a reply, or a continuation with
// another code is a protocol error: a broken or hostile server gets an
// error, not our memory.
func ReadReply(r *bufio.Reader) (int, string, error) {
	var code int
	var text []byte
	for n := 0; ; n++ {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = textproto.ProtocolError("a reply line longer than " + strconv.Itoa(r.Size()) + " bytes")
			}
			return 0, "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		c, ok := replyCode(line)
		if !ok || n >= MaxReplyLines || (n > 0 && c != code) {
			return 0, "", textproto.ProtocolError(fmt.Sprintf("%.100q", line))
		}
		code = c
		more := len(line) > 3 && line[3] == '-'
		rest := line[min(4, len(line)):]
		if n == 0 && !more {
			return code, string(rest), nil
		}
		if n > 0 {
			text = append(text, '\n')
		}
		text = append(text, rest...)
		if !more {
			return code, string(text), nil
		}
	}
}

// ReadGreeting reads the server's greeting (RFC 5321 §4.3.1): nil for a
// 220. A 421 or 554 here is how a server turns a session away.
func ReadGreeting(r *bufio.Reader) *Error {
	code, msg, err := ReadReply(r)
	if err != nil {
		return Classify("greeting", err)
	}
	if code != 220 {
		return Classify("greeting", ReplyError(code, msg))
	}
	return nil
}

// replyCode reads the three digits that start a reply line, followed by
// nothing, a space or a hyphen (RFC 5321 §4.2).
func replyCode(line []byte) (int, bool) {
	if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
		return 0, false
	}
	code := 0
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, code >= 200 && code < 600
}

// ReplyError makes a server reply into go-smtp's error type, which Classify
// reads, with the RFC 3463 enhanced status code taken off the front of each
// line when the first line starts with one whose class agrees with the code.
func ReplyError(code int, msg string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: msg}
	first, _, ok := strings.Cut(msg, " ")
	if !ok {
		return e
	}
	ec, ok := parseEnhanced(first, code)
	if !ok {
		return e
	}
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, first), " ")
	}
	e.EnhancedCode, e.Message = ec, strings.Join(lines, "\n")
	return e
}

// parseEnhanced reads "5.7.8": class, subject, detail (RFC 3463 §2).
func parseEnhanced(s string, code int) (smtp.EnhancedCode, bool) {
	p := strings.Split(s, ".")
	if len(p) != 3 {
		return smtp.EnhancedCode{}, false
	}
	var ec smtp.EnhancedCode
	for i := range p {
		n, err := strconv.Atoi(p[i])
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCode{}, false
		}
		ec[i] = n
	}
	if ec[0] != code/100 {
		return smtp.EnhancedCode{}, false
	}
	return ec, true
}

// Authenticate runs the SASL exchange of RFC 4954 §4 with c, sending each
// line through cmd (which writes it and reads the reply). The secret only
// goes out base64-encoded inside command lines; no error carries a line
// that was sent. A challenge the client cannot answer cancels the exchange
// with "*", which RFC 4954 allows only there.
func Authenticate(cmd func(line string) (int, string, error), c sasl.Client) *Error {
	mech, ir, err := c.Start()
	if err != nil {
		return &Error{Permanent: true, Command: "AUTH", Message: err.Error(), Err: err}
	}
	line := "AUTH " + mech
	if ir != nil {
		// RFC 4954 §4: an empty initial response is sent as "=".
		enc := base64.StdEncoding.EncodeToString(ir)
		if enc == "" {
			enc = "="
		}
		line += " " + enc
	}
	code, msg, err := cmd(line)
	for err == nil && code == 334 {
		var resp []byte
		challenge, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(msg))
		if derr == nil {
			resp, derr = c.Next(challenge)
		}
		if derr != nil {
			_, _, _ = cmd("*") // the server answers 501
			return &Error{Permanent: true, Command: "AUTH",
				Message: "AUTH " + mech + " cancelled: the server's challenge was not understood (" + derr.Error() + ")", Err: derr}
		}
		code, msg, err = cmd(base64.StdEncoding.EncodeToString(resp))
	}
	if err != nil {
		return Classify("AUTH", err)
	}
	if code != 235 {
		return Classify("AUTH", ReplyError(code, msg))
	}
	return nil
}
