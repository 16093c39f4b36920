package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

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
		p.Trace.ConnectFailed(addr, err)
		e.Verdict, e.Error = connectVerdict(err)
		return
	}
	e.Verdict = Open

	// The conversation gets its own budget: two timeouts covers a greeting
	// delay (some servers pause on purpose) plus EHLO and a TLS handshake.
	cctx, cancel := context.WithTimeout(ctx, 2*p.Timeout)
	defer cancel()
	info := &TLSInfo{ServerName: e.Host}
	c := smtpclient.New(cctx, conn, smtpclient.Options{
		Addr:       addr,
		ServerName: e.Host,
		TLSConfig:  p.tlsConfig(e.Host, info),
		Helo:       p.Helo,
		Timeouts:   smtpclient.Timeouts{Connect: 2 * p.Timeout, Command: 2 * p.Timeout},
		Trace:      p.Trace,
	})
	var ok bool
	if e.TLSMode == "implicit" {
		ok = p.implicitTLS(cctx, e, c, info, start)
	} else {
		ok = p.startTLS(cctx, e, c, info, start)
	}
	if ok {
		c.Quit()
	} else {
		c.Close()
	}
}

// greetAndHello reads the greeting and says EHLO (HELO to a server that
// knows no EHLO); false, with the problem set, when either fails.
func (p *Prober) greetAndHello(ctx context.Context, e *Endpoint, c *smtpclient.Client, start time.Time) bool {
	err := c.Greet()
	p.takeGreeting(e, c, start)
	if err == nil {
		err = c.Hello()
	}
	if err != nil {
		e.setProblem(p.conversationProblem(ctx, c, err))
		return false
	}
	return true
}

// startTLS speaks plaintext SMTP and upgrades when STARTTLS is offered;
// true when the conversation went through (QUIT ends it).
func (p *Prober) startTLS(ctx context.Context, e *Endpoint, c *smtpclient.Client, info *TLSInfo, start time.Time) bool {
	if !p.greetAndHello(ctx, e, c, start) {
		return false
	}
	if c.EHLO.Code == 250 { // not after a HELO
		e.EHLO = c.Extensions()
		e.AuthPlain = mechanisms(e.EHLO["AUTH"])
	}
	if !c.Has("STARTTLS") {
		// A plaintext-only server is open and usable; no TLS to report.
		return true
	}
	// STARTTLS, the handshake at once, and EHLO again.
	if err := c.StartTLS(ctx); err != nil {
		if _, up := c.TLS(); !up && !errors.Is(err, smtpclient.ErrTLSHandshake) {
			// STARTTLS refused, or no reply: still the plaintext conversation.
			e.setProblem(p.conversationProblem(ctx, c, err))
			return false
		}
		d := smtpclient.Classify("TLS", err).Words()
		e.setProblem(ProblemTLS, d, "after STARTTLS: "+d)
		return false
	}
	e.Timings.TLS = Duration(c.TLSTime)
	if st, ok := c.TLS(); ok {
		fillTLS(info, st)
		e.TLS = info
	}
	e.EHLOTLS = c.Extensions()
	e.AuthTLS = mechanisms(e.EHLOTLS["AUTH"])
	return true
}

// implicitTLS handshakes first (port 465), then speaks SMTP inside TLS;
// true when the conversation went through.
func (p *Prober) implicitTLS(ctx context.Context, e *Endpoint, c *smtpclient.Client, info *TLSInfo, start time.Time) bool {
	// An explicit handshake, so a peer that is not TLS at all is named as such
	// instead of surfacing as a garbled greeting.
	if err := c.Handshake(ctx); err != nil {
		if replies := c.Raw().Replies(); len(replies) > 0 {
			e.Banner = &replies[0]
			e.BannerHost = smtpclient.GreetingHost(replies[0])
			e.setProblem(ProblemPlaintextOnTLS, replies[0].String(),
				"expected TLS from the first byte (port "+strconv.Itoa(e.Port)+"), got a plaintext greeting: "+replies[0].String())
			return false
		}
		d := smtpclient.Classify("TLS", err).Words()
		e.setProblem(ProblemTLS, d, "TLS handshake failed: "+d)
		return false
	}
	e.Timings.TLS = Duration(c.TLSTime)
	st, _ := c.TLS()
	fillTLS(info, st)
	e.TLS = info
	if !p.greetAndHello(ctx, e, c, start) {
		return false
	}
	e.EHLOTLS = c.Extensions()
	e.AuthTLS = mechanisms(e.EHLOTLS["AUTH"])
	return true
}

func (p *Prober) takeGreeting(e *Endpoint, c *smtpclient.Client, start time.Time) {
	if c.Greeting.Code == 0 {
		return
	}
	g := c.Greeting
	e.Banner = &g
	e.BannerHost = smtpclient.GreetingHost(g)
	e.Timings.Greeting = Duration(time.Since(start))
}

// conversationProblem names what stopped an open endpoint's conversation:
// its kind, the evidence (the server's words), and the sentence for Problem.
func (p *Prober) conversationProblem(ctx context.Context, c *smtpclient.Client, err error) (ProblemKind, string, string) {
	ce := smtpclient.Classify("SMTP", err)
	// What the server said in plaintext is in the recording connection;
	// inside implicit TLS it sees ciphertext, and the client says what it
	// heard: the greeting, and the reply that failed.
	replies, raw := c.Raw().Replies(), c.Raw().Transcript()
	heard := len(raw) > 0 // bytes, SMTP or not
	first, _, _ := strings.Cut(string(raw), "\n")
	first = strings.TrimRight(first, "\r")
	if _, inTLS := c.TLS(); inTLS {
		replies, heard, first = nil, false, ""
		if c.Greeting.Code != 0 {
			replies = append(replies, c.Greeting)
			if ce.Code != 0 && ce.Command != "greeting" {
				replies = append(replies, smtpclient.Reply{Code: ce.Code})
			}
		}
		var pe textproto.ProtocolError
		if errors.As(err, &pe) {
			heard = true
			var uerr error
			if first, uerr = strconv.Unquote(string(pe)); uerr != nil {
				first = string(pe)
			}
		}
	}
	// The context closes the connection when the budget runs out, so a
	// timeout can surface as "closed": the context knows which it was.
	timedOut := ctx.Err() != nil || strings.Contains(ce.Message, "timeout")
	switch {
	case len(replies) == 0 && heard:
		// Something answered, but not in SMTP: show its first line.
		q := strconv.Quote(first)
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
		return ProblemEHLO, ce.Words(), "EHLO failed: " + ce.Words()
	}
	return ProblemOther, ce.Words(), ce.Words()
}

// setProblem records what stopped the conversation, in kind and in words.
func (e *Endpoint) setProblem(kind ProblemKind, detail, text string) {
	e.ProblemKind, e.ProblemDetail, e.Problem = kind, detail, text
}

func mechanisms(s string) []string {
	if s == "" {
		return nil
	}
	f := strings.Fields(strings.ToUpper(s))
	return f
}

// connectVerdict classifies a failed connect (README "Design: words").
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
