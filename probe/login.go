package probe

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// Credentials are what a login check or a measurement authenticates with.
// The Secret is never written anywhere: no report field, error, evidence
// line or log carries it (the probe's results are redacted of it as a last
// defence, should a server ever echo it back).
type Credentials struct {
	User   string
	Secret string // the password, or the OAuth2 access token for XOAUTH2
	// Mechanism is the SASL mechanism: "PLAIN", "LOGIN", "CRAM-MD5",
	// "XOAUTH2", or "" for the best one the server offers: PLAIN over TLS
	// (the secret travels inside TLS anyway and every server has it), then
	// LOGIN, then CRAM-MD5. XOAUTH2 is used only when asked for: its secret
	// is a token, not a password.
	Mechanism string
	// InsecureAuth allows AUTH without TLS. Without it a secret is never
	// sent in clear: the check stops before AUTH and says why.
	InsecureAuth bool
}

// Mechanisms are the SASL mechanisms Login and Measure can speak.
var Mechanisms = []string{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"}

// Validate reports a credentials error that no server needs to be asked
// about: no user, or a mechanism mailroute does not speak.
func (c Credentials) Validate() error {
	if c.User == "" {
		return fmt.Errorf("no user name given for the login")
	}
	if m := strings.ToUpper(c.Mechanism); m != "" && !slices.Contains(Mechanisms, m) {
		return fmt.Errorf("unsupported AUTH mechanism %q (want one of %s)", c.Mechanism, strings.Join(Mechanisms, ", "))
	}
	return nil
}

// Login checks that cred can log in to the relay endpoint e (Host, Addr,
// Port, TLSMode "implicit" or "starttls", as in a Report): it connects,
// starts TLS as the mode says, says EHLO, authenticates (RFC 4954) and
// QUITs. It never sends MAIL. The certificate must verify (Prober.Roots,
// for e.Host) before AUTH is sent. A refusal keeps the server's words in
// Login.Reply; every other failure is described in Login.Error.
func (p *Prober) Login(ctx context.Context, e *Endpoint, cred Credentials) *Login {
	p = p.prepared()
	start := time.Now()
	l := &Login{Host: e.Host, Addr: e.Addr, Port: e.Port, TLSMode: e.TLSMode}
	defer func() {
		l.Elapsed = Duration(time.Since(start))
		l.Reply, l.Error = redact(l.Reply, cred.Secret), redact(l.Error, cred.Secret)
	}()
	if err := cred.Validate(); err != nil {
		l.Error = err.Error()
		return l
	}
	// Connect, greeting, two EHLOs, STARTTLS and an AUTH exchange: each
	// step is bounded by the session's own timeouts; this caps the sum.
	ctx, cancel := context.WithTimeout(ctx, 5*p.Timeout)
	defer cancel()
	s, err := p.openSession(ctx, e, &cred)
	l.Offered, l.Mechanism = s.offered, s.mech
	if err != nil {
		if err.Code != 0 {
			l.Reply = err.Words()
		}
		l.Error = err.Error()
		return l
	}
	l.OK = true
	s.Close()
	return l
}

// chooseMechanism picks the SASL mechanism: the one asked for, if the
// server offers it, else the best offered (see Credentials.Mechanism).
// Without TLS (only with InsecureAuth) CRAM-MD5 goes first: it at least
// keeps the password itself off the wire (RFC 2195 §1).
func chooseMechanism(want string, offered []string, overTLS bool) (string, *smtpclient.Error) {
	refuse := func(format string, args ...any) (string, *smtpclient.Error) {
		return "", &smtpclient.Error{Command: "AUTH", Permanent: true, Message: fmt.Sprintf(format, args...)}
	}
	if len(offered) == 0 {
		if overTLS {
			return refuse("the server offers no AUTH, even after TLS: it takes no logins here")
		}
		return refuse("the server offers no AUTH on this plaintext session")
	}
	if want = strings.ToUpper(want); want != "" {
		if !slices.Contains(offered, want) {
			return refuse("the server does not offer AUTH %s (it offers %s)", want, strings.Join(offered, " "))
		}
		return want, nil
	}
	prefs := []string{"PLAIN", "LOGIN", "CRAM-MD5"}
	if !overTLS {
		prefs = []string{"CRAM-MD5", "PLAIN", "LOGIN"}
	}
	for _, m := range prefs {
		if slices.Contains(offered, m) {
			return m, nil
		}
	}
	return refuse("the server offers only AUTH %s, which mailroute does not speak", strings.Join(offered, " "))
}

// redact removes a secret from text we keep, in case a server echoed it.
// Very short secrets are left alone: they would blank out ordinary words,
// and a server echoing a password is a remote failure, not our leak.
func redact(text, secret string) string {
	if len(secret) < 4 || text == "" {
		return text
	}
	return strings.ReplaceAll(text, secret, "[secret]")
}

// prepared returns a copy of p with its defaults filled in, so that Login,
// Measure and Identity can be called on a Prober that Run never saw, and
// concurrently, without writing to it.
func (p *Prober) prepared() *Prober {
	q := *p
	q.defaults()
	return &q
}
