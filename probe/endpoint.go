package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// knownExtensions are asked for after STARTTLS: go-smtp keeps the EHLO
// lines private, so after TLS (where our transcript sees only ciphertext)
// the capabilities we report are these, by name.
var knownExtensions = []string{
	"SIZE", "PIPELINING", "AUTH", "SMTPUTF8", "DSN", "LIMITS", "STARTTLS",
	"8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "BINARYMIME", "REQUIRETLS",
	"DELIVERBY", "MT-PRIORITY", "ETRN", "VRFY", "XCLIENT",
}

// probeEndpoint connects to e and talks SMTP up to (and through) TLS and the
// second EHLO, then QUITs. It never sends MAIL.
func (p *Prober) probeEndpoint(ctx context.Context, e *Endpoint) {
	start := time.Now()
	defer func() { e.Timings.Total = Duration(time.Since(start)) }()

	addr := net.JoinHostPort(e.Addr, strconv.Itoa(e.Port))
	dctx, cancel := context.WithTimeout(ctx, p.Timeout)
	conn, err := p.dial(dctx, "tcp", addr)
	cancel()
	e.Timings.Connect = Duration(time.Since(start))
	if err != nil {
		e.Verdict, e.Error = connectVerdict(err)
		return
	}
	e.Verdict = Open

	// The conversation gets its own budget: two timeouts covers a greeting
	// delay (some servers pause on purpose) plus EHLO and a TLS handshake.
	cctx, cancel := context.WithTimeout(ctx, 2*p.Timeout)
	defer cancel()
	rec := smtpclient.Wrap(cctx, conn)
	defer rec.Close()

	if e.TLSMode == "implicit" {
		p.implicitTLS(cctx, e, rec, start)
	} else {
		p.startTLS(cctx, e, rec, start)
	}
}

// startTLS speaks plaintext SMTP and upgrades when STARTTLS is offered.
func (p *Prober) startTLS(ctx context.Context, e *Endpoint, rec *smtpclient.Conn, start time.Time) {
	info := &TLSInfo{ServerName: e.Host}
	cfg := p.tlsConfig(e.Host, info)
	// NewClientStartTLS reads the greeting, sends EHLO localhost and STARTTLS;
	// the transcript keeps those replies, which go-smtp does not expose.
	c, err := smtp.NewClientStartTLS(rec, cfg)
	replies := rec.Replies()
	p.takeGreeting(e, replies, start)
	if len(replies) > 1 && replies[1].Code == 250 {
		e.EHLO = smtpclient.Capabilities(replies[1])
		e.AuthPlain = mechanisms(e.EHLO["AUTH"])
	}
	if err != nil {
		if e.Banner != nil && e.Banner.Code == 220 && len(replies) > 1 && replies[1].Code == 250 {
			if _, ok := e.EHLO["STARTTLS"]; !ok {
				// A plaintext-only server is open and usable; no TLS to report.
				quit(rec)
				return
			}
		}
		e.setProblem(p.conversationProblem(ctx, rec, err))
		return
	}
	defer c.Close()
	tlsStart := time.Now()
	// The handshake is lazy in go-smtp: it happens on this EHLO.
	if err := c.Hello(p.Helo); err != nil {
		d := describe(smtpclient.Classify("TLS", err))
		e.setProblem(ProblemTLS, d, "after STARTTLS: "+d)
		return
	}
	e.Timings.TLS = Duration(time.Since(tlsStart))
	if st, ok := c.TLSConnectionState(); ok {
		fillTLS(info, st)
		e.TLS = info
	}
	e.EHLOTLS = extensions(c)
	e.AuthTLS = mechanisms(e.EHLOTLS["AUTH"])
	_ = c.Quit()
}

// implicitTLS handshakes first (port 465), then speaks SMTP inside TLS.
func (p *Prober) implicitTLS(ctx context.Context, e *Endpoint, rec *smtpclient.Conn, start time.Time) {
	info := &TLSInfo{ServerName: e.Host}
	tlsStart := time.Now()
	tc := tls.Client(rec, p.tlsConfig(e.Host, info))
	// An explicit handshake, so a peer that is not TLS at all is named as such
	// instead of surfacing as a garbled greeting.
	if err := tc.HandshakeContext(ctx); err != nil {
		if replies := rec.Replies(); len(replies) > 0 {
			e.Banner = &replies[0]
			e.BannerHost = smtpclient.GreetingHost(replies[0])
			e.setProblem(ProblemPlaintextOnTLS, replies[0].String(),
				"expected TLS from the first byte (port "+strconv.Itoa(e.Port)+"), got a plaintext greeting: "+replies[0].String())
			return
		}
		d := describe(smtpclient.Classify("TLS", err))
		e.setProblem(ProblemTLS, d, "TLS handshake failed: "+d)
		return
	}
	e.Timings.TLS = Duration(time.Since(tlsStart))
	fillTLS(info, tc.ConnectionState())
	e.TLS = info
	inner := smtpclient.Wrap(ctx, tc)
	c := smtp.NewClient(inner)
	defer c.Close()
	err := c.Hello(p.Helo)
	replies := inner.Replies()
	p.takeGreeting(e, replies, start)
	if err != nil {
		e.setProblem(p.conversationProblem(ctx, inner, err))
		return
	}
	if len(replies) > 1 {
		e.EHLOTLS = smtpclient.Capabilities(replies[1])
	}
	e.AuthTLS = mechanisms(e.EHLOTLS["AUTH"])
	_ = c.Quit()
}

func (p *Prober) takeGreeting(e *Endpoint, replies []smtpclient.Reply, start time.Time) {
	if len(replies) == 0 {
		return
	}
	e.Banner = &replies[0]
	e.BannerHost = smtpclient.GreetingHost(replies[0])
	// The greeting time is approximate (first reply seen by the time the
	// first command returned); exact for the banner-only failure cases.
	if e.Timings.Greeting == 0 {
		e.Timings.Greeting = Duration(time.Since(start))
	}
}

// conversationProblem names what stopped an open endpoint's conversation:
// its kind, the evidence (the server's words), and the sentence for Problem.
func (p *Prober) conversationProblem(ctx context.Context, rec *smtpclient.Conn, err error) (ProblemKind, string, string) {
	ce := smtpclient.Classify("SMTP", err)
	replies := rec.Replies()
	raw := rec.Transcript()
	// The context closes the connection when the budget runs out, so a
	// timeout can surface as "closed": the context knows which it was.
	timedOut := ctx.Err() != nil || strings.Contains(ce.Message, "timeout")
	switch {
	case len(replies) == 0 && len(raw) > 0:
		// Something answered, but not in SMTP: show its first line (Go's
		// textproto may wait for more lines, so this can follow a timeout).
		first, _, _ := strings.Cut(string(raw), "\n")
		q := strconv.Quote(strings.TrimRight(first, "\r"))
		return ProblemNotSMTP, q, "not SMTP: the server's first line is " + q
	case len(replies) == 0 && timedOut:
		return ProblemNoGreeting, "", fmt.Sprintf("no greeting within %s: the port accepts connections but nothing speaks SMTP", 2*p.Timeout)
	case len(replies) == 0:
		return ProblemNoGreeting, ce.Message, "no greeting: " + ce.Message
	case replies[0].Code/100 == 4:
		return ProblemGreetingBusy, replies[0].String(), "the server is busy or limiting (temporary) at greeting: " + replies[0].String()
	case replies[0].Code != 220:
		return ProblemGreetingRefused, replies[0].String(), "the server refuses service at greeting: " + replies[0].String()
	case len(replies) == 1 && timedOut:
		return ProblemEHLO, "", fmt.Sprintf("no reply to EHLO within %s", 2*p.Timeout)
	case len(replies) == 1:
		return ProblemEHLO, describe(ce), "EHLO failed: " + describe(ce)
	}
	return ProblemOther, describe(ce), describe(ce)
}

// setProblem records what stopped the conversation, in kind and in words.
func (e *Endpoint) setProblem(kind ProblemKind, detail, text string) {
	e.ProblemKind, e.ProblemDetail, e.Problem = kind, detail, text
}

func describe(e *smtpclient.Error) string {
	if e == nil {
		return ""
	}
	if e.Code != 0 {
		return strings.TrimSpace(fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Message))
	}
	return e.Message
}

func quit(rec *smtpclient.Conn) {
	_, _ = rec.Write([]byte("QUIT\r\n"))
}

func extensions(c *smtp.Client) map[string]string {
	caps := map[string]string{}
	for _, k := range knownExtensions {
		if ok, v := c.Extension(k); ok {
			caps[k] = v
		}
	}
	return caps
}

func mechanisms(s string) []string {
	if s == "" {
		return nil
	}
	f := strings.Fields(strings.ToUpper(s))
	return f
}

// connectVerdict classifies a failed connect (see design.md "Words").
func connectVerdict(err error) (Verdict, string) {
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, "connection refused (TCP reset)"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return Filtered, "no answer before the timeout (packets dropped)"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return Unreachable, "host unreachable (ICMP: prohibited or no route)"
	case errors.Is(err, syscall.ENETUNREACH):
		return Unreachable, "network unreachable (no route)"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return Unreachable, "blocked by this machine's firewall (" + err.Error() + ")"
	case errors.As(err, &errno):
		return Failed, errno.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Filtered, "no answer before the timeout (packets dropped)"
	}
	return Failed, err.Error()
}

// addrString prints an address for the report without a zone.
func addrString(a netip.Addr) string { return a.WithZone("").String() }
