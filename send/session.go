package send

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailroute/mailroute/internal/smtpx"
)

// dialSpec says how to open one session.
type dialSpec struct {
	Addr       string      // host:port to connect to
	ServerName string      // the name the server is known by (TLS SNI, messages)
	TLS        TLSMode     // implicit, starttls, opportunistic or none
	TLSConfig  *tls.Config // nil: no verification (direct mode, RFC 7435 opportunistic security)
	Helo       string
	// Auth, when set, makes a SASL client for AUTH (RFC 4954). It is called
	// only once TLS is up, or in clear with InsecureAuth.
	Auth         func() (sasl.Client, error)
	InsecureAuth bool
	Timeouts     Timeouts
}

// Timeouts bound each step of a session. go-smtp's own defaults (5 and 12
// minutes) are the RFC 5321 §4.5.3.2 values; ours default to the same.
type Timeouts struct {
	Connect time.Duration // TCP connect and TLS handshake
	Command time.Duration // each command's reply, and the greeting (RFC 5321 §4.5.3.2: 5 min)
	Data    time.Duration // sending the message and the reply to the final dot (§4.5.3.2.5-6: 3 + 10 min)
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Connect <= 0 {
		t.Connect = 30 * time.Second
	}
	if t.Command <= 0 {
		t.Command = 5 * time.Minute
	}
	if t.Data <= 0 {
		t.Data = 10 * time.Minute
	}
	return t
}

// errTLSHandshake marks a failed TLS handshake: the one failure after which
// opportunistic TLS may try again in plaintext.
var errTLSHandshake = errors.New("TLS handshake failed")

// session is one SMTP connection, reused for message after message.
type session struct {
	c        *smtp.Client
	wire     *wireConn
	spec     *dialSpec
	tls      bool
	fallback bool // plaintext because TLS could not be set up (opportunistic)
	utf8     bool // SMTPUTF8 offered (RFC 6531)
	dirty    bool // the last transaction failed: RSET before the next (RFC 5321 §4.1.1.5)
	messages int
	idle     time.Time // when it was last put down
	key      string    // direct mode: the recipient domain it serves
}

// maxReuse is how many messages one session carries before it is closed
// and a fresh one opened, as MTAs do: some servers start refusing (or
// leaking) after a few hundred transactions on one connection.
const maxReuse = 1000

// maxIdle is how long a session may rest and still be reused; servers drop
// idle clients after a few minutes (RFC 5321 §4.5.3.2.7), often sooner.
const maxIdle = 60 * time.Second

// dial opens a session: TCP, TLS as the spec says, EHLO, AUTH. Every error
// is an *smtpx.Error; a failed TLS handshake also wraps errTLSHandshake.
func dial(ctx context.Context, spec *dialSpec) (*session, error) {
	to := spec.Timeouts.withDefaults()
	raw, err := smtpx.Dial(ctx, &net.Dialer{Timeout: to.Connect}, "tcp", spec.Addr)
	if err != nil {
		return nil, smtpx.Classify("connect", err)
	}
	s := &session{wire: &wireConn{Conn: raw}, spec: spec}
	if err := s.open(ctx, to); err != nil {
		_ = raw.Close()
		return nil, err
	}
	s.c.CommandTimeout = to.Command
	s.c.SubmissionTimeout = to.Data
	s.utf8, _ = s.c.Extension("SMTPUTF8")
	if spec.Auth != nil {
		if err := s.auth(); err != nil {
			_ = raw.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *session) open(ctx context.Context, to Timeouts) error {
	spec := s.spec
	switch spec.TLS {
	case TLSImplicit:
		tc, err := s.handshake(ctx, to)
		if err != nil {
			return err
		}
		return s.hello(smtp.NewClient(tc), to)
	case TLSNone, "":
		return s.hello(smtp.NewClient(s.wire), to)
	}

	// STARTTLS (RFC 3207). go-smtp v0.25 can only do it after an EHLO as
	// "localhost" and hides the handshake inside its next command, so we
	// speak the plaintext part ourselves and hand go-smtp the connection
	// after it, with a stand-in greeting (the server sends none after TLS
	// starts, §4.2) so that it says EHLO again, as §4.2 requires anyway.
	_ = s.wire.SetDeadline(time.Now().Add(to.Command))
	tp := textproto.NewConn(s.wire)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return smtpx.Classify("greeting", replyError(err))
	}
	ext, err := rawEHLO(tp, spec.Helo)
	if err != nil {
		return err
	}
	if _, ok := ext["STARTTLS"]; !ok {
		if spec.TLS == TLSStartTLS {
			return &smtpx.Error{Permanent: true, Command: "STARTTLS", Message: "the server does not offer STARTTLS and tls = \"starttls\" requires it"}
		}
		return s.hello(smtp.NewClient(greeted(s.wire, spec.ServerName)), to)
	}
	id, err := tp.Cmd("STARTTLS")
	if err != nil {
		return smtpx.Classify("STARTTLS", err)
	}
	tp.StartResponse(id)
	_, _, err = tp.ReadResponse(220)
	tp.EndResponse(id)
	if err != nil {
		var te *textproto.Error
		if spec.TLS == TLSOpportunistic && errors.As(err, &te) {
			// "454 TLS not available" (RFC 3207 §4): the session goes on in
			// plaintext; opportunistic TLS accepts that.
			s.fallback = true
			return s.hello(smtp.NewClient(greeted(s.wire, spec.ServerName)), to)
		}
		return smtpx.Classify("STARTTLS", replyError(err))
	}
	if tp.R.Buffered() > 0 {
		// Bytes after "220 ready" would be read as if they came over TLS:
		// the STARTTLS command injection of CVE-2011-0411.
		return &smtpx.Error{Permanent: true, Command: "STARTTLS", Message: "the server sent data before the TLS handshake", Err: errTLSHandshake}
	}
	tc, err := s.handshake(ctx, to)
	if err != nil {
		return err
	}
	return s.hello(smtp.NewClient(greeted(tc, spec.ServerName)), to)
}

// handshake starts TLS on the wire now, so that its errors are told apart
// from the errors of the command after it.
func (s *session) handshake(ctx context.Context, to Timeouts) (*tls.Conn, error) {
	cfg := s.spec.TLSConfig
	if cfg == nil {
		// RFC 7435 §1.3: opportunistic security encrypts without
		// authenticating; an MX certificate is often self-signed or names
		// another host, and refusing it would only push mail to plaintext.
		cfg = &tls.Config{InsecureSkipVerify: true, ServerName: s.spec.ServerName} //nolint:gosec // see above
	}
	tc := tls.Client(s.wire, cfg)
	hctx, cancel := context.WithTimeout(ctx, to.Connect)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		e := smtpx.Classify("TLS", err)
		e.Err = fmt.Errorf("%w: %w", errTLSHandshake, err)
		return nil, e
	}
	s.tls = true
	return tc, nil
}

func (s *session) hello(c *smtp.Client, to Timeouts) error {
	c.CommandTimeout = to.Command
	s.c = c
	if err := c.Hello(s.spec.Helo); err != nil {
		return smtpx.Classify("EHLO", err)
	}
	return nil
}

func (s *session) auth() error {
	if !s.tls && !s.spec.InsecureAuth {
		return &smtpx.Error{Permanent: true, Command: "AUTH", Message: "refusing to send the password without TLS (set insecure_auth = true to allow it)"}
	}
	if ok, _ := s.c.Extension("AUTH"); !ok {
		return &smtpx.Error{Permanent: true, Command: "AUTH", Message: "the server does not offer AUTH (RFC 4954)"}
	}
	a, err := s.spec.Auth()
	if err != nil {
		return &smtpx.Error{Permanent: true, Command: "AUTH", Message: err.Error(), Err: err}
	}
	if err := s.c.Auth(a); err != nil {
		return smtpx.Classify("AUTH", err)
	}
	return nil
}

// close ends the session politely when it can (QUIT, bounded by a short
// deadline) and closes the connection in any case.
func (s *session) close() {
	_ = s.wire.SetDeadline(time.Now().Add(2 * time.Second))
	if !s.dirty {
		_ = s.c.Quit()
	}
	_ = s.c.Close()
}

// usable reports whether the session may carry another message.
func (s *session) usable(now time.Time) bool {
	return s.messages < maxReuse && (s.idle.IsZero() || now.Sub(s.idle) < maxIdle)
}

// stage is how far a transaction got; it decides what a failure means.
type stage uint8

const (
	stageMail stage = iota // RSET or MAIL FROM: nothing about the recipient was said
	stageRcpt              // RCPT TO
	stageData              // DATA and the message, before the final dot
	stageDot               // the final dot was written: the reply may have been lost
)

// txn is one transaction to make.
type txn struct {
	From, To string
	Data     []byte
	// BeforeRcpt is called after MAIL and before RCPT: it waits for the
	// journal to hold the attempt. AfterRcpt, once the server took the
	// recipient, queues the "data_sent" record, and BeforeDot waits for it
	// before the final dot: the fsync runs while DATA and the message go out.
	BeforeRcpt, BeforeDot func() error
	AfterRcpt             func()
}

// errJournal wraps a journal failure met in the middle of a transaction.
type errJournal struct{ err error }

func (e errJournal) Error() string { return e.err.Error() }
func (e errJournal) Unwrap() error { return e.err }

// deliver runs one transaction. On failure it returns how far it got and
// the classified error; a journal failure comes back as errJournal.
func (s *session) deliver(m *txn) (reply string, st stage, err error) {
	c := s.c
	s.messages++
	if s.dirty {
		if err := c.Reset(); err != nil {
			return "", stageMail, smtpx.Classify("RSET", err)
		}
		s.dirty = false
	}
	var opts *smtp.MailOptions
	if !isASCII(m.From) || !isASCII(m.To) {
		if !s.utf8 {
			s.dirty = true
			return "", stageRcpt, &smtpx.Error{Permanent: true, Command: "MAIL", Message: "the address is not ASCII and the server does not offer SMTPUTF8 (RFC 6531)"}
		}
		opts = &smtp.MailOptions{UTF8: true}
	}
	if err := c.Mail(m.From, opts); err != nil {
		s.dirty = true
		return "", stageMail, smtpx.Classify("MAIL", err)
	}
	if m.BeforeRcpt != nil {
		if err := m.BeforeRcpt(); err != nil {
			s.dirty = true
			return "", stageMail, errJournal{err}
		}
	}
	if err := c.Rcpt(m.To, nil); err != nil {
		s.dirty = true
		return "", stageRcpt, smtpx.Classify("RCPT", err)
	}
	if m.AfterRcpt != nil {
		m.AfterRcpt()
	}
	w, err := c.Data()
	if err != nil {
		s.dirty = true
		return "", stageData, smtpx.Classify("DATA", err)
	}
	// go-smtp sets no deadline while the message is written; a server that
	// stops reading would hold us for ever.
	_ = s.wire.SetDeadline(time.Now().Add(s.spec.Timeouts.withDefaults().Data))
	if _, err := w.Write(m.Data); err != nil {
		s.dirty = true
		return "", stageData, smtpx.Classify("DATA", err)
	}
	if m.BeforeDot != nil {
		if err := m.BeforeDot(); err != nil {
			s.dirty = true
			return "", stageData, errJournal{err}
		}
	}
	s.wire.failed.Store(false)
	resp, err := w.CloseWithResponse()
	if err != nil {
		s.dirty = true
		if s.wire.failed.Load() {
			// The write of the final dot failed: the server cannot have
			// taken the message.
			return "", stageData, smtpx.Classify("DATA", err)
		}
		return "", stageDot, smtpx.Classify("DATA", err)
	}
	return resp.StatusText, stageDot, nil
}

// wireConn notes write failures, to tell "the dot never left" from "the
// reply to the dot was lost".
type wireConn struct {
	net.Conn
	failed atomic.Bool
}

func (w *wireConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil {
		w.failed.Store(true)
	}
	return n, err
}

// greetedConn replays a greeting before the connection's own bytes, for a
// go-smtp client started after the real greeting was read.
type greetedConn struct {
	net.Conn
	pre []byte
}

func greeted(c net.Conn, name string) *greetedConn {
	if name == "" {
		name = "server"
	}
	return &greetedConn{Conn: c, pre: []byte("220 " + name + " ESMTP\r\n")}
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pre) > 0 {
		n := copy(p, g.pre)
		g.pre = g.pre[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// rawEHLO says EHLO (HELO when the server does not know EHLO, RFC 5321
// §4.1.4) on a plain textproto connection and returns the extensions.
func rawEHLO(tp *textproto.Conn, helo string) (map[string]string, error) {
	ext := map[string]string{}
	_, msg, err := rawCmd(tp, 250, "EHLO "+helo)
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) && (te.Code == 500 || te.Code == 502) {
			if _, _, err := rawCmd(tp, 250, "HELO "+helo); err != nil {
				return nil, smtpx.Classify("HELO", replyError(err))
			}
			return ext, nil
		}
		return nil, smtpx.Classify("EHLO", replyError(err))
	}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		kw, param, _ := strings.Cut(strings.TrimSpace(l), " ")
		ext[strings.ToUpper(kw)] = param
	}
	return ext, nil
}

func rawCmd(tp *textproto.Conn, expect int, line string) (int, string, error) {
	id, err := tp.Cmd("%s", line)
	if err != nil {
		return 0, "", err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	return tp.ReadResponse(expect)
}

// replyError turns a textproto reply error into go-smtp's, which smtpx
// classifies (enhanced code included, RFC 3463).
func replyError(err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	se := &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	if code, rest, ok := strings.Cut(te.Msg, " "); ok {
		if p := strings.Split(code, "."); len(p) == 3 {
			var ec smtp.EnhancedCode
			good := true
			for i := range p {
				n, err := strconv.Atoi(p[i])
				good = good && err == nil
				ec[i] = n
			}
			if good {
				se.EnhancedCode, se.Message = ec, rest
			}
		}
	}
	return se
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
