package message

import (
	"bytes"
	"mime/quotedprintable"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// writeBody writes the header and the body. A text-only message, the
// common case, is written without message.CreateWriter: it would copy the
// header, parse back the Content-Type Render has just set, and pass a 7bit
// body through a line splitter that transferEncoding made needless (7bit
// means no line over 998 octets). Its header is still formatted (and
// folded) by go-message, and quoted-printable is the same encoder
// go-message would use. This halves the cost of a message (BenchmarkRender).
func writeBody(msg *bytes.Buffer, mh message.Header, text, html string, multipart bool) error {
	if !multipart {
		if err := textproto.WriteHeader(msg, mh.Header); err != nil {
			return err
		}
		if mh.Get("Content-Transfer-Encoding") == "7bit" {
			msg.Write(crlf(msg.AvailableBuffer(), text))
			return nil
		}
		qp := quotedprintable.NewWriter(msg)
		if _, err := qp.Write(crlf(nil, text)); err != nil {
			return err
		}
		return qp.Close()
	}
	w, err := message.CreateWriter(msg, mh)
	if err != nil {
		return err
	}
	for _, p := range []struct{ ctype, body string }{{"text/plain", text}, {"text/html", html}} {
		var ph message.Header
		ph.Set("Content-Transfer-Encoding", transferEncoding(p.body))
		ph.Set("Content-Type", p.ctype+"; charset=utf-8")
		pw, err := w.CreatePart(ph)
		if err != nil {
			return err
		}
		if _, err := pw.Write(crlf(nil, p.body)); err != nil {
			return err
		}
		if err := pw.Close(); err != nil {
			return err
		}
	}
	return w.Close()
}

// transferEncoding is 7bit when the body is ASCII with lines of at most 998
// octets (RFC 5322 §2.1.1), else quoted-printable (RFC 2045 §6.7), which
// keeps mostly-ASCII text readable and passes servers without 8BITMIME.
func transferEncoding(s string) string {
	lineLen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			lineLen = 0
			continue
		case c >= utf8.RuneSelf || c == 0:
			return "quoted-printable"
		}
		if lineLen++; lineLen > 998 {
			return "quoted-printable"
		}
	}
	return "7bit"
}

// normalizeNewlines turns CRLF and lone CR (from list values) into LF, so
// crlf can write every line ending the same way.
func normalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// crlf appends s to b with LF turned to CRLF: SMTP DATA (RFC 5321 §2.3.8)
// allows no bare LF.
func crlf(b []byte, s string) []byte {
	b = slices.Grow(b, len(s)+strings.Count(s, "\n"))
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return append(b, s...)
		}
		b = append(append(b, s[:i]...), '\r', '\n')
		s = s[i+1:]
	}
}
