package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// relaySession is one SMTP session with a relay, set up the way a sender
// would: connect, TLS per the endpoint's mode, EHLO, AUTH. The login check
// and the relay measurement share it.
//
// The SMTP is smtpclient.Client's, step by step, so that the setup can be
// timed and every failure named: its TLS handshake happens at once (a
// certificate failure stops the session before AUTH), its EHLO is --helo
// before and after STARTTLS, a refused AUTH gets no stray "*", and a RSET
// keeps what EHLO said (no new EHLO before every MAIL).
//
// Errors are *smtpclient.Error.
type relaySession struct {
	p      *Prober
	name   string // TLS server name: the endpoint's host (or address)
	c      *smtpclient.Client
	closed bool

	offered []string // AUTH mechanisms of the last EHLO
	mech    string   // the mechanism used
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
	s := &relaySession{p: p, name: e.Host}
	if s.name == "" {
		s.name = host
	}
	addr := net.JoinHostPort(host, strconv.Itoa(e.Port))
	dctx, cancel := context.WithTimeout(ctx, p.Timeout)
	conn, err := p.dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		p.Trace.ConnectFailed(addr, err)
		_, words := connectVerdict(err)
		if ctx.Err() != nil {
			words = "cancelled"
		}
		return s, &smtpclient.Error{Command: "connect", Message: words, Err: err}
	}
	// When a secret follows, the certificate must verify against the
	// Prober's roots for the endpoint's host name; otherwise (a
	// measurement without a login) any certificate is accepted.
	verify := cred != nil
	perStep := 2 * p.Timeout // each command's reply, and the handshake
	s.c = smtpclient.New(ctx, conn, smtpclient.Options{
		Addr:         addr,
		ServerName:   s.name,
		TLSConfig:    &tls.Config{ServerName: s.name, RootCAs: p.Roots, Time: p.Now, InsecureSkipVerify: !verify}, //nolint:gosec // see above
		Helo:         p.Helo,
		InsecureAuth: cred != nil && cred.InsecureAuth,
		Timeouts:     smtpclient.Timeouts{Connect: perStep, Command: perStep},
		Trace:        p.Trace,
	})
	serr := s.setup(ctx, e.TLSMode, cred)
	if s.offered == nil {
		// Failed before AUTH: the last EHLO that succeeded says.
		s.offered = mechanisms(smtpclient.Capabilities(s.c.EHLO)["AUTH"])
	}
	if serr != nil {
		s.Close()
		return s, serr
	}
	return s, nil
}

func (s *relaySession) setup(ctx context.Context, mode string, cred *Credentials) *smtpclient.Error {
	c := s.c
	secret := cred != nil
	if mode == "implicit" {
		if err := c.Handshake(ctx); err != nil {
			return s.tlsFailure(err, true)
		}
	}
	if err := c.Greet(); err != nil {
		return clientError(err)
	}
	if err := c.Hello(); err != nil {
		return clientError(err)
	}
	if mode != "implicit" {
		useTLS := c.Has("STARTTLS") && mode != "none"
		if useTLS {
			// STARTTLS, the handshake at once, and EHLO again (RFC 3207
			// §4.2: everything learnt before TLS is void).
			if err := c.StartTLS(ctx); err != nil {
				return s.tlsFailure(err, false)
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

// tlsFailure words a failed STARTTLS or TLS handshake: a certificate that
// did not verify in words a person can act on, and, on a port that should
// speak TLS from the first byte (implicit), the plaintext greeting the
// server sent instead (a 421 refusal reads better than a garbled
// handshake).
func (s *relaySession) tlsFailure(err error, implicit bool) *smtpclient.Error {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) && len(cve.UnverifiedCertificates) > 0 {
		words := certErrorWords(cve.Err, cve.UnverifiedCertificates[0], s.p.now())
		return &smtpclient.Error{Command: "TLS", Permanent: true, Message: "TLS certificate not accepted: " + words, Err: err}
	}
	if implicit && errors.Is(err, smtpclient.ErrTLSHandshake) {
		if replies := s.c.Raw().Replies(); len(replies) > 0 {
			r := replies[0]
			if r.Code != 220 {
				return smtpclient.Classify("greeting", smtpclient.ReplyError(r.Code, r.Text()))
			}
			return &smtpclient.Error{Command: "TLS", Permanent: true, Message: "expected TLS from the first byte, got a plaintext greeting: " + r.String(), Err: err}
		}
	}
	return smtpclient.Classify("TLS", err)
}

// auth runs the SASL exchange of RFC 4954 §4 with the chosen mechanism
// (smtpclient: nothing kept or traced contains a line we sent).
func (s *relaySession) auth(cred Credentials) *smtpclient.Error {
	ext, _ := s.c.Extension("AUTH")
	s.offered = mechanisms(ext)
	_, overTLS := s.c.TLS()
	mech, err := chooseMechanism(cred.Mechanism, s.offered, overTLS)
	if err != nil {
		return err
	}
	s.mech = mech
	client, cerr := smtpclient.SASLClient(mech, cred.User, cred.Secret)
	if cerr != nil {
		return &smtpclient.Error{Command: "AUTH", Permanent: true, Message: cerr.Error()}
	}
	if err := s.c.AuthWith(client); err != nil {
		return clientError(err)
	}
	return nil
}

// clientError is an error of smtpclient.Client's as what it always is, an
// *smtpclient.Error naming the step that failed.
func clientError(err error) *smtpclient.Error { return smtpclient.Classify("SMTP", err) }

// timed runs one command (smtpclient.Client's Mail, Rcpt or Rset) and
// measures its round trip.
func (s *relaySession) timed(cmd func() *smtpclient.Error) (time.Duration, *smtpclient.Error) {
	t := time.Now()
	err := cmd()
	return time.Since(t), err
}

// setupTLS is how long STARTTLS and the handshake, or the implicit
// handshake, took; setupAuth the whole AUTH exchange.
func (s *relaySession) setupTLS() time.Duration  { return s.c.TLSTime }
func (s *relaySession) setupAuth() time.Duration { return s.c.AuthTime }

// refusals counts the 4xx and 5xx replies of this session (Postfix slows
// down, then hangs up, after too many).
func (s *relaySession) refusals() int { return s.c.Refusals }

// broken reports that the connection failed or the server said 421.
func (s *relaySession) broken() bool { return s.c == nil || s.c.Broken() }

// Close says QUIT (RFC 5321 §4.1.1.10) and waits briefly for the server to
// hang up before closing (smtpclient.Client.Quit): Postfix's smtpd tells
// anvil the session is over before it closes, so once we see the close, a
// new session is not counted against a connection limit by a session we
// already ended. Closing twice is harmless.
func (s *relaySession) Close() {
	if s.c == nil || s.closed {
		return
	}
	s.closed = true
	s.c.Quit()
}

// failedAt names the step a failed session stopped at, for evidence lines.
func failedAt(e *smtpclient.Error) string {
	if e == nil || e.Command == "" {
		return ""
	}
	return " at " + e.Command
}
