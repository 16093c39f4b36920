package send

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/journal"
)

// fakeServer is an in-process SMTP server on 127.0.0.1 whose replies a
// test scripts with hooks (after chasquid's courier fake server). It counts
// what it acknowledged, per recipient, so a test can check "exactly once".
type fakeServer struct {
	t    *testing.T
	srv  *smtp.Server
	addr string
	port int

	mu       sync.Mutex
	acked    map[string]int // 250 after the dot
	rcptSeen map[string]int // RCPT commands per recipient
	sessions int
	open     int  // sessions open now
	maxOpen  int  // the most open at once
	refuse   int  // connections still to refuse with a 421 greeting
	sink     bool // count nothing per recipient (memory and speed tests)
	// perSession, when set, caps the messages one session may carry, as
	// some providers do: a MAIL past it gets 451.
	perSession int
	overCap    int // MAIL commands refused for the cap

	// Hooks; nil means accept. n is how many times this recipient was seen
	// by the hook (1 the first time).
	onRcpt func(c *smtp.Conn, to string, n int) error
	onData func(c *smtp.Conn, to string, n int) error
	// users, when set, requires AUTH PLAIN with one of these.
	users map[string]string
}

// errHandled tells the fake that the hook already wrote to the connection.
var errHandled = errors.New("handled")

func newFakeServer(t testing.TB, tlsCfg *tls.Config, implicit bool) *fakeServer {
	f := &fakeServer{acked: map[string]int{}, rcptSeen: map[string]int{}}
	if tt, ok := t.(*testing.T); ok {
		f.t = tt
	}
	f.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		f.mu.Lock()
		f.sessions++
		f.open++
		f.maxOpen = max(f.maxOpen, f.open)
		f.mu.Unlock()
		return &fakeSession{f: f, c: c}, nil
	}))
	f.srv.Domain = "fake.test"
	f.srv.TLSConfig = tlsCfg
	f.srv.AllowInsecureAuth = true
	f.srv.ErrorLog = nopLogger{}
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.port = ln.Addr().(*net.TCPAddr).Port
	go f.srv.Serve(&gateListener{Listener: ln, f: f})
	t.Cleanup(func() { f.srv.Close() })
	return f
}

// gateListener refuses the first f.refuse connections with a 421
// greeting, as a busy MX does.
type gateListener struct {
	net.Listener
	f *fakeServer
}

func (g *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.f.mu.Lock()
		refuse := g.f.refuse > 0
		if refuse {
			g.f.refuse--
		}
		g.f.mu.Unlock()
		if !refuse {
			return c, nil
		}
		_, _ = c.Write([]byte("421 4.3.2 busy, try another MX\r\n"))
		_ = c.Close()
	}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

func (f *fakeServer) ackedFor(to string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acked[to]
}

func (f *fakeServer) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions
}

type fakeSession struct {
	f      *fakeServer
	c      *smtp.Conn
	to     string
	authed bool
	mails  int // MAIL commands accepted in this session
}

func (s *fakeSession) AuthMechanisms() []string {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		s.f.mu.Lock()
		p, ok := s.f.users[user]
		s.f.mu.Unlock()
		if ok && p == pass {
			s.authed = true
			return nil
		}
		return smtp.ErrAuthFailed
	}), nil
}

func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error {
	s.f.mu.Lock()
	needAuth := s.f.users != nil
	s.f.mu.Unlock()
	if needAuth && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.perSession > 0 && s.mails >= s.f.perSession {
		s.f.overCap++
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many messages in this connection"}
	}
	s.mails++
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.f.sink {
		return nil
	}
	s.f.mu.Lock()
	s.f.rcptSeen[to]++
	n := s.f.rcptSeen[to]
	hook := s.f.onRcpt
	s.f.mu.Unlock()
	if hook != nil {
		if err := hook(s.c, to, n); err != nil {
			return err
		}
	}
	s.to = to
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if s.f.sink {
		return nil
	}
	s.f.mu.Lock()
	n := s.f.rcptSeen[s.to]
	hook := s.f.onData
	s.f.mu.Unlock()
	if hook != nil {
		if err := hook(s.c, s.to, n); err != nil {
			return err
		}
	}
	s.f.mu.Lock()
	s.f.acked[s.to]++
	s.f.mu.Unlock()
	return nil
}

func (s *fakeSession) Reset() { s.to = "" }
func (s *fakeSession) Logout() error {
	s.f.mu.Lock()
	s.f.open--
	s.f.mu.Unlock()
	return nil
}

// replyAndClose writes a raw reply and closes the connection, as a server
// does with 421 (RFC 5321 §3.8).
func replyAndClose(c *smtp.Conn, line string) error {
	_, _ = c.Conn().Write([]byte(line + "\r\n"))
	_ = c.Conn().Close()
	return errHandled
}

// testCert makes a self-signed certificate for 127.0.0.1 and writes its
// PEM to dir/ca.pem (for ca_file).
func testCert(t testing.TB, dir string) (*tls.Config, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"fake.test"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, caPath
}

// mailing is a test mailing: a list, a template and a config in a temp dir.
type mailing struct {
	dir  string
	cfg  *config.Config
	opts Options
}

const testTemplate = "From: Sender <sender@example.test>\nSubject: Hello {{.name}}\n\nHi {{.name}},\nthis is a test.\n"

// newMailing writes a list of the given addresses and a template, and a
// relay config pointing at addr (host:port) with fast retries.
func newMailing(t testing.TB, addr string, rcpts ...string) *mailing {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("email,name\n")
	for i, r := range rcpts {
		fmt.Fprintf(&b, "%s,Person %d\n", r, i+1)
	}
	list := filepath.Join(dir, "list.csv")
	msg := filepath.Join(dir, "msg.txt")
	if err := os.WriteFile(list, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msg, []byte(testTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	cfg := &config.Config{
		Mode: config.ModeRelay, Threads: 2, Helo: "client.test",
		Relay: []config.Relay{{Host: host, Port: p, TLS: config.TLSNone, Auth: "none"}},
		Retry: config.Retry{Attempts: 3, Backoff: config.Duration(10 * time.Millisecond), MaxBackoff: config.Duration(40 * time.Millisecond), Within: config.Duration(time.Minute)},
	}
	cfg.ApplyDefaults()
	return &mailing{dir: dir, cfg: cfg, opts: Options{
		ListPath: list, TextPath: msg,
		Timeouts: Timeouts{Connect: 2 * time.Second, Command: 2 * time.Second, Data: 2 * time.Second},
	}}
}

func (m *mailing) run(t testing.TB) (*Report, error) {
	t.Helper()
	return m.runCtx(t, context.Background())
}

func (m *mailing) runCtx(t testing.TB, ctx context.Context) (*Report, error) {
	t.Helper()
	e, err := New(m.cfg, m.opts)
	if err != nil {
		return nil, err
	}
	return e.Run(ctx)
}

// record reads one recipient's journal record after a run.
func (m *mailing) record(t testing.TB, addr string) journal.Record {
	t.Helper()
	rec, found := m.lookup(t, addr)
	if !found {
		t.Fatalf("no journal record for %s", addr)
	}
	return rec
}

// lookup reads one recipient's journal record, if it has one.
func (m *mailing) lookup(t testing.TB, addr string) (journal.Record, bool) {
	t.Helper()
	j, err := journal.Peek(m.opts.ListPath + ".journal")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var rec journal.Record
	found := false
	err = j.Each(func(_ int, r journal.Record) error {
		if strings.EqualFold(r.Addr, addr) {
			rec, found = r, true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the journal: %v", err)
	}
	return rec, found
}
