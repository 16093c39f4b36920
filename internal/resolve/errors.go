package resolve

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/miekg/dns"
)

// Kind classifies a DNS failure so that callers can decide between "the
// domain is wrong" (permanent) and "ask again later" (temporary) without
// parsing error strings.
type Kind int

const (
	// Unknown is the zero Kind; Query never returns it.
	Unknown Kind = iota
	// NXDomain: the name does not exist (RCODE 3). Permanent.
	NXDomain
	// NoData: the name exists but has no usable records of the asked type
	// (RFC 2308 §2.2). Permanent. Query itself never returns it: it returns
	// the empty reply; only the helpers (MX, Addrs, TXT, …) do.
	NoData
	// ServFail: every server answered SERVFAIL (RCODE 2), typically a broken
	// or DNSSEC-bogus zone, or an upstream the recursive could not reach.
	ServFail
	// Refused: every server answered REFUSED (RCODE 5), typically a
	// resolver that does not serve our address.
	Refused
	// Rcode: some other response code (FORMERR, NOTIMP, …); see Error.Rcode.
	Rcode
	// Timeout: no answer within Timeout × Attempts per server, or the
	// caller's deadline passed.
	Timeout
	// Network: the query could not be sent or the answer could not be
	// received at all: connection refused, network unreachable, no route.
	// An offline machine ends up here, fast.
	Network
	// Malformed: an answer arrived but could not be parsed, or it answers
	// a different question.
	Malformed
	// Canceled: the caller canceled the context.
	Canceled
	// BadName: the name asked for is not a valid domain name; nothing was
	// sent. Permanent.
	BadName
)

var kindNames = [...]string{
	Unknown:   "unknown",
	NXDomain:  "nxdomain",
	NoData:    "nodata",
	ServFail:  "servfail",
	Refused:   "refused",
	Rcode:     "rcode",
	Timeout:   "timeout",
	Network:   "network",
	Malformed: "malformed",
	Canceled:  "canceled",
	BadName:   "badname",
}

// String returns a short lowercase name, stable for JSON reports.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// MarshalText makes a Kind appear by name in the probe's JSON report.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Error is the only error type returned by Query and the lookup helpers
// (except for NormalizeDomain, whose errors arrive wrapped in an Error of
// Kind BadName).
type Error struct {
	Name   string // the name asked for, without the trailing dot
	Type   string // "MX", "A", …
	Kind   Kind
	Server string // "ip:port" of the server whose answer (or silence) is reported; empty when nothing was sent
	Rcode  int    // the response code when the failure is one (NXDOMAIN, SERVFAIL, …); otherwise 0
	Err    error  // the underlying cause, if any
}

// Error reads like `lookup MX alpha.example: server failure (SERVFAIL) from
// 127.0.0.1:53`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("lookup ")
	if e.Type != "" {
		b.WriteString(e.Type)
		b.WriteByte(' ')
	}
	b.WriteString(e.Name)
	b.WriteString(": ")
	// For these kinds the cause is the message; the generic wording would
	// only repeat it less precisely.
	ownWords := e.Err != nil && (e.Kind == NoData || e.Kind == BadName)
	if ownWords {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(e.describe())
	}
	if e.Server != "" {
		b.WriteString(" from ")
		b.WriteString(e.Server)
	}
	// The cause adds information for transport failures ("connection
	// refused"), not for answers whose response code already says it all.
	if e.Err != nil && !ownWords && (e.Kind == Network || e.Kind == Malformed || e.Kind == Unknown) {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) describe() string {
	switch e.Kind {
	case NXDomain:
		return "name does not exist (NXDOMAIN)"
	case NoData:
		return "no " + e.Type + " records"
	case ServFail:
		return "server failure (SERVFAIL)"
	case Refused:
		return "query refused (REFUSED)"
	case Rcode:
		return "unexpected response code " + rcodeName(e.Rcode)
	case Timeout:
		return "no answer (timed out)"
	case Network:
		return "network error"
	case Malformed:
		return "malformed reply"
	case Canceled:
		return "canceled"
	case BadName:
		return "invalid name"
	}
	return "failed"
}

// Unwrap gives access to the cause: context.Canceled,
// ErrServiceUnavailable, a *net.OpError, ….
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether asking again later may give a different answer.
// Anything that is not a definite "does not exist" counts as temporary: the
// sender must defer, never bounce, a recipient on a failure it cannot prove
// permanent (RFC 5321 §4.5.4.1 expects retries of transient failures).
func (e *Error) Temporary() bool {
	switch e.Kind {
	case NXDomain, NoData, BadName:
		return false
	}
	return true
}

// IsNotFound reports whether err says the name or the records do not exist
// (Kind NXDomain or NoData), as opposed to a failure to find out.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Kind == NXDomain || e.Kind == NoData)
}

// ErrNoServers is the cause when a Resolver has no server to ask.
var ErrNoServers = errors.New("no DNS servers configured")

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

// classify maps a transport error from one exchange to a Kind. parent is the
// caller's context, attempt the per-attempt one derived from it: their state
// is more reliable than the error value, because a cancellation closes the
// socket and surfaces as "use of closed network connection".
func classify(parent, attempt context.Context, err error) Kind {
	if perr := parent.Err(); perr != nil {
		if errors.Is(perr, context.DeadlineExceeded) {
			return Timeout
		}
		return Canceled
	}
	if attempt != nil && attempt.Err() != nil {
		return Timeout
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return Timeout
	}
	// Checked before *net.OpError because these are always transport
	// failures, whatever wraps them.
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return Network
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return Network
	}
	// What is left comes from decoding the answer (dns.ErrId, unpack errors).
	return Malformed
}

// severity orders failures for reporting when several servers failed in
// different ways: an answer from a server (SERVFAIL, REFUSED, a bad reply)
// says more about the name than silence, and silence more than a socket
// error.
func severity(k Kind) int {
	switch k {
	case ServFail, Refused, Rcode, Malformed:
		return 3
	case Timeout:
		return 2
	case Network:
		return 1
	}
	return 0
}
