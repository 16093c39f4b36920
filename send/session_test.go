package send

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/smtpclient"
)

var testTimeouts = Timeouts{Connect: 2 * time.Second, Command: 2 * time.Second, Data: 2 * time.Second}

func TestSessionRefusesPasswordWithoutTLS(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.users = map[string]string{"bob": "pw"}
	spec := &dialSpec{Addr: f.addr, TLS: config.TLSNone, Helo: "client.test", Timeouts: testTimeouts,
		Auth: func() (sasl.Client, error) { return sasl.NewPlainClient("", "bob", "pw"), nil }}
	_, err := dial(context.Background(), spec)
	var se *smtpclient.Error
	if !errors.As(err, &se) || !se.Permanent || se.Command != "AUTH" || !strings.Contains(se.Message, "insecure_auth") {
		t.Fatalf("err = %v", err)
	}
	spec.InsecureAuth = true
	s, err := dial(context.Background(), spec)
	if err != nil {
		t.Fatal("with insecure_auth:", err)
	}
	s.close()
}

func TestSessionStartTLSRequired(t *testing.T) {
	f := newFakeServer(t, nil, false) // no TLS config: STARTTLS not offered
	spec := &dialSpec{Addr: f.addr, ServerName: "fake.test", TLS: config.TLSStartTLS, Helo: "client.test", Timeouts: testTimeouts}
	_, err := dial(context.Background(), spec)
	var se *smtpclient.Error
	if !errors.As(err, &se) || !se.Permanent || se.Command != "STARTTLS" {
		t.Fatalf("err = %v", err)
	}
	// Opportunistic goes on in plaintext, and that is not a fallback: TLS
	// was never offered.
	spec.TLS = config.TLSOpportunistic
	s, err := dial(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if s.tls || s.fallback {
		t.Errorf("tls %v fallback %v", s.tls, s.fallback)
	}
	s.close()
}

func TestSessionDeliverAndReuse(t *testing.T) {
	f := newFakeServer(t, nil, false)
	s, err := dial(context.Background(), &dialSpec{Addr: f.addr, TLS: config.TLSNone, Helo: "client.test", Timeouts: testTimeouts})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var calls []string
	for _, to := range []string{"a@x.test", "b@x.test"} {
		m := &txn{From: "s@x.test", To: to, Data: []byte("Subject: x\r\n\r\nhi\r\n"),
			BeforeRcpt: func() error { calls = append(calls, "rcpt"); return nil },
			AfterRcpt:  func() { calls = append(calls, "queued") },
			BeforeDot:  func() error { calls = append(calls, "dot"); return nil }}
		reply, st, err := s.deliver(m)
		if err != nil || st != stageDot || reply == "" {
			t.Fatalf("deliver: %q %v %v", reply, st, err)
		}
	}
	if strings.Join(calls, ",") != "rcpt,queued,dot,rcpt,queued,dot" {
		t.Errorf("journal hooks: %v", calls)
	}
	if f.sessionCount() != 1 || f.ackedFor("b@x.test") != 1 {
		t.Errorf("sessions %d", f.sessionCount())
	}
}

func TestReplyError(t *testing.T) {
	se := smtpclient.Classify("greeting", smtpclient.ReplyError(554, "5.7.1 go away"))
	if se.Code != 554 || se.Enhanced != "5.7.1" || se.Message != "go away" || !se.Permanent {
		t.Errorf("%+v", se)
	}
}
