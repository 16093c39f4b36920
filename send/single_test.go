package send

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/journal"
)

// singleConfig is a relay config for the fake server at addr.
func singleConfig(addr string) *config.Config {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	cfg := &config.Config{Mode: config.ModeRelay, Threads: 4, Helo: "client.test", Rate: config.Rates{{N: 1, Window: time.Hour}},
		Relay: []config.Relay{{Host: host, Port: p, TLS: config.TLSNone, Auth: "none"}},
		Retry: config.Retry{Attempts: 5, Backoff: config.Duration(time.Hour), MaxBackoff: config.Duration(2 * time.Hour)}}
	cfg.ApplyDefaults()
	return cfg
}

var fastTimeouts = Timeouts{Connect: 2 * time.Second, Command: 2 * time.Second, Data: 2 * time.Second}

func TestSendSingleOutcomes(t *testing.T) {
	for _, c := range []struct {
		name   string
		onData func(c *smtp.Conn, to string, n int) error
		want   journal.State
		words  string
	}{
		{"sent", nil, journal.StateSent, "OK: queued"},
		{"refused", func(*smtp.Conn, string, int) error {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "policy says no"}
		}, journal.StateFailed, "550 5.7.1 policy says no"},
		// One attempt: a 4xx is reported at once, not retried for an hour.
		{"deferred", func(*smtp.Conn, string, int) error {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}, journal.StateDeferred, "451 4.3.0 try later"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeServer(t, nil, false)
			f.onData = c.onData
			cfg := singleConfig(f.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := SendSingle(ctx, cfg, Single{From: "me@example.test", To: "me@example.test", Subject: "test",
				Text: "literal {{.name}} braces\n", Timeouts: fastTimeouts})
			if err != nil {
				t.Fatal(err)
			}
			if res.State != c.want || !strings.Contains(res.Reply, c.words) {
				t.Errorf("got %s %q, want %s with %q", res.State, res.Reply, c.want, c.words)
			}
			if res.Elapsed > 10*time.Second {
				t.Errorf("took %s", res.Elapsed)
			}
			// The caller's config is untouched.
			if cfg.Threads != 4 || cfg.Retry.Attempts != 5 || cfg.Rate.IsZero() {
				t.Errorf("config changed: %+v", cfg)
			}
		})
	}
}

// TestSendSingleMessage: the body is literal, headers are as given.
func TestSendSingleMessage(t *testing.T) {
	// The fake server discards the data; this one keeps it.
	var got string
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &captureSession{out: &got}, nil
	}))
	srv.Domain, srv.AllowInsecureAuth, srv.ErrorLog = "fake.test", true, nopLogger{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	res, err := SendSingle(context.Background(), singleConfig(ln.Addr().String()),
		Single{From: "me@example.test", To: "you@example.test", Subject: "mailroute test", Text: "a {{ b }} c\n", Timeouts: fastTimeouts})
	if err != nil || res.State != journal.StateSent {
		t.Fatalf("%v %+v", err, res)
	}
	for _, want := range []string{"From: <me@example.test>", "Subject: mailroute test", "To: <you@example.test>", "a {{ b }} c"} {
		if !strings.Contains(got, want) {
			t.Errorf("message lacks %q:\n%s", want, got)
		}
	}
}

type captureSession struct{ out *string }

func (s *captureSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *captureSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *captureSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	*s.out = string(b)
	return err
}
func (s *captureSession) Reset()        {}
func (s *captureSession) Logout() error { return nil }

// TestSendSingleLogin: the password can be given in memory (Relay.Password
// on a copy); a wrong one is an error with the relay's words, not a result.
func TestSendSingleLogin(t *testing.T) {
	srvTLS, ca := testCert(t, t.TempDir())
	f := newFakeServer(t, srvTLS, true)
	f.users = map[string]string{"bob": "s3cret"}
	cfg := singleConfig(f.addr)
	r := &cfg.Relay[0]
	r.TLS, r.Auth, r.Username, r.CAFile, r.Password = config.TLSImplicit, "plain", "bob", ca, "s3cret"
	res, err := SendSingle(context.Background(), cfg, Single{From: "bob@example.test", To: "bob@example.test", Subject: "t", Text: "x\n", Timeouts: fastTimeouts})
	if err != nil || res.State != journal.StateSent || f.ackedFor("bob@example.test") != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	r.Password = "wrong"
	_, err = SendSingle(context.Background(), cfg, Single{From: "bob@example.test", To: "bob@example.test", Subject: "t", Text: "x\n", Timeouts: fastTimeouts})
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "535") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("err = %v, want the relay's 535 without the password", err)
	}
}

func TestSendSingleRefusesHeaderInjection(t *testing.T) {
	_, err := SendSingle(context.Background(), singleConfig("127.0.0.1:1"), Single{From: "a@example.test", To: "a@example.test", Subject: "x\nBcc: b@example.test"})
	var se *Error
	if !errors.As(err, &se) || !se.Setup {
		t.Fatalf("err = %v, want a setup error", err)
	}
}

// TestSendSingleSaysItWaits: a relay that refuses connections is tried
// again for retry.unreachable; the person waiting is told at once, with
// the time it gives up, not left with a silent wait.
func TestSendSingleSaysItWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	cfg := singleConfig(addr)
	cfg.Retry.Unreachable = config.Duration(1500 * time.Millisecond)
	var said []string
	_, err = SendSingle(context.Background(), cfg, Single{From: "me@example.test", To: "me@example.test", Subject: "t", Text: "x\n",
		Timeouts: fastTimeouts, Notify: func(msg string) { said = append(said, msg) }})
	if err == nil {
		t.Fatal("sent through a relay that refuses connections")
	}
	if len(said) != 1 || !strings.Contains(said[0], "trying again until") {
		t.Errorf("told %q, want one notice of the retries and until when", said)
	}
}
