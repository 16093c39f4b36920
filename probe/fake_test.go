package probe

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/dnstest"
	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/testpki"
)

// fakeDNS serves zone-file lines on 127.0.0.1. Names listed in servfail
// answer SERVFAIL; unknown names NXDOMAIN.
func fakeDNS(t *testing.T, servfail []string, lines ...string) *resolve.Resolver {
	t.Helper()
	srv := dnstest.Start(t, dnstest.Zone{})
	// gmail.com exists, as on the internet: the resolver check asks about it
	// when a domain is NXDOMAIN (checkResolver), and an honest fake must not
	// deny it.
	srv.Add(`gmail.com. 60 IN TXT "v=spf1 redirect=_spf.google.com"`)
	srv.Add(lines...)
	for _, n := range servfail {
		srv.SetRcode(n, dns.RcodeServerFailure)
	}
	res, err := resolve.New(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	res.Timeout = 500 * time.Millisecond
	return res
}

// pki is one CA and a leaf per name set, per test.
type pki struct {
	ca *testpki.CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := testpki.NewCA("mailroute probe test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca}
}

func (p *pki) server(t *testing.T, names ...string) *tls.Config {
	t.Helper()
	l, err := p.ca.Issue(names, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return l.ServerConfig()
}

// listen opens addr:port (port 0: any) and closes it at the end.
func listen(t *testing.T, ip string, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// goSMTP runs a real go-smtp server on ln, greeting as domain, with STARTTLS
// when tlsCfg is set (or implicit TLS when implicit), offering AUTH PLAIN.
func goSMTP(t *testing.T, ln net.Listener, domain string, tlsCfg *tls.Config, implicit bool, more ...net.Listener) {
	t.Helper()
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{}, nil }))
	s.Domain = domain
	s.ReadTimeout, s.WriteTimeout = 5*time.Second, 5*time.Second
	s.ErrorLog = log.New(io.Discard, "", 0) // probes hang up early on purpose
	if implicit {
		ln = tls.NewListener(ln, tlsCfg)
	} else {
		s.TLSConfig = tlsCfg
	}
	go func() { _ = s.Serve(ln) }()
	for _, l := range more {
		go func() { _ = s.Serve(l) }()
	}
	t.Cleanup(func() { _ = s.Close() })
}

type session struct{}

func (*session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (*session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(string, string, string) error { return errors.New("no") }), nil
}
func (*session) Mail(string, *smtp.MailOptions) error {
	return errors.New("probe must never send MAIL")
}
func (*session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*session) Data(io.Reader) error                 { return nil }
func (*session) Reset()                               {}
func (*session) Logout() error                        { return nil }

// scripted serves each connection with fn: for greetings go-smtp's server
// cannot produce (refusals, silence, multi-line banners, not SMTP at all).
func scripted(t *testing.T, ln net.Listener, fn func(c net.Conn, r *bufio.Reader)) {
	t.Helper()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
}

// plainSMTP answers EHLO with caps and everything else with 250, until QUIT.
func plainSMTP(c net.Conn, r *bufio.Reader, caps ...string) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.Fields(line + " x")[0])
		switch cmd {
		case "EHLO":
			out := "250-fake.test\r\n"
			for i, c := range caps {
				sep := "-"
				if i == len(caps)-1 {
					sep = " "
				}
				out += "250" + sep + c + "\r\n"
			}
			if len(caps) == 0 {
				out = "250 fake.test\r\n"
			}
			_, _ = io.WriteString(c, out)
		case "QUIT":
			_, _ = io.WriteString(c, "221 bye\r\n")
			return
		default:
			_, _ = io.WriteString(c, "250 ok\r\n")
		}
	}
}
