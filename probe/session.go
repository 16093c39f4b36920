package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// relaySession is one SMTP session with a relay, set up the way a sender
// would: connect, TLS per the endpoint's mode, EHLO, AUTH. The login check
// and the relay measurement share it.
//
// It speaks SMTP itself over net/textproto instead of through go-smtp's
// Client, because the measurement needs what that client hides or adds:
//   - go-smtp's Reset forgets the EHLO, so every MAIL after a RSET would be
//     preceded by a fresh EHLO: one more round trip per transaction, and
//     MAIL timings that include it;
//   - after a refused AUTH it sends "*", which RFC 4954 §4 allows only as
//     an answer to a 334 challenge; Postfix answers 502 and counts an error;
//   - its EHLO before STARTTLS is always "localhost", and its TLS handshake
//     happens lazily, so a certificate failure surfaces on a later command.
//
// Errors are *smtpclient.Error; server replies inside them come from
// *smtp.SMTPError, so smtpclient.Classify treats them like go-smtp's own.
type relaySession struct {
	p       *Prober
	name    string           // TLS server name: the endpoint's host (or address)
	raw     *smtpclient.Conn // the TCP connection, bounded by the caller's context
	conn    net.Conn         // raw, or the TLS connection over it
	text    *textproto.Conn
	timeout time.Duration // per command
	broken  bool          // the connection failed or the server said 421

	ext     map[string]string // EHLO capabilities, upper-case keywords
	tls     bool
	offered []string // AUTH mechanisms of the last EHLO
	mech    string   // the mechanism used

	setupTLS  time.Duration // STARTTLS + handshake, or the implicit handshake
	setupAuth time.Duration // the whole AUTH exchange
	refusals  int           // 4xx/5xx replies in this session (Postfix slows down, then hangs up, after too many)
}

// dial connects the way every probe connection does: through DialContext
// when set (a lab test's namespace dialer), else through Dialer.
func (p *Prober) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.DialContext != nil {
		return p.DialContext(ctx, network, addr)
	}
	return p.dialer().DialContext(ctx, network, addr)
}

// openSession connects to e and sets the session up; cred nil means no
// AUTH. On failure it returns the (closed) session too, for what was learnt
// before the failure (the AUTH mechanisms offered), and an *smtpclient.Error.
func (p *Prober) openSession(ctx context.Context, e *Endpoint, cred *Credentials) (*relaySession, *smtpclient.Error) {
	host := e.Addr
	if host == "" {
		host = e.Host
	}
	s := &relaySession{p: p, name: e.Host, timeout: 2 * p.Timeout}
	if s.name == "" {
		s.name = host
	}
	dctx, cancel := context.WithTimeout(ctx, p.Timeout)
	conn, err := p.dial(dctx, "tcp", net.JoinHostPort(host, strconv.Itoa(e.Port)))
	cancel()
	if err != nil {
		_, words := connectVerdict(err)
		if ctx.Err() != nil {
			words = "cancelled"
		}
		return s, &smtpclient.Error{Command: "connect", Message: words, Err: err}
	}
	s.raw = smtpclient.Wrap(ctx, conn)
	s.conn = s.raw
	if err := s.setup(ctx, e.TLSMode, cred); err != nil {
		s.Close()
		return s, err
	}
	return s, nil
}

func (s *relaySession) setup(ctx context.Context, mode string, cred *Credentials) *smtpclient.Error {
	secret := cred != nil
	if mode == "implicit" {
		t := time.Now()
		if err := s.handshake(ctx, secret); err != nil {
			return err
		}
		s.setupTLS = time.Since(t)
	}
	s.text = textproto.NewConn(s.conn)
	if err := s.greeting(); err != nil {
		return err
	}
	if err := s.hello(); err != nil {
		return err
	}
	if mode != "implicit" {
		_, offered := s.ext["STARTTLS"]
		useTLS := offered && mode != "none"
		if useTLS {
			t := time.Now()
			if _, err := s.expect("STARTTLS", 220, "STARTTLS"); err != nil {
				return err
			}
			if err := s.handshake(ctx, secret); err != nil {
				return err
			}
			s.setupTLS = time.Since(t)
			// RFC 3207 §4.2: everything learnt before TLS is void; ask again.
			s.text = textproto.NewConn(s.conn)
			if err := s.hello(); err != nil {
				return err
			}
		}
		if !useTLS && secret && !cred.InsecureAuth {
			why := "the server does not offer STARTTLS"
			if mode == "none" {
				why = "TLS mode is none"
			}
			return &smtpclient.Error{Command: "AUTH", Permanent: true,
				Message: why + ": refusing to send the password in clear (allow it with --insecure-auth)"}
		}
	}
	if secret {
		return s.auth(*cred)
	}
	return nil
}

// handshake starts TLS on the connection now, not lazily on the next
// command, so that a certificate failure stops the session before AUTH.
// When a secret follows, the certificate must verify against the Prober's
// roots for the endpoint's host name; otherwise (a measurement without a
// login) any certificate is accepted.
func (s *relaySession) handshake(ctx context.Context, verify bool) *smtpclient.Error {
	cfg := &tls.Config{ServerName: s.name, RootCAs: s.p.Roots, Time: s.p.Now, InsecureSkipVerify: !verify}
	tc := tls.Client(s.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		s.broken = true
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) && len(cve.UnverifiedCertificates) > 0 {
			words := certErrorWords(cve.Err, cve.UnverifiedCertificates[0], s.p.now())
			return &smtpclient.Error{Command: "TLS", Permanent: true, Message: "TLS certificate not accepted: " + words, Err: err}
		}
		// A server that answers in plaintext on a TLS port: show its words
		// (a 421 refusal reads better than a garbled handshake).
		if replies := s.raw.Replies(); len(replies) > 0 {
			r := replies[0]
			if r.Code != 220 {
				return smtpclient.Classify("greeting", smtpclient.ReplyError(r.Code, r.Text()))
			}
			return &smtpclient.Error{Command: "TLS", Permanent: true, Message: "expected TLS from the first byte, got a plaintext greeting: " + r.String(), Err: err}
		}
		return smtpclient.Classify("TLS", err)
	}
	s.conn, s.tls = tc, true
	return nil
}

// greeting reads the server's 220 (RFC 5321 §4.3.1); a 421 or 554 here is
// how a server turns a session away.
func (s *relaySession) greeting() *smtpclient.Error {
	_ = s.conn.SetDeadline(time.Now().Add(s.timeout))
	err := smtpclient.ReadGreeting(s.text.R)
	s.broken = err != nil
	return err
}

// hello sends EHLO and keeps the capabilities (RFC 5321 §4.1.1.1).
func (s *relaySession) hello() *smtpclient.Error {
	code, msg, _, err := s.cmd("EHLO %s", s.p.Helo)
	if err != nil {
		return smtpclient.Classify("EHLO", err)
	}
	if code != 250 {
		return smtpclient.Classify("EHLO", smtpclient.ReplyError(code, msg))
	}
	s.ext = smtpclient.EHLOCapabilities(msg)
	s.offered = mechanisms(s.ext["AUTH"])
	return nil
}

// cmd sends one command line and reads the reply, timing the round trip.
// err is a transport or protocol failure only; any reply code is returned.
func (s *relaySession) cmd(format string, args ...any) (code int, msg string, rtt time.Duration, err error) {
	if s.broken {
		return 0, "", 0, net.ErrClosed
	}
	_ = s.conn.SetDeadline(time.Now().Add(s.timeout))
	t := time.Now()
	if err = s.text.PrintfLine(format, args...); err == nil {
		code, msg, err = smtpclient.ReadReply(s.text.R)
	}
	rtt = time.Since(t)
	switch {
	case err != nil:
		s.broken = true
	case code == 421:
		// RFC 5321 §3.8: 421 means the server is closing the session.
		s.broken = true
	}
	if code >= 400 {
		s.refusals++
	}
	return code, msg, rtt, err
}

// expect runs cmd and turns any reply but want into an error for verb.
func (s *relaySession) expect(verb string, want int, format string, args ...any) (time.Duration, *smtpclient.Error) {
	code, msg, rtt, err := s.cmd(format, args...)
	if err != nil {
		return rtt, smtpclient.Classify(verb, err)
	}
	if code != want && !(want == 250 && code == 251) { // 251: "user not local; will forward" is a yes
		return rtt, smtpclient.Classify(verb, smtpclient.ReplyError(code, msg))
	}
	return rtt, nil
}

// auth runs the SASL exchange of RFC 4954 §4 with the chosen mechanism
// (smtpclient.Authenticate: nothing kept contains a line we sent).
func (s *relaySession) auth(cred Credentials) *smtpclient.Error {
	mech, err := chooseMechanism(cred.Mechanism, s.offered, s.tls)
	if err != nil {
		return err
	}
	s.mech = mech
	client, cerr := smtpclient.SASLClient(mech, cred.User, cred.Secret)
	if cerr != nil {
		return &smtpclient.Error{Command: "AUTH", Permanent: true, Message: cerr.Error()}
	}
	t := time.Now()
	defer func() { s.setupAuth = time.Since(t) }()
	return smtpclient.Authenticate(func(line string) (int, string, error) {
		code, msg, _, err := s.cmd("%s", line)
		return code, msg, err
	}, client)
}

// Close says QUIT (RFC 5321 §4.1.1.10) and waits briefly for the server to
// hang up before closing: Postfix's smtpd tells anvil the session is over
// before it closes, so once we see the close, a new session is not counted
// against a connection limit by a session we already ended.
func (s *relaySession) Close() {
	if s.raw == nil {
		return
	}
	if !s.broken && s.text != nil {
		wait := min(s.timeout, 2*time.Second)
		_ = s.conn.SetDeadline(time.Now().Add(wait))
		if s.text.PrintfLine("QUIT") == nil {
			if _, _, err := smtpclient.ReadReply(s.text.R); err == nil {
				_, _ = io.Copy(io.Discard, s.text.R)
			}
		}
	}
	s.broken = true
	_ = s.conn.Close()
	_ = s.raw.Close()
}

// failedAt names the step a failed session stopped at, for evidence lines.
func failedAt(e *smtpclient.Error) string {
	if e == nil || e.Command == "" {
		return ""
	}
	return " at " + e.Command
}
