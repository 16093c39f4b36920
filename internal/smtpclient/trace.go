package smtpclient

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
)

// Trace writes SMTP conversations the way swaks shows them, which is what
// mail admins ask for first when something fails: "<-" for what the server
// sent, " ->" for what we sent, "===" for what happened around it, each
// line led by the session's number, since sessions run at once.
//
// Nothing secret is written: every line we send during AUTH (RFC 4954 §4:
// the initial response and the answers to challenges carry the password or
// the OAuth token, base64 is no cover) is replaced by a placeholder, and a
// message's content by its size.
type Trace struct {
	mu sync.Mutex
	w  io.Writer
	n  atomic.Int64
}

// NewTrace writes conversations to w; nil w gives nil (no trace).
func NewTrace(w io.Writer) *Trace {
	if w == nil {
		return nil
	}
	return &Trace{w: w}
}

// ConnectFailed traces a connection to addr that a caller made itself
// (to time it, or to dial through its own dialer) and that failed: the
// session that never began still shows in the trace.
func (t *Trace) ConnectFailed(addr string, err error) {
	t.session(addr).note("connect failed: %v", err)
}

// Hidden is what stands in the trace for a secret.
const Hidden = "<hidden>"

// traceSession is one session's view of a Trace; nil writes nothing.
type traceSession struct {
	t      *Trace
	id     int64
	addr   string
	secret bool // inside AUTH: what we send is hidden
}

func (t *Trace) session(addr string) *traceSession {
	if t == nil {
		return nil
	}
	return &traceSession{t: t, id: t.n.Add(1), addr: addr}
}

func (s *traceSession) write(lines ...string) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintf(s.t.w, "[%d] %s\n", s.id, l)
	}
}

func (s *traceSession) note(format string, args ...any) {
	if s == nil {
		return
	}
	s.write("=== " + s.addr + ": " + fmt.Sprintf(format, args...))
}

// hide says whether what we send from now on is secret (AUTH).
func (s *traceSession) hide(on bool) {
	if s != nil {
		s.secret = on
	}
}

// sent traces one command line; during AUTH the line becomes a
// placeholder, keeping "AUTH MECH" so the trace still says which.
func (s *traceSession) sent(line string) {
	if s == nil {
		return
	}
	if s.secret {
		if mech, ok := strings.CutPrefix(line, "AUTH "); ok {
			name, _, hasIR := strings.Cut(mech, " ")
			if hasIR {
				line = "AUTH " + name + " " + Hidden
			}
		} else if line != "*" {
			line = Hidden
		}
	}
	s.write(" -> " + line)
}

// body traces a message's content (or one chunk of it) by its size.
func (s *traceSession) body(n int) {
	if s == nil {
		return
	}
	s.write(fmt.Sprintf(" -> <message content, %d bytes, not shown>", n))
}

// received traces one reply, every line as the server sent it.
func (s *traceSession) received(code int, msg string) {
	if s == nil {
		return
	}
	lines := strings.Split(msg, "\n")
	out := make([]string, len(lines))
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		out[i] = fmt.Sprintf("<-  %d%s%s", code, sep, l)
	}
	s.write(out...)
}
