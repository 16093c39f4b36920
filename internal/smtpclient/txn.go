package smtpclient

import (
	"bufio"
	"bytes"
	"strings"
	"time"
)

// Stage is how far a transaction got; it decides what a failure means.
type Stage uint8

const (
	StageMail Stage = iota // RSET or MAIL FROM: nothing about the recipient was said
	StageRcpt              // RCPT TO
	StageData              // DATA and the message, before the final dot
	StageDot               // the final dot was written: the reply may have been lost
)

// Txn is one transaction to make.
type Txn struct {
	From, To string
	Data     []byte
	// BeforeRcpt is called before RCPT TO is sent: it waits for the
	// journal to hold the attempt. AfterRcpt, once the server took the
	// recipient, may queue the "data_sent" record, and BeforeDot waits for
	// it before the final dot: the fsync runs while the message goes out.
	BeforeRcpt, BeforeDot func() error
	AfterRcpt             func()
}

// HookError wraps the failure of a Txn hook (the sender's journal) met in
// the middle of a transaction.
type HookError struct{ Err error }

func (e HookError) Error() string { return e.Err.Error() }
func (e HookError) Unwrap() error { return e.Err }

// deliver runs one transaction. On failure it returns how far it got and
// the classified error; a journal failure comes back as HookError.
//
// When the server offers PIPELINING (RFC 2920) the commands up to DATA go
// out in one write and their replies are read in order, and the message
// and its final dot go in one more: two round trips per message instead of
// four. Without it, each command waits for its reply (RFC 5321 §4.1).
func (s *Client) Deliver(m *Txn) (string, Stage, error) { return s.DeliverThen(m, nil) }

// DeliverThen is deliver, and with PIPELINING it also starts next: next's
// MAIL, RCPT and DATA go out in the same write as m's final dot, since RFC
// 2920 §3.1 lets the message content begin a group. The delivery of next
// on this session then only reads their replies: one round trip per
// message. next's BeforeRcpt is called before its RCPT is buffered, as
// always, and should find the attempt on disk: m's dot would wait with it,
// so the caller offers next only when its record is durable.
func (s *Client) DeliverThen(m, next *Txn) (string, Stage, error) {
	s.Messages++
	if s.opened != nil && s.opened != m {
		// Another transaction was started here and left: the server waits
		// for its message, which only closing ends. Nothing of m was said.
		s.broken = true
		return "", StageMail, &Error{Command: "MAIL", Message: "the session is out of step (a transaction was left open)"}
	}
	utf8, err := s.addrs(m)
	if err != nil {
		return "", StageRcpt, err
	}
	var st Stage
	switch {
	case s.opened == m:
		s.opened = nil
		_ = s.conn.SetDeadline(time.Now().Add(s.to.Command))
		st, err = s.replies(m, false)
	case s.Has("PIPELINING"):
		st, err = s.pipelined(m, utf8)
	default:
		st, err = s.stepwise(m, utf8)
	}
	if err != nil {
		return "", st, err
	}
	return s.data(m, next)
}

// addrs checks what m's MAIL and RCPT commands would carry, and reports
// whether they need SMTPUTF8.
func (s *Client) addrs(m *Txn) (utf8 bool, err error) {
	utf8 = !isASCII(m.From) || !isASCII(m.To)
	switch {
	case utf8 && !s.Has("SMTPUTF8"):
		return false, &Error{Permanent: true, Command: "MAIL", Message: "the address is not ASCII and the server does not offer SMTPUTF8 (RFC 6531)"}
	case strings.ContainsAny(m.From, "\r\n") || strings.ContainsAny(m.To, "\r\n"):
		// It would end the command line early: what follows would be a
		// command of its own.
		return false, &Error{Permanent: true, Command: "MAIL", Message: "the address contains a line break"}
	}
	return utf8, nil
}

// pipelined sends [RSET,] MAIL, RCPT and DATA as one group and reads the
// replies.
func (s *Client) pipelined(m *Txn, utf8 bool) (Stage, error) {
	if m.BeforeRcpt != nil {
		// Before anything is buffered: on failure nothing may go out later.
		if err := m.BeforeRcpt(); err != nil {
			return StageMail, HookError{err}
		}
	}
	_ = s.conn.SetDeadline(time.Now().Add(s.to.Command))
	reset := s.dirty
	s.group(m, utf8, reset)
	if err := s.w.Flush(); err != nil {
		s.broken = true
		return StageMail, Classify("MAIL", err)
	}
	return s.replies(m, reset)
}

// group buffers [RSET,] MAIL, RCPT and DATA. RFC 2920 §3.1: DATA ends a
// group, since what follows depends on its reply.
func (s *Client) group(m *Txn, utf8, reset bool) {
	if reset {
		s.line("RSET")
	}
	s.writeMail(m.From, utf8)
	s.writeRcpt(m.To)
	s.line("DATA")
	s.dirty = true // until the reply to the dot says the transaction is over
}

// replies reads the replies to a group, in order, every one (RFC 2920
// §3.1: the client must check each), and calls AfterRcpt when all is well.
func (s *Client) replies(m *Txn, reset bool) (Stage, error) {
	steps := [...]struct {
		cmd string
		st  Stage
	}{{"RSET", StageMail}, {"MAIL", StageMail}, {"RCPT", StageRcpt}, {"DATA", StageData}}
	first := 1
	if reset {
		first = 0
	}
	var refused *Error
	var at Stage
	for _, step := range steps[first:] {
		code, msg, err := s.readReply()
		if err != nil {
			s.broken = true
			if refused != nil {
				return at, refused
			}
			return step.st, Classify(step.cmd, err)
		}
		ok := code/100 == 2
		if step.cmd == "DATA" {
			ok = code == 354
			if ok && refused != nil {
				// A refused MAIL or RCPT, yet DATA was accepted (RFC 2920
				// §3.1 says the server must refuse it): the server waits for
				// a message, and only closing the connection ends that
				// without delivering one.
				s.broken = true
			}
		}
		if !ok && refused == nil {
			refused, at = Classify(step.cmd, ReplyError(code, msg)), step.st
		}
		if code == 421 {
			// RFC 5321 §3.8: the server is closing; the rest of the group
			// gets no replies.
			s.broken = true
			break
		}
	}
	if refused != nil {
		return at, refused
	}
	if m.AfterRcpt != nil {
		m.AfterRcpt()
	}
	return StageData, nil
}

// stepwise sends [RSET,] MAIL, RCPT and DATA each after the reply to the
// one before, for a server without PIPELINING.
func (s *Client) stepwise(m *Txn, utf8 bool) (Stage, error) {
	step := func(cmd string, want int) error {
		_ = s.conn.SetDeadline(time.Now().Add(s.to.Command))
		if err := s.w.Flush(); err != nil {
			s.broken = true
			return Classify(cmd, err)
		}
		code, msg, err := s.readReply()
		switch {
		case err != nil:
			s.broken = true
			return Classify(cmd, err)
		case code == 421:
			s.broken = true
		}
		if code == want || (want == 250 && code/100 == 2) {
			return nil
		}
		return Classify(cmd, ReplyError(code, msg))
	}
	if s.dirty {
		s.line("RSET")
		if err := step("RSET", 250); err != nil {
			return StageMail, err
		}
		s.dirty = false
	}
	s.writeMail(m.From, utf8)
	s.dirty = true
	if err := step("MAIL", 250); err != nil {
		return StageMail, err
	}
	if m.BeforeRcpt != nil {
		if err := m.BeforeRcpt(); err != nil {
			return StageMail, HookError{err}
		}
	}
	s.writeRcpt(m.To)
	if err := step("RCPT", 250); err != nil {
		return StageRcpt, err
	}
	if m.AfterRcpt != nil {
		m.AfterRcpt()
	}
	s.line("DATA")
	if err := step("DATA", 354); err != nil {
		return StageData, err
	}
	return StageData, nil
}

func (s *Client) writeMail(from string, utf8 bool) {
	if s.tr != nil {
		s.tr.sent(mailLine(from, s.Has("8BITMIME"), utf8))
	}
	s.w.WriteString("MAIL FROM:<")
	s.w.WriteString(from)
	s.w.WriteByte('>')
	if s.Has("8BITMIME") {
		// As go-smtp's client did: the body may be 8-bit (RFC 6152).
		s.w.WriteString(" BODY=8BITMIME")
	}
	if utf8 {
		s.w.WriteString(" SMTPUTF8")
	}
	s.w.WriteString("\r\n")
}

// mailLine is the MAIL command writeMail writes, for the trace.
func mailLine(from string, eightBit, utf8 bool) string {
	l := "MAIL FROM:<" + from + ">"
	if eightBit {
		l += " BODY=8BITMIME"
	}
	if utf8 {
		l += " SMTPUTF8"
	}
	return l
}

func (s *Client) writeRcpt(to string) {
	if s.tr != nil {
		s.tr.sent("RCPT TO:<" + to + ">")
	}
	s.w.WriteString("RCPT TO:<")
	s.w.WriteString(to)
	s.w.WriteString(">\r\n")
}

// data sends the message and the final dot in one write, once the server
// said 354, and reads the reply. next, if it can be, is started in the same
// write (see DeliverThen).
func (s *Client) data(m, next *Txn) (string, Stage, error) {
	// RFC 5321 §4.5.3.2.5-6: the whole message, and the reply to the dot,
	// within the data timeout.
	_ = s.conn.SetDeadline(time.Now().Add(s.to.Data))
	if err := WriteData(s.w, m.Data); err != nil {
		s.broken = true
		return "", StageData, Classify("DATA", err)
	}
	s.tr.body(len(m.Data))
	if m.BeforeDot != nil {
		if err := m.BeforeDot(); err != nil {
			s.broken = true // in the middle of DATA: only closing ends it without a message
			return "", StageData, HookError{err}
		}
	}
	s.tr.sent(".")
	if _, err := s.w.WriteString(".\r\n"); err != nil {
		// An earlier part of the buffer failed to go out, so the dot did
		// not either: the server cannot have taken the message.
		s.broken = true
		return "", StageData, Classify("DATA", err)
	}
	dotEnd := s.w.Buffered()
	if next != nil && s.Has("PIPELINING") && s.Room() {
		// RFC 5321 §4.1.1.4: the dot ends the transaction whatever its
		// reply, so next needs no RSET.
		if utf8, err := s.addrs(next); err == nil && (next.BeforeRcpt == nil || next.BeforeRcpt() == nil) {
			s.group(next, utf8, false)
			s.opened = next
		}
	}
	buffered := s.w.Buffered()
	if err := s.w.Flush(); err != nil {
		s.broken = true
		// Bytes go out in order, and a failed Flush keeps those that did
		// not: if the dot's line was not all out, the server cannot have
		// taken the message; if it was, only the reply can tell.
		if buffered-s.w.Buffered() < dotEnd {
			return "", StageData, Classify("DATA", err)
		}
		return "", StageDot, Classify("DATA", err)
	}
	code, msg, err := s.readReply()
	if err != nil {
		s.broken = true
		return "", StageDot, Classify("DATA", err)
	}
	if code/100 != 2 {
		if code == 421 {
			s.broken = true
		}
		return "", StageDot, Classify("DATA", ReplyError(code, msg))
	}
	s.dirty = s.opened != nil
	return msg, StageDot, nil
}

// WriteData writes msg as the content of DATA (RFC 5321 §4.5.2): a line
// that starts with "." gets one more, a bare LF becomes CRLF (§2.3.8), and
// the content ends with CRLF so that the final "." stands on its own line.
// The error is the writer's first, if any.
func WriteData(w *bufio.Writer, msg []byte) error {
	writeLines(w, msg, true)
	// bufio.Writer keeps its first error and returns it from every call.
	_, err := w.Write(nil)
	return err
}

// writeLines writes msg with CRLF line ends, a final one added if missing,
// and with dotStuff a "." before every line that starts with one. DATA
// stuffs; a BDAT chunk does not, since its size, not a dot, ends it (RFC
// 3030 §2).
func writeLines(w *bufio.Writer, msg []byte, dotStuff bool) {
	for len(msg) > 0 {
		if dotStuff && msg[0] == '.' {
			w.WriteByte('.')
		}
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			w.Write(msg)
			w.WriteString("\r\n")
			return
		}
		if i > 0 && msg[i-1] == '\r' {
			w.Write(msg[:i+1])
		} else {
			w.Write(msg[:i])
			w.WriteString("\r\n")
		}
		msg = msg[i+1:]
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
