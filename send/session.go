package send

import (
	"context"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// A session is one SMTP connection (internal/smtpclient: the one client
// that speaks SMTP for mailroute), reused for message after message, with
// what the engines keep about it.
type session struct {
	*smtpclient.Client
	idle time.Time // when it was last put down
	key  string    // direct mode: the recipient domain it serves
	// plain: opened in plaintext after a failed TLS handshake
	// (opportunistic TLS, direct.go).
	plain bool
}

// fallback reports that the session is in plaintext although TLS was
// wanted: STARTTLS refused, or a second try after a failed handshake.
func (s *session) fallback() bool { return s.plain || s.Fallback() }

// dialSpec says how to open one session.
type dialSpec = smtpclient.Options

// Timeouts bound each step of a session (smtpclient.Timeouts).
type Timeouts = smtpclient.Timeouts

// txn is one transaction to make, with the journal's hooks.
type txn = smtpclient.Txn

// maxReuse is how many messages one session carries before it is closed
// and a fresh one opened, as MTAs do: some servers start refusing (or
// leaking) after a few hundred transactions on one connection.
const maxReuse = 1000

// maxIdle is how long a session may rest and still be reused; servers drop
// idle clients after a few minutes (RFC 5321 §4.5.3.2.7), often sooner.
const maxIdle = 60 * time.Second

// dial opens a session: TCP, TLS as the spec says, EHLO, AUTH. Every error
// is an *smtpclient.Error; a failed TLS handshake also wraps
// smtpclient.ErrTLSHandshake.
func dial(ctx context.Context, spec *dialSpec) (*session, error) {
	o := *spec
	if o.MaxMessages <= 0 || o.MaxMessages > maxReuse {
		o.MaxMessages = maxReuse
	}
	c, err := smtpclient.Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	return &session{Client: c}, nil
}

// usable reports whether the session may carry another message.
func (s *session) usable(now time.Time) bool {
	return !s.Broken() && s.Room() && (s.idle.IsZero() || now.Sub(s.idle) < maxIdle)
}

// close ends the session politely when it can (smtpclient.Client.Quit).
func (s *session) close() { s.Quit() }
