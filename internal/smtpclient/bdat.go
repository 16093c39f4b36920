package smtpclient

import (
	"bytes"
	"errors"
	"strconv"
	"time"
)

// Streaming: several transactions in flight on one session.
//
// With DATA the content must wait for the 354, so a transaction costs at
// least one round trip. With CHUNKING (RFC 3030) the size of the content is
// declared in "BDAT n LAST", so the server can read it without answering
// first; with PIPELINING (RFC 2920) MAIL, RCPT and BDAT go out together.
// Stream buffers a whole transaction without waiting, Flush sends what is
// buffered, and Result reads the replies of the oldest transaction in
// flight: the server answers in order (RFC 2920 §3.1), so every reply maps
// to its transaction. A refused MAIL or RCPT does not break the stream:
// the server still reads the declared chunk (RFC 3030 §2) and answers it
// with an error, and the transaction is over (BDAT LAST ends it whatever
// the reply), so the next MAIL needs no RSET.

// streamed is one transaction in flight.
type streamed struct {
	m          *Txn
	reset      bool      // an RSET went before its MAIL
	start, end int64     // its first and last byte's place in the output (counter.n)
	at         time.Time // when it was buffered
}

// CanStream reports whether transactions may be streamed on this session:
// the server offers CHUNKING and PIPELINING, and BDAT has not misbehaved.
func (c *Client) CanStream() bool {
	return !c.noChunk && !c.broken && c.Has("CHUNKING") && c.Has("PIPELINING")
}

// ChunkingFailed reports that the server offered CHUNKING but refused BDAT
// as a command it does not know: the caller should use DATA with this
// server from now on.
func (c *Client) ChunkingFailed() bool { return c.noChunk }

// InFlight is how many streamed transactions have unread replies.
func (c *Client) InFlight() int { return len(c.stream) }

// Stream buffers m's MAIL, RCPT and "BDAT n LAST" with its content, and
// nothing goes out before Flush. m.BeforeRcpt and m.BeforeDot are called
// first: the caller's record must say the message may have gone before a
// byte of it does, since the server may take it before we read a reply.
// An error here means nothing of m was buffered.
func (c *Client) Stream(m *Txn) error {
	if c.broken || c.opened != nil {
		return &Error{Command: "MAIL", Message: "the session is closed or out of step", Err: errors.New("stream on a broken session")}
	}
	utf8, err := c.addrs(m)
	if err != nil {
		return err
	}
	for _, hook := range []func() error{m.BeforeRcpt, m.BeforeDot} {
		if hook != nil {
			if err := hook(); err != nil {
				return HookError{err}
			}
		}
	}
	c.Messages++
	e := streamed{m: m, reset: c.dirty, start: c.out.n + int64(c.w.Buffered()), at: time.Now()}
	if c.dirty {
		c.line("RSET") // a DATA transaction was left open (DeliverThen)
		c.dirty = false
	}
	c.writeMail(m.From, utf8)
	c.writeRcpt(m.To)
	n := contentSize(m.Data)
	c.line("BDAT " + strconv.Itoa(n) + " LAST")
	c.tr.body(n)
	writeLines(c.w, m.Data, false) // the chunk: CRLF lines, no dot-stuffing (RFC 3030 §2)
	e.end = c.out.n + int64(c.w.Buffered())
	c.stream = append(c.stream, e)
	return nil
}

// Flush sends what Stream buffered, within the data timeout.
func (c *Client) Flush() error {
	if c.w.Buffered() == 0 {
		return nil
	}
	_ = c.conn.SetDeadline(time.Now().Add(c.to.Data))
	if err := c.w.Flush(); err != nil {
		c.broken = true
		c.failed = Classify("BDAT", err)
		return c.failed
	}
	return nil
}

// Result reads the replies of the oldest transaction in flight and says
// what became of it: the reply to BDAT and StageDot when the server took
// the message; else the first refusal and its stage, or what went wrong.
//
// Once the connection failed, the transactions still in flight get no
// reply: one whose every byte went out is at StageDot (the server may have
// it, RFC 1047), one cut short at StageData, one of which nothing went out
// at StageMail. After a 421 (RFC 5321 §3.8) the server read nothing more:
// the rest are at StageMail with the 421.
func (c *Client) Result() (*Txn, string, Stage, error) {
	e := c.stream[0]
	c.stream[0] = streamed{}
	c.stream = c.stream[1:]
	if c.broken {
		return e.m, "", c.lost(e), c.lostErr()
	}
	_ = c.conn.SetDeadline(time.Now().Add(c.to.Data))
	steps := [...]struct {
		cmd string
		st  Stage
	}{{"RSET", StageMail}, {"MAIL", StageMail}, {"RCPT", StageRcpt}, {"BDAT", StageDot}}
	first := 1
	if e.reset {
		first = 0
	}
	var refused *Error
	var at Stage
	for _, step := range steps[first:] {
		code, msg, err := c.readReply()
		if err != nil {
			c.failed = Classify(step.cmd, err)
			if refused != nil {
				return e.m, "", at, refused
			}
			return e.m, "", c.lost(e), c.failed
		}
		if code == 421 {
			c.failed = Classify(step.cmd, ReplyError(code, msg))
			if refused == nil {
				refused, at = c.failed, step.st
				if step.st == StageDot {
					at = StageData // refused: the server does not have it
				}
			}
			return e.m, "", at, refused
		}
		if step.cmd == "BDAT" && (code == 500 || code == 502 || code == 504) && refused == nil {
			// CHUNKING offered, BDAT not understood: the server may now
			// read the content as commands. Done with this session; the
			// caller uses DATA from now on.
			c.noChunk, c.broken = true, true
			c.failed = Classify("BDAT", ReplyError(code, msg))
			return e.m, "", StageMail, c.failed
		}
		if code/100 != 2 && refused == nil {
			refused, at = Classify(step.cmd, ReplyError(code, msg)), step.st
			if step.st == StageDot {
				at = StageData
			}
		}
		if step.cmd == "RCPT" && refused == nil && e.m.AfterRcpt != nil {
			e.m.AfterRcpt()
		}
		if step.cmd == "BDAT" && refused == nil {
			return e.m, msg, StageDot, nil
		}
	}
	return e.m, "", at, refused
}

// lost is the stage of a transaction whose replies will not come: how far
// its bytes got before the connection failed.
func (c *Client) lost(e streamed) Stage {
	if c.noChunk || (c.failed != nil && c.failed.Code == 421) {
		// After a 421 the server read no further (RFC 5321 §3.8); after a
		// BDAT it did not know, it read our content as commands, and
		// without DATA's 354 none of it became a message.
		return StageMail
	}
	switch sent := c.out.n; {
	case sent >= e.end:
		return StageDot
	case sent > e.start:
		return StageData
	}
	return StageMail
}

// lostErr says why a transaction in flight got no reply. It is never a
// reply itself: the server did not refuse this transaction (after a 421 it
// read no further), so no caller may count it as a refusal.
func (c *Client) lostErr() error {
	why := "the connection failed"
	if c.failed != nil {
		why = "the session ended (" + c.failed.Error() + ")"
	}
	return &Error{Command: "BDAT", Message: why + " before the server answered this transaction", Err: errLost}
}

// errLost marks a streamed transaction whose replies will not come.
var errLost = errors.New("no reply: the session ended")

// contentSize is the size of msg as a BDAT chunk (writeLines, no
// dot-stuffing).
func contentSize(msg []byte) int {
	n := len(msg) + bytes.Count(msg, []byte{'\n'}) - bytes.Count(msg, []byte("\r\n"))
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		n += 2
	}
	return n
}
