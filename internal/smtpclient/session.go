package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// TLSPolicy says how a session gets TLS (README "Design: words").
type TLSPolicy string

const (
	// Implicit: TLS from the first byte (RFC 8314 §3.3, port 465).
	Implicit TLSPolicy = "implicit"
	// StartTLS: STARTTLS (RFC 3207) is required; a server without it is refused.
	StartTLS TLSPolicy = "starttls"
	// Opportunistic: STARTTLS when offered; plaintext when it is not, or
	// when the server answers 454 (RFC 7435 §1.3).
	Opportunistic TLSPolicy = "opportunistic"
	// None: plaintext, STARTTLS not used even when offered.
	None TLSPolicy = "none"
)

// Options say how to open one session.
type Options struct {
	Addr       string      // host:port to connect to
	ServerName string      // the name the server is known by (TLS SNI, messages)
	TLS        TLSPolicy   // "" is None
	TLSConfig  *tls.Config // nil: no verification (RFC 7435 opportunistic security)
	Helo       string      // the name said in EHLO and HELO
	// Auth, when set, makes a SASL client for AUTH (RFC 4954). It is called
	// only once TLS is up, or in clear with InsecureAuth.
	Auth         func() (sasl.Client, error)
	InsecureAuth bool
	Timeouts     Timeouts
	// Trace, when set, gets the conversation, secrets and bodies hidden.
	Trace *Trace
	// MaxMessages is how many transactions the session may carry; 0: no
	// limit here (the caller closes it when it wants).
	MaxMessages int
	// Dial connects; nil: a net.Dialer with Timeouts.Connect.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Timeouts bound each step of a session. The defaults are the RFC 5321
// §4.5.3.2 values go-smtp also uses.
type Timeouts struct {
	Connect time.Duration // TCP connect and TLS handshake
	Command time.Duration // each command's reply, and the greeting (§4.5.3.2: 5 min)
	Data    time.Duration // the message and the reply to its end (§4.5.3.2.5-6: 3 + 10 min)
}

// WithDefaults fills the zero timeouts.
func (t Timeouts) WithDefaults() Timeouts {
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

// ErrTLSHandshake marks a failed TLS handshake: the one failure after which
// opportunistic TLS may try again in plaintext.
var ErrTLSHandshake = errors.New("TLS handshake failed")

// maxLine bounds one reply line as the reader's buffer: RFC 5321
// §4.5.3.1.5 allows 512 octets; go-smtp's client allows 2000. A server
// sending an endless line gets a protocol error, not our memory.
const maxLine = 4096

// Client is one SMTP session, and the only code in mailroute that speaks
// SMTP to a server: the probe's endpoint check, login and measurement and
// both send engines go through it, so the lifecycle (greeting, EHLO or
// HELO, STARTTLS or implicit TLS, AUTH) is written once.
//
// It speaks SMTP itself over a bufio reader and writer instead of through
// go-smtp's Client, which throws the greeting and the EHLO lines away, says
// EHLO localhost before STARTTLS, handshakes lazily, sends a stray "*" after
// a refused AUTH, and cannot pipeline (RFC 2920) or stream BDAT (RFC 3030).
// Errors are *Error; server replies inside them are go-smtp's *SMTPError.
type Client struct {
	raw  *Conn    // the TCP connection, closed when the dial context ends
	conn net.Conn // raw, or TLS over it
	r    *bufio.Reader
	w    *bufio.Writer
	out  *counter // under w: what has gone to the connection
	opts Options
	to   Timeouts
	tr   *traceSession

	// Greeting is the server's first reply (RFC 5321 §4.3.1).
	Greeting Reply
	// EHLO is the last EHLO reply (after TLS when TLS is up), every line
	// kept; PlainEHLO is the one before STARTTLS.
	EHLO, PlainEHLO Reply
	ext             map[string]string // the last EHLO's keywords, upper case, and parameters

	tls      bool
	state    tls.ConnectionState
	fallback bool       // plaintext because the server refused STARTTLS (opportunistic)
	broken   bool       // the connection failed or is out of step with the server: close it, no QUIT
	dirty    bool       // a transaction may be open: RSET before the next (RFC 5321 §4.1.1.5)
	opened   *Txn       // started with the last dot: its replies are unread (see DeliverThen)
	stream   []streamed // transactions streamed, replies unread (bdat.go)
	noChunk  bool       // BDAT misbehaved on this server: DATA from now on
	failed   *Error     // why the connection failed while transactions were streamed
	// Messages counts the transactions begun on this session.
	Messages int
	// Refusals counts the 4xx and 5xx replies (Postfix slows down, then
	// hangs up, after too many: smtpd_soft/hard_error_limit).
	Refusals int
	// TLSTime and AuthTime are how long TLS (STARTTLS and the handshake, or
	// the implicit handshake) and the whole AUTH exchange took.
	TLSTime, AuthTime time.Duration
}

// Dial connects to opts.Addr and opens the session (Open). Every error is
// an *Error; a failed TLS handshake also wraps ErrTLSHandshake.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	to := opts.Timeouts.WithDefaults()
	dial := opts.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: to.Connect}).DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, to.Connect)
	conn, err := dial(dctx, "tcp", opts.Addr)
	cancel()
	if err != nil {
		opts.Trace.ConnectFailed(opts.Addr, err)
		return nil, Classify("connect", err)
	}
	c := New(ctx, conn, opts)
	if err := c.Open(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// New wraps a connection already made; ctx bounds its life (see Wrap). No
// byte is read or written until Open or the step methods.
func New(ctx context.Context, conn net.Conn, opts Options) *Client {
	raw := Wrap(ctx, conn)
	c := &Client{raw: raw, conn: raw, opts: opts, to: opts.Timeouts.WithDefaults()}
	c.r = bufio.NewReaderSize(c.conn, maxLine)
	c.out = &counter{w: c.conn}
	c.w = bufio.NewWriterSize(c.out, 8<<10)
	c.tr = opts.Trace.session(opts.Addr)
	c.tr.note("connected to %s", conn.RemoteAddr())
	return c
}

// Open sets the session up as opts say: TLS, greeting, EHLO (HELO to a
// server that does not know EHLO), STARTTLS and EHLO again, AUTH.
func (c *Client) Open(ctx context.Context) error {
	if c.opts.TLS == Implicit {
		if err := c.Handshake(ctx); err != nil {
			return err
		}
	}
	if err := c.Greet(); err != nil {
		return err
	}
	if err := c.Hello(); err != nil {
		return err
	}
	switch c.opts.TLS {
	case StartTLS, Opportunistic:
		if err := c.startTLS(ctx); err != nil {
			return err
		}
	}
	if c.opts.Auth != nil {
		return c.Auth()
	}
	return nil
}

func (c *Client) startTLS(ctx context.Context) error {
	if !c.Has("STARTTLS") {
		if c.opts.TLS == StartTLS {
			return &Error{Permanent: true, Command: "STARTTLS", Message: `the server does not offer STARTTLS and tls = "starttls" requires it`}
		}
		return nil
	}
	err := c.StartTLS(ctx)
	var se *Error
	if c.opts.TLS == Opportunistic && errors.As(err, &se) && se.Command == "STARTTLS" && se.Code/100 == 4 && se.Code != 421 {
		// "454 TLS not available" (RFC 3207 §4): the session goes on in
		// plaintext; opportunistic TLS accepts that.
		c.fallback = true
		return nil
	}
	return err
}

// StartTLS says STARTTLS, handshakes at once (so a certificate failure is
// told apart from the next command's) and says EHLO again: RFC 3207 §4.2,
// what was learnt before TLS is void and the server sends no new greeting.
func (c *Client) StartTLS(ctx context.Context) error {
	t := time.Now()
	code, msg, err := c.Cmd("STARTTLS")
	if err != nil {
		return Classify("STARTTLS", err)
	}
	if code != 220 {
		return Classify("STARTTLS", ReplyError(code, msg))
	}
	if c.r.Buffered() > 0 {
		// Bytes after "220 ready" would be read as if they came over TLS:
		// the STARTTLS command injection of CVE-2011-0411.
		c.broken = true
		return &Error{Permanent: true, Command: "STARTTLS", Message: "the server sent data before the TLS handshake", Err: ErrTLSHandshake}
	}
	if err := c.Handshake(ctx); err != nil {
		return err
	}
	c.TLSTime = time.Since(t)
	c.PlainEHLO = c.EHLO
	return c.Hello()
}

// Handshake starts TLS on the connection now. With opts.TLSConfig nil the
// certificate is not verified: RFC 7435 §1.3, opportunistic security
// encrypts without authenticating; an MX certificate is often self-signed
// or names another host, and refusing it would only push mail to plaintext.
func (c *Client) Handshake(ctx context.Context) error {
	t := time.Now()
	cfg := c.opts.TLSConfig
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true, ServerName: c.opts.ServerName} //nolint:gosec // see above
	}
	tc := tls.Client(c.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, c.to.Connect)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.broken = true
		c.tr.note("TLS handshake failed: %v", err)
		e := Classify("TLS", err)
		e.Err = fmt.Errorf("%w: %w", ErrTLSHandshake, err)
		return e
	}
	c.tls, c.conn, c.state = true, tc, tc.ConnectionState()
	if c.TLSTime == 0 {
		c.TLSTime = time.Since(t)
	}
	c.tr.note("TLS started: %s %s", tls.VersionName(c.state.Version), tls.CipherSuiteName(c.state.CipherSuite))
	c.r.Reset(c.conn)
	c.out.w = c.conn
	c.w.Reset(c.out)
	return nil
}

// Greet reads the server's greeting: nil for a 220. A 421 or 554 here is
// how a server turns a session away (RFC 5321 §4.3.1).
func (c *Client) Greet() error {
	_ = c.conn.SetDeadline(time.Now().Add(c.to.Command))
	code, msg, err := c.readReply()
	if err != nil {
		c.broken = true
		return Classify("greeting", err)
	}
	c.Greeting = Reply{Code: code, Lines: strings.Split(msg, "\n")}
	if code != 220 {
		c.broken = true
		return Classify("greeting", ReplyError(code, msg))
	}
	return nil
}

// Hello says EHLO, or HELO to a server that does not know EHLO (RFC 5321
// §4.1.4), and keeps the extensions offered.
func (c *Client) Hello() error {
	code, msg, err := c.Cmd("EHLO " + c.opts.Helo)
	if err != nil {
		return Classify("EHLO", err)
	}
	c.ext = map[string]string{}
	switch {
	case code == 500 || code == 502:
		if code, msg, err = c.Cmd("HELO " + c.opts.Helo); err != nil {
			return Classify("HELO", err)
		}
		if code != 250 {
			return Classify("HELO", ReplyError(code, msg))
		}
		c.EHLO = Reply{}
	case code != 250:
		return Classify("EHLO", ReplyError(code, msg))
	default:
		c.EHLO = Reply{Code: code, Lines: strings.Split(msg, "\n")}
		c.ext = Capabilities(c.EHLO)
	}
	return nil
}

// Has reports whether the last EHLO offered the extension kw (upper case).
func (c *Client) Has(kw string) bool { _, ok := c.ext[kw]; return ok }

// Extension is the parameter of the extension kw, and whether it is offered.
func (c *Client) Extension(kw string) (string, bool) { v, ok := c.ext[kw]; return v, ok }

// Extensions is every keyword the last EHLO offered, with its parameters.
func (c *Client) Extensions() map[string]string { return c.ext }

// TLS reports whether TLS is up, and its state.
func (c *Client) TLS() (tls.ConnectionState, bool) { return c.state, c.tls }

// Fallback reports that the session is in plaintext because opportunistic
// TLS met a refused STARTTLS.
func (c *Client) Fallback() bool { return c.fallback }

// Broken reports that the connection failed or the server is closing it:
// the session is of no more use.
func (c *Client) Broken() bool { return c.broken }

// Auth runs the SASL exchange of RFC 4954 §4 with opts.Auth's client.
func (c *Client) Auth() error {
	if err := c.authAllowed(); err != nil {
		return err
	}
	a, err := c.opts.Auth()
	if err != nil {
		return &Error{Permanent: true, Command: "AUTH", Message: err.Error(), Err: err}
	}
	return c.AuthWith(a)
}

// authAllowed refuses AUTH before a byte goes out: the password never goes
// out without TLS unless opts.InsecureAuth, and not to a server that does
// not offer AUTH.
func (c *Client) authAllowed() error {
	if !c.tls && !c.opts.InsecureAuth {
		return &Error{Permanent: true, Command: "AUTH", Message: "refusing to send the password without TLS (set insecure_auth = true to allow it)", Err: ErrPlaintextAuth}
	}
	if !c.Has("AUTH") {
		return &Error{Permanent: true, Command: "AUTH", Message: "the server does not offer AUTH (RFC 4954)", Err: ErrNoAuth}
	}
	return nil
}

// AuthWith runs the SASL exchange with a, a client the caller chose (the
// probe picks the mechanism from those offered), under the same rules as
// Auth. The trace hides every line sent during the exchange.
func (c *Client) AuthWith(a sasl.Client) error {
	if err := c.authAllowed(); err != nil {
		return err
	}
	t := time.Now()
	defer func() { c.AuthTime = time.Since(t) }()
	c.tr.hide(true)
	defer c.tr.hide(false)
	if err := Authenticate(c.Cmd, a); err != nil {
		return err
	}
	return nil
}

// ErrPlaintextAuth and ErrNoAuth are the AUTH failures decided before a
// byte goes out: no TLS (and plaintext not allowed), and no AUTH offered.
var (
	ErrPlaintextAuth = errors.New("AUTH without TLS refused")
	ErrNoAuth        = errors.New("AUTH not offered")
)

// Quit ends the session politely when it can (QUIT, RFC 5321 §4.1.1.10,
// bounded by a short deadline), waits briefly for the server to hang up,
// and closes. Postfix's smtpd tells anvil the session is over before it
// closes, so once the close is seen a new session is not counted against a
// connection limit by this one.
func (c *Client) Quit() {
	// With a transaction opened the server waits for a message: QUIT would
	// be read as one. Closing ends it without a delivery.
	if !c.broken && c.opened == nil && len(c.stream) == 0 {
		// Not through Cmd, which would set the whole command timeout: the
		// reply and the hang-up get the short deadline.
		_ = c.conn.SetDeadline(time.Now().Add(min(c.to.Command, 2*time.Second)))
		c.line("QUIT")
		if c.w.Flush() == nil {
			if code, _, err := c.readReply(); err == nil && code == 221 {
				_, _ = c.r.Discard(maxLine) // until EOF or the deadline
			}
		}
	}
	c.Close()
}

// Close closes the connection at once.
func (c *Client) Close() {
	c.broken = true
	_ = c.conn.Close() // TLS: also closes raw
	_ = c.raw.Close()
	c.tr.note("closed")
}

// Raw is the connection under TLS, with what the server sent before TLS.
func (c *Client) Raw() *Conn { return c.raw }

// Cmd sends one command line and reads its reply, within the command
// timeout. err is a transport or protocol failure only: any reply code is
// returned. After a failure or a 421 (RFC 5321 §3.8: the server is
// closing) the session is broken.
func (c *Client) Cmd(line string) (int, string, error) {
	if c.broken {
		return 0, "", net.ErrClosed
	}
	_ = c.conn.SetDeadline(time.Now().Add(c.to.Command))
	c.line(line)
	if err := c.w.Flush(); err != nil {
		c.broken = true
		return 0, "", err
	}
	return c.readReply()
}

// line buffers one command line and traces it.
func (c *Client) line(s string) {
	c.tr.sent(s)
	c.w.WriteString(s)
	c.w.WriteString("\r\n")
}

// readReply reads one reply (ReadReply), traces it and counts refusals;
// a failure or a 421 breaks the session.
func (c *Client) readReply() (int, string, error) {
	code, msg, err := ReadReply(c.r)
	if err != nil {
		c.broken = true
		c.tr.note("read: %v", err)
		return code, msg, err
	}
	c.tr.received(code, msg)
	if code >= 400 {
		c.Refusals++
	}
	if code == 421 {
		c.broken = true
	}
	return code, msg, nil
}

// Room reports whether the session may begin another transaction under
// opts.MaxMessages.
func (c *Client) Room() bool { return c.opts.MaxMessages <= 0 || c.Messages < c.opts.MaxMessages }

// counter counts the bytes written through it: how far the stream got
// when a connection fails (bdat.go).
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Mail, Rcpt and Rset each send one command of a transaction on its own
// and wait for its reply, for a caller that times every command and never
// sends a message (the probe's relay measurement; send's transactions go
// through Deliver). A reply other than 250 or 251 (RFC 5321 §4.2.2: "will
// forward" is a yes), or a transport failure, is an *Error for the
// command ("MAIL", "RCPT", "RSET"). The addresses must not hold line
// breaks: the caller checks them.
func (c *Client) Mail(from string) *Error { return c.oneStep("MAIL", "MAIL FROM:<"+from+">") }

// Rcpt: see Mail.
func (c *Client) Rcpt(to string) *Error { return c.oneStep("RCPT", "RCPT TO:<"+to+">") }

// Rset: see Mail.
func (c *Client) Rset() *Error { return c.oneStep("RSET", "RSET") }

func (c *Client) oneStep(verb, line string) *Error {
	code, msg, err := c.Cmd(line)
	if err != nil {
		return Classify(verb, err)
	}
	if code != 250 && code != 251 {
		return Classify(verb, ReplyError(code, msg))
	}
	return nil
}
