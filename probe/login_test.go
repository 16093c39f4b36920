package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	testUser   = "alice@relay.test"
	testSecret = "s3cret-7f1c9e-do-not-leak" // unique: searched for in every report
	relayHost  = "smtp.relay.test"
)

// relayBackend is a go-smtp backend that plays a submission relay with
// limits: at most maxSessions at once (421 from NewSession beyond), and at
// most maxMail MAIL commands per window (450 beyond; the window starts at
// the first MAIL after the last one ran out, and refused MAILs count too,
// as with Postfix's anvil), or per session when perSession is set.
type relayBackend struct {
	user, pass  string // "": no AUTH required
	maxSessions int
	maxMail     int
	window      time.Duration
	perSession  bool

	mu          sync.Mutex
	active      int
	auths       int // AUTH commands that reached the backend
	data        int // DATA commands: must stay 0
	mails       int
	windowStart time.Time
	changed     *sync.Cond // broadcast when a session ends; see waitIdle
}

// sessionEnded wakes waitIdle; b.mu is held.
func (b *relayBackend) sessionEnded() {
	if b.changed != nil {
		b.changed.Broadcast()
	}
}

var errTooMuchMail = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Error: too much mail from 127.0.0.1"}

func (b *relayBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxSessions > 0 && b.active >= b.maxSessions {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: relayHost + " Error: too many connections from 127.0.0.1"}
	}
	b.active++
	return &relaySess{b: b}, nil
}

func (b *relayBackend) counts() (active, auths, data int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active, b.auths, b.data
}

type relaySess struct {
	b      *relayBackend
	authed bool
	mails  int
}

func (s *relaySess) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *relaySess) Auth(mech string) (sasl.Server, error) {
	s.b.mu.Lock()
	s.b.auths++
	s.b.mu.Unlock()
	check := func(user, pass string) error {
		if user != s.b.user || pass != s.b.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Error: authentication failed: bad user name or password"}
		}
		s.authed = true
		return nil
	}
	if mech == sasl.Login {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
}

func (s *relaySess) Mail(string, *smtp.MailOptions) error {
	b := s.b
	if b.user != "" && !s.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxMail == 0 {
		return nil
	}
	if b.perSession {
		s.mails++
		if s.mails > b.maxMail {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many messages in this session"}
		}
		return nil
	}
	now := time.Now()
	if b.windowStart.IsZero() || now.Sub(b.windowStart) >= b.window {
		b.windowStart, b.mails = now, 0
	}
	b.mails++
	if b.mails > b.maxMail {
		return errTooMuchMail
	}
	return nil
}

func (s *relaySess) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *relaySess) Data(io.Reader) error {
	s.b.mu.Lock()
	s.b.data++
	s.b.mu.Unlock()
	return errors.New("the probe must never send DATA")
}
func (s *relaySess) Reset() {}
func (s *relaySess) Logout() error {
	s.b.mu.Lock()
	s.b.active--
	s.b.sessionEnded()
	s.b.mu.Unlock()
	return nil
}

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if resp != nil { // an initial response is the user name
			l.user, l.step = string(resp), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

// startRelay serves b on 127.0.0.1 in mode "implicit", "starttls" or
// "plain" (no TLS; AUTH allowed in clear so that a client sending it would
// be seen) and returns the relay endpoint, as a report would have it.
func startRelay(t *testing.T, b *relayBackend, mode string, tlsCfg *tls.Config) *Endpoint {
	t.Helper()
	ln := listen(t, "127.0.0.1", 0)
	s := smtp.NewServer(b)
	s.Domain = relayHost
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	var serve net.Listener = ln
	switch mode {
	case "implicit":
		serve = tls.NewListener(ln, tlsCfg)
	case "starttls":
		s.TLSConfig = tlsCfg
	default:
		s.AllowInsecureAuth = true
		mode = "starttls" // what a report says of a submission port
	}
	go func() { _ = s.Serve(serve) }()
	t.Cleanup(func() { _ = s.Close() })
	return &Endpoint{Role: RoleRelay, Host: relayHost, Addr: "127.0.0.1", Port: portOf(ln), TLSMode: mode}
}

func loginProber(pool *x509.CertPool) *Prober {
	return &Prober{Timeout: 2 * time.Second, Roots: pool, Helo: "client.test"}
}

func login(t *testing.T, p *Prober, e *Endpoint, cred Credentials) *Login {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := p.Login(ctx, e, cred)
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Secret != "" && strings.Contains(string(b), cred.Secret) {
		t.Fatalf("the secret is in the login report: %s", b)
	}
	return l
}

func TestLogin(t *testing.T) {
	pk := newPKI(t)
	tlsCfg := pk.server(t, relayHost)
	good := Credentials{User: testUser, Secret: testSecret}
	for _, c := range []struct {
		name, mode string
		cred       Credentials
		ok         bool
		mech       string
		reply      string
	}{
		{"PLAIN over STARTTLS", "starttls", good, true, "PLAIN", ""},
		{"PLAIN over implicit TLS", "implicit", good, true, "PLAIN", ""},
		{"LOGIN when asked", "starttls", Credentials{User: testUser, Secret: testSecret, Mechanism: "login"}, true, "LOGIN", ""},
		{"wrong password keeps the server's words", "implicit", Credentials{User: testUser, Secret: "wrong-" + testSecret}, false, "PLAIN",
			"535 5.7.8 Error: authentication failed: bad user name or password"},
		{"wrong password with LOGIN", "starttls", Credentials{User: testUser, Secret: "wrong-" + testSecret, Mechanism: "LOGIN"}, false, "LOGIN", "535 5.7.8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &relayBackend{user: testUser, pass: testSecret}
			e := startRelay(t, b, c.mode, tlsCfg)
			l := login(t, loginProber(pk.ca.Pool()), e, c.cred)
			if l.OK != c.ok || l.Mechanism != c.mech || !strings.HasPrefix(l.Reply, c.reply) {
				t.Fatalf("got ok=%v mech=%q reply=%q error=%q, want ok=%v mech=%q reply %q", l.OK, l.Mechanism, l.Reply, l.Error, c.ok, c.mech, c.reply)
			}
			if strings.Join(l.Offered, " ") != "PLAIN LOGIN" || l.Host != relayHost || l.Elapsed <= 0 {
				t.Errorf("report %+v", l)
			}
			if !c.ok && !strings.Contains(l.Error, "AUTH: 535") {
				t.Errorf("error %q should name the AUTH step and the code", l.Error)
			}
		})
	}
}

func TestLoginNeverSendsTheSecretUnprotected(t *testing.T) {
	pk := newPKI(t)
	t.Run("plaintext refused without InsecureAuth", func(t *testing.T) {
		b := &relayBackend{user: testUser, pass: testSecret}
		e := startRelay(t, b, "plain", nil)
		l := login(t, loginProber(pk.ca.Pool()), e, Credentials{User: testUser, Secret: testSecret})
		if l.OK || !strings.Contains(l.Error, "does not offer STARTTLS") || !strings.Contains(l.Error, "--insecure-auth") {
			t.Fatalf("%+v", l)
		}
		if _, auths, _ := b.counts(); auths != 0 {
			t.Fatalf("the server saw %d AUTH commands, want none", auths)
		}
	})
	t.Run("plaintext allowed with InsecureAuth", func(t *testing.T) {
		b := &relayBackend{user: testUser, pass: testSecret}
		e := startRelay(t, b, "plain", nil)
		l := login(t, loginProber(pk.ca.Pool()), e, Credentials{User: testUser, Secret: testSecret, InsecureAuth: true})
		if !l.OK || l.Mechanism != "PLAIN" {
			t.Fatalf("%+v", l)
		}
	})
	t.Run("unverified certificate stops before AUTH", func(t *testing.T) {
		for _, mode := range []string{"implicit", "starttls"} {
			b := &relayBackend{user: testUser, pass: testSecret}
			e := startRelay(t, b, mode, pk.server(t, relayHost))
			l := login(t, loginProber(x509.NewCertPool()), e, Credentials{User: testUser, Secret: testSecret, InsecureAuth: true})
			if l.OK || !strings.Contains(l.Error, "TLS certificate not accepted") || !strings.Contains(l.Error, "unknown authority") {
				t.Fatalf("%s: %+v", mode, l)
			}
			if _, auths, _ := b.counts(); auths != 0 {
				t.Fatalf("%s: the server saw %d AUTH commands, want none", mode, auths)
			}
		}
	})
	t.Run("wrong host name", func(t *testing.T) {
		b := &relayBackend{user: testUser, pass: testSecret}
		e := startRelay(t, b, "implicit", pk.server(t, "other.test"))
		l := login(t, loginProber(pk.ca.Pool()), e, Credentials{User: testUser, Secret: testSecret})
		if l.OK || !strings.Contains(l.Error, "the certificate is for other.test, not "+relayHost) {
			t.Fatalf("%+v", l)
		}
	})
}

func TestLoginUsageErrors(t *testing.T) {
	p := loginProber(nil)
	e := &Endpoint{Host: relayHost, Addr: "127.0.0.1", Port: 1, TLSMode: "starttls"}
	for cred, want := range map[Credentials]string{
		{Secret: testSecret}: "no user name",
		{User: testUser, Secret: testSecret, Mechanism: "NTLM"}: `unsupported AUTH mechanism "NTLM"`,
	} {
		if l := login(t, p, e, cred); l.OK || !strings.Contains(l.Error, want) {
			t.Errorf("%+v: error %q, want %q", cred.Mechanism, l.Error, want)
		}
	}
}

// scriptedAuth is a plaintext server offering AUTH mechs and checking one
// exchange with fn, which reads the client's lines itself.
func scriptedAuth(t *testing.T, mechs string, fn func(c net.Conn, r *bufio.Reader, auth string) bool) *Endpoint {
	t.Helper()
	ln := listen(t, "127.0.0.1", 0)
	scripted(t, ln, func(c net.Conn, r *bufio.Reader) {
		_, _ = io.WriteString(c, "220 auth.test ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			verb := strings.ToUpper(strings.Fields(line + " x")[0])
			switch verb {
			case "EHLO":
				_, _ = io.WriteString(c, "250-auth.test\r\n250-AUTH "+mechs+"\r\n250 8BITMIME\r\n")
			case "AUTH":
				if fn(c, r, line) {
					_, _ = io.WriteString(c, "235 2.7.0 Authentication successful\r\n")
				} else {
					_, _ = io.WriteString(c, "535 5.7.8 Authentication credentials invalid\r\n")
				}
			case "QUIT":
				_, _ = io.WriteString(c, "221 2.0.0 Bye\r\n")
				return
			default:
				_, _ = io.WriteString(c, "502 5.5.2 what?\r\n")
			}
		}
	})
	return &Endpoint{Role: RoleRelay, Host: "auth.test", Addr: "127.0.0.1", Port: portOf(ln), TLSMode: "starttls"}
}

func readLine(r *bufio.Reader) string {
	l, _ := r.ReadString('\n')
	return strings.TrimRight(l, "\r\n")
}

// TestLoginCRAMMD5 uses the example of RFC 2195 §2: user "tim", secret
// "tanstaaftanstaaf", and the challenge below must give
// "tim b913a602c7eda7a495b4e6e7334d3890". Over plaintext (allowed here)
// CRAM-MD5 is preferred to PLAIN: it keeps the password off the wire.
func TestLoginCRAMMD5(t *testing.T) {
	const challenge = "<1896.697170952@postoffice.reston.mci.net>"
	var got string
	e := scriptedAuth(t, "PLAIN CRAM-MD5", func(c net.Conn, r *bufio.Reader, auth string) bool {
		if auth != "AUTH CRAM-MD5" {
			got = auth
			return false
		}
		_, _ = io.WriteString(c, "334 "+base64.StdEncoding.EncodeToString([]byte(challenge))+"\r\n")
		b, _ := base64.StdEncoding.DecodeString(readLine(r))
		got = string(b)
		return got == "tim b913a602c7eda7a495b4e6e7334d3890"
	})
	l := login(t, loginProber(nil), e, Credentials{User: "tim", Secret: "tanstaaftanstaaf", InsecureAuth: true})
	if !l.OK || l.Mechanism != "CRAM-MD5" {
		t.Fatalf("%+v; the server got %q", l, got)
	}
	l = login(t, loginProber(nil), e, Credentials{User: "tim", Secret: "wrong-secret", InsecureAuth: true})
	if l.OK || l.Reply != "535 5.7.8 Authentication credentials invalid" {
		t.Fatalf("%+v", l)
	}
}

func TestLoginXOAUTH2(t *testing.T) {
	e := scriptedAuth(t, "XOAUTH2 PLAIN", func(c net.Conn, r *bufio.Reader, auth string) bool {
		ir, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "AUTH XOAUTH2 "))
		if string(ir) == "user="+testUser+"\x01auth=Bearer good-token-123\x01\x01" {
			return true
		}
		// Google's failure: a JSON status as a challenge, an empty answer, then 535.
		_, _ = io.WriteString(c, "334 "+base64.StdEncoding.EncodeToString([]byte(`{"status":"400","schemes":"Bearer"}`))+"\r\n")
		return readLine(r) == "will never match"
	})
	if l := login(t, loginProber(nil), e, Credentials{User: testUser, Secret: "good-token-123", Mechanism: "XOAUTH2", InsecureAuth: true}); !l.OK {
		t.Fatalf("%+v", l)
	}
	l := login(t, loginProber(nil), e, Credentials{User: testUser, Secret: "bad-token-456789", Mechanism: "XOAUTH2", InsecureAuth: true})
	if l.OK || !strings.HasPrefix(l.Reply, "535") {
		t.Fatalf("%+v", l)
	}
	// Not asked for, XOAUTH2 is never chosen: its secret is a token.
	if l := login(t, loginProber(nil), e, Credentials{User: testUser, Secret: "good-token-123", InsecureAuth: true}); l.Mechanism != "PLAIN" {
		t.Fatalf("%+v", l)
	}
}

func TestChooseMechanism(t *testing.T) {
	for _, c := range []struct {
		want    string
		offered string
		tls     bool
		got     string
		err     string
	}{
		{"", "LOGIN PLAIN CRAM-MD5", true, "PLAIN", ""},
		{"", "LOGIN CRAM-MD5", true, "LOGIN", ""},
		{"", "LOGIN PLAIN CRAM-MD5", false, "CRAM-MD5", ""},
		{"", "GSSAPI NTLM", true, "", "offers only AUTH GSSAPI NTLM"},
		{"", "", true, "", "offers no AUTH, even after TLS"},
		{"cram-md5", "PLAIN LOGIN", true, "", "does not offer AUTH CRAM-MD5 (it offers PLAIN LOGIN)"},
		{"LOGIN", "PLAIN LOGIN", true, "LOGIN", ""},
	} {
		got, err := chooseMechanism(c.want, strings.Fields(c.offered), c.tls)
		if got != c.got || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Message, c.err)) {
			t.Errorf("chooseMechanism(%q, %q, %v) = %q, %v; want %q, %q", c.want, c.offered, c.tls, got, err, c.got, c.err)
		}
	}
}
