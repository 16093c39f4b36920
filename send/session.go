package send

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/smtpclient"
)

// dialSpec says how to open one session.
type dialSpec struct {
	Addr       string         // host:port to connect to
	ServerName string         // the name the server is known by (TLS SNI, messages)
	TLS        config.TLSMode // implicit, starttls, opportunistic or none
	TLSConfig  *tls.Config    // nil: no verification (direct mode, RFC 7435 opportunistic security)
	Helo       string
	// Auth, when set, makes a SASL client for AUTH (RFC 4954). It is called
	// only once TLS is up, or in clear with InsecureAuth.
	Auth         func() (sasl.Client, error)
	InsecureAuth bool
	Timeouts     Timeouts
	// MaxMessages is how many messages a session carries before it is
	// closed; 0: maxReuse.
	MaxMessages int
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
//
// It speaks SMTP itself over a bufio reader and writer instead of through
// go-smtp's Client, because sending fast needs what that client cannot do:
// MAIL, RCPT and DATA pipelined in one write (RFC 2920), and the message
// with its final dot in one more, which can also carry the next
// transaction's commands (txn.go). Errors are *smtpclient.Error; server replies
// inside them are *smtp.SMTPError, so smtpclient.Classify reads them as it reads
// go-smtp's own.
type session struct {
	raw  *smtpclient.Conn // the TCP connection, closed when the dial context ends
	conn net.Conn         // raw, or TLS over it
	r    *bufio.Reader
	w    *bufio.Writer
	spec *dialSpec
	to   Timeouts
	ext  map[string]string // EHLO keywords, upper case, and their parameters

	tls        bool
	fallback   bool // plaintext because TLS could not be set up (opportunistic)
	pipelining bool // PIPELINING offered (RFC 2920)
	utf8       bool // SMTPUTF8 offered (RFC 6531)
	eightBit   bool // 8BITMIME offered (RFC 6152)
	dirty      bool // a transaction may be open: RSET before the next (RFC 5321 §4.1.1.5)
	broken     bool // the connection failed or is out of step with the server: close it, no QUIT
	opened     *txn // started with the last dot: its replies are unread (see deliverThen)
	messages   int
	idle       time.Time // when it was last put down
	key        string    // direct mode: the recipient domain it serves
}

// maxReuse is how many messages one session carries before it is closed
// and a fresh one opened, as MTAs do: some servers start refusing (or
// leaking) after a few hundred transactions on one connection.
const maxReuse = 1000

// maxIdle is how long a session may rest and still be reused; servers drop
// idle clients after a few minutes (RFC 5321 §4.5.3.2.7), often sooner.
const maxIdle = 60 * time.Second

// maxLine bounds one reply line as the reader's buffer: RFC 5321
// §4.5.3.1.5 allows 512 octets; go-smtp's client allows 2000. A server
// sending an endless line gets a protocol error, not our memory.
const maxLine = 4096

// dial opens a session: TCP, TLS as the spec says, EHLO, AUTH. Every error
// is an *smtpclient.Error; a failed TLS handshake also wraps errTLSHandshake.
func dial(ctx context.Context, spec *dialSpec) (*session, error) {
	to := spec.Timeouts.withDefaults()
	raw, err := smtpclient.Dial(ctx, &net.Dialer{Timeout: to.Connect}, "tcp", spec.Addr)
	if err != nil {
		return nil, smtpclient.Classify("connect", err)
	}
	s := &session{raw: raw, conn: raw, spec: spec, to: to}
	if err := s.open(ctx); err != nil {
		s.closeNow()
		return nil, err
	}
	if spec.Auth != nil {
		if err := s.auth(); err != nil {
			s.closeNow()
			return nil, err
		}
	}
	return s, nil
}

func (s *session) open(ctx context.Context) error {
	spec := s.spec
	if spec.TLS == config.TLSImplicit {
		if err := s.handshake(ctx); err != nil {
			return err
		}
	}
	s.r = bufio.NewReaderSize(s.conn, maxLine)
	s.w = bufio.NewWriterSize(s.conn, 8<<10)
	if err := s.greeting(); err != nil {
		return err
	}
	if err := s.hello(); err != nil {
		return err
	}
	switch spec.TLS {
	case config.TLSImplicit, config.TLSNone, "":
		return nil
	}

	// STARTTLS (RFC 3207).
	if _, ok := s.ext["STARTTLS"]; !ok {
		if spec.TLS == config.TLSStartTLS {
			return &smtpclient.Error{Permanent: true, Command: "STARTTLS", Message: "the server does not offer STARTTLS and tls = \"starttls\" requires it"}
		}
		return nil
	}
	code, msg, err := s.cmd("STARTTLS")
	if err != nil {
		return smtpclient.Classify("STARTTLS", err)
	}
	if code != 220 {
		if spec.TLS == config.TLSOpportunistic && code != 421 {
			// "454 TLS not available" (RFC 3207 §4): the session goes on in
			// plaintext; opportunistic TLS accepts that.
			s.fallback = true
			return nil
		}
		return smtpclient.Classify("STARTTLS", smtpclient.ReplyError(code, msg))
	}
	if s.r.Buffered() > 0 {
		// Bytes after "220 ready" would be read as if they came over TLS:
		// the STARTTLS command injection of CVE-2011-0411.
		return &smtpclient.Error{Permanent: true, Command: "STARTTLS", Message: "the server sent data before the TLS handshake", Err: errTLSHandshake}
	}
	if err := s.handshake(ctx); err != nil {
		return err
	}
	s.r.Reset(s.conn)
	s.w.Reset(s.conn)
	// RFC 3207 §4.2: what was learnt before TLS is void; the server sends no
	// new greeting, and the client says EHLO again.
	return s.hello()
}

// handshake starts TLS on the connection now, so that its errors are told
// apart from the errors of the command after it.
func (s *session) handshake(ctx context.Context) error {
	cfg := s.spec.TLSConfig
	if cfg == nil {
		// RFC 7435 §1.3: opportunistic security encrypts without
		// authenticating; an MX certificate is often self-signed or names
		// another host, and refusing it would only push mail to plaintext.
		cfg = &tls.Config{InsecureSkipVerify: true, ServerName: s.spec.ServerName} //nolint:gosec // see above
	}
	tc := tls.Client(s.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.to.Connect)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		e := smtpclient.Classify("TLS", err)
		e.Err = fmt.Errorf("%w: %w", errTLSHandshake, err)
		return e
	}
	s.tls = true
	s.conn = tc
	return nil
}

// greeting reads the server's 220 (RFC 5321 §4.3.1); a 421 or 554 here is
// how a server turns a session away.
func (s *session) greeting() error {
	_ = s.conn.SetDeadline(time.Now().Add(s.to.Command))
	if err := smtpclient.ReadGreeting(s.r); err != nil {
		return err
	}
	return nil
}

// hello says EHLO, or HELO to a server that does not know EHLO (RFC 5321
// §4.1.4), and keeps the extensions offered.
func (s *session) hello() error {
	code, msg, err := s.cmd("EHLO " + s.spec.Helo)
	if err != nil {
		return smtpclient.Classify("EHLO", err)
	}
	s.ext = map[string]string{}
	switch {
	case code == 500 || code == 502:
		if code, msg, err = s.cmd("HELO " + s.spec.Helo); err != nil {
			return smtpclient.Classify("HELO", err)
		}
		if code != 250 {
			return smtpclient.Classify("HELO", smtpclient.ReplyError(code, msg))
		}
	case code != 250:
		return smtpclient.Classify("EHLO", smtpclient.ReplyError(code, msg))
	default:
		s.ext = smtpclient.EHLOCapabilities(msg)
	}
	_, s.pipelining = s.ext["PIPELINING"]
	_, s.utf8 = s.ext["SMTPUTF8"]
	_, s.eightBit = s.ext["8BITMIME"]
	return nil
}

// auth runs the SASL exchange of RFC 4954 §4.
func (s *session) auth() error {
	if !s.tls && !s.spec.InsecureAuth {
		return &smtpclient.Error{Permanent: true, Command: "AUTH", Message: "refusing to send the password without TLS (set insecure_auth = true to allow it)"}
	}
	if _, ok := s.ext["AUTH"]; !ok {
		return &smtpclient.Error{Permanent: true, Command: "AUTH", Message: "the server does not offer AUTH (RFC 4954)"}
	}
	a, err := s.spec.Auth()
	if err != nil {
		return &smtpclient.Error{Permanent: true, Command: "AUTH", Message: err.Error(), Err: err}
	}
	if err := smtpclient.Authenticate(s.cmd, a); err != nil {
		return err
	}
	return nil
}

// close ends the session politely when it can (QUIT, RFC 5321 §4.1.1.10,
// bounded by a short deadline) and closes the connection in any case.
func (s *session) close() {
	// With a transaction opened, the server waits for a message: QUIT would
	// be read as one. Closing ends it without a delivery.
	if !s.broken && s.opened == nil && s.w != nil {
		_ = s.conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, _, _ = s.cmd("QUIT")
	}
	s.closeNow()
}

func (s *session) closeNow() {
	s.broken = true
	_ = s.conn.Close() // TLS: also closes raw
	_ = s.raw.Close()
}

// usable reports whether the session may carry another message.
func (s *session) usable(now time.Time) bool {
	return !s.broken && s.messages < s.maxMessages() && (s.idle.IsZero() || now.Sub(s.idle) < maxIdle)
}

// maxMessages is how many messages the session may carry in all.
func (s *session) maxMessages() int {
	if s.spec != nil && s.spec.MaxMessages > 0 {
		return min(s.spec.MaxMessages, maxReuse)
	}
	return maxReuse
}

// cmd sends one command line and reads its reply, within the command
// timeout. err is a transport or protocol failure only: any reply code is
// returned. After a failure or a 421 (RFC 5321 §3.8: the server is closing)
// the session is broken.
func (s *session) cmd(line string) (int, string, error) {
	_ = s.conn.SetDeadline(time.Now().Add(s.to.Command))
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	if err := s.w.Flush(); err != nil {
		s.broken = true
		return 0, "", err
	}
	code, msg, err := s.readReply()
	if err != nil || code == 421 {
		s.broken = true
	}
	return code, msg, err
}

// readReply reads one reply (see smtpclient.ReadReply).
func (s *session) readReply() (int, string, error) { return smtpclient.ReadReply(s.r) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
