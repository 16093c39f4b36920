package send

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/journal"
)

func addrs(n int, domain string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user%d@%s", i+1, domain)
	}
	return out
}

func wantCounts(t *testing.T, rep *Report, want Counts) {
	t.Helper()
	if rep.Counts != want {
		t.Errorf("counts = %+v, want %+v", rep.Counts, want)
	}
}

func TestRelaySendsAllReusingSessions(t *testing.T) {
	f := newFakeServer(t, nil, false)
	rcpts := addrs(30, "example.test")
	m := newMailing(t, f.addr, rcpts...)
	m.cfg.Threads = 3
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 30})
	if rep.ExitCode() != 0 {
		t.Errorf("exit code %d", rep.ExitCode())
	}
	for _, r := range rcpts {
		if n := f.ackedFor(r); n != 1 {
			t.Errorf("%s acknowledged %d times", r, n)
		}
	}
	if n := f.sessionCount(); n > 3 {
		t.Errorf("%d sessions for 30 messages on 3 threads: sessions are not reused", n)
	}
	if rec := m.record(t, rcpts[0]); rec.State != journal.StateSent || rec.Attempts != 1 {
		t.Errorf("record = %+v", rec)
	}
}

func Test421MidSessionReconnects(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.onRcpt = func(c *smtp.Conn, to string, n int) error {
		if to == "user3@example.test" && n == 1 {
			return replyAndClose(c, "421 4.7.0 too busy, closing")
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(6, "example.test")...)
	m.cfg.Threads = 1
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 6})
	if n := f.sessionCount(); n != 2 {
		t.Errorf("sessions = %d, want 2 (one reconnect after 421)", n)
	}
	if rec := m.record(t, "user3@example.test"); rec.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", rec.Attempts)
	}
}

func TestResetAfterDotIsUnknownNotRetried(t *testing.T) {
	f := newFakeServer(t, nil, false)
	var drop atomic.Bool
	drop.Store(true)
	f.onData = func(c *smtp.Conn, to string, n int) error {
		if to == "user2@example.test" && drop.Load() {
			// Took the message, then the line died before the reply.
			f.mu.Lock()
			f.acked[to]++
			f.mu.Unlock()
			_ = c.Conn().Close()
			return errHandled
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(4, "example.test")...)
	// One transaction at a time: streamed, the ones in flight behind
	// user2 went out too and are unknown as well (TestLabStreamReset).
	m.opts.NoStreaming = true
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 3, Unknown: 1})
	if len(rep.UnknownRecipients) != 1 || rep.UnknownRecipients[0] != "user2@example.test" {
		t.Errorf("unknown recipients listed: %v", rep.UnknownRecipients)
	}
	if rep.ExitCode() != 1 {
		t.Errorf("exit code %d, want 1", rep.ExitCode())
	}
	if rec := m.record(t, "user2@example.test"); rec.State != journal.StateUnknown || rec.Attempts != 1 {
		t.Errorf("record = %+v, want unknown after 1 attempt", rec)
	}

	// A re-run leaves it alone...
	rep, err = m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 3, Unknown: 1})
	if n := f.ackedFor("user2@example.test"); n != 1 {
		t.Errorf("re-run sent the unknown recipient again (%d)", n)
	}
	// ...unless asked.
	drop.Store(false)
	m.opts.RetryUnknown = true
	rep, err = m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 4})
	if rep.ThisRun.Sent != 1 {
		t.Errorf("this run sent %d, want 1", rep.ThisRun.Sent)
	}
}

func TestTarpitTimesOutToDeferred(t *testing.T) {
	f := newFakeServer(t, nil, false)
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	f.onRcpt = func(c *smtp.Conn, to string, n int) error {
		if to == "user1@example.test" {
			<-never // a tarpit: no reply at all
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(3, "example.test")...)
	m.cfg.Retry.Attempts = 1
	m.opts.Timeouts.Command = time.Second
	// DATA: the RCPT times out before the message goes. Streamed, the
	// message went with the RCPT, so a silent server leaves it unknown
	// (smtpclient's TestStreamResetInFlight; README "Design: the journal").
	m.opts.NoStreaming = true
	start := time.Now()
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 2, Deferred: 1})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run took %s", d)
	}
	rec := m.record(t, "user1@example.test")
	if rec.State != journal.StateDeferred || !strings.Contains(rec.Reason, "timeout") || rec.NextAt.IsZero() {
		t.Errorf("record = %+v", rec)
	}
	if rep.NextRetry == nil {
		t.Error("report has no next_retry")
	}
}

func Test450ThenSuccess(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.onRcpt = func(c *smtp.Conn, to string, n int) error {
		if to == "user2@example.test" && n == 1 {
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(3, "example.test")...)
	m.cfg.Threads = 1
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 3})
	if rec := m.record(t, "user2@example.test"); rec.State != journal.StateSent || rec.Attempts != 2 {
		t.Errorf("record = %+v, want sent after 2 attempts", rec)
	}
	if n := f.sessionCount(); n != 1 {
		t.Errorf("sessions = %d: a 4xx must keep the session", n)
	}
}

func Test452SplitsTheTransaction(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.onRcpt = func(c *smtp.Conn, to string, n int) error {
		if to == "user1@example.test" && n == 1 {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "too many recipients"}
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(2, "example.test")...)
	m.cfg.Retry.Backoff = config.Duration(time.Hour) // only the immediate retry can help
	m.cfg.Retry.MaxBackoff = config.Duration(time.Hour)
	m.cfg.Retry.Within = config.Duration(2 * time.Hour)
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 2})
	if rec := m.record(t, "user1@example.test"); rec.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", rec.Attempts)
	}
}

func Test550FailsWithTheServersWords(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.onRcpt = func(c *smtp.Conn, to string, n int) error {
		if to == "user2@example.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user"}
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(3, "example.test")...)
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 2, Failed: 1})
	rec := m.record(t, "user2@example.test")
	if rec.State != journal.StateFailed || !strings.Contains(rec.Reason, "550 5.1.1 <user2@example.test>: no such user") {
		t.Errorf("record = %+v", rec)
	}
	if f.rcptSeen["user2@example.test"] != 1 {
		t.Errorf("a 5xx was retried")
	}
	if len(rep.Reasons) != 1 || !strings.Contains(rep.Reasons[0].Reason, "<recipient>") {
		t.Errorf("reasons = %+v", rep.Reasons)
	}
	// Failed is final: a re-run does not try again.
	if _, err := m.run(t); err != nil {
		t.Fatal(err)
	}
	if f.rcptSeen["user2@example.test"] != 1 {
		t.Errorf("a failed recipient was tried by the re-run")
	}
}

func TestRerunAfterCompleteRunSendsNothing(t *testing.T) {
	f := newFakeServer(t, nil, false)
	m := newMailing(t, f.addr, addrs(5, "example.test")...)
	if _, err := m.run(t); err != nil {
		t.Fatal(err)
	}
	sessions := f.sessionCount()
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 5})
	if rep.ThisRun != (Counts{}) || rep.Run != 2 {
		t.Errorf("second run: this_run %+v, run %d", rep.ThisRun, rep.Run)
	}
	if f.sessionCount() != sessions {
		t.Error("the re-run connected to the server")
	}
}

func TestRerunWithChangedListIsRefused(t *testing.T) {
	f := newFakeServer(t, nil, false)
	m := newMailing(t, f.addr, addrs(2, "example.test")...)
	if _, err := m.run(t); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.opts.ListPath, []byte("email,name\nother@example.test,X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := m.run(t)
	var se *Error
	if !errors.As(err, &se) || !se.Setup || !errors.Is(err, journal.ErrMismatch) || !strings.Contains(se.Hint, "--new-run") {
		t.Fatalf("err = %v, want a setup error with a --new-run hint", err)
	}
	m.opts.NewRun = true
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 1})
}

func TestJournalFileMode(t *testing.T) {
	f := newFakeServer(t, nil, false)
	m := newMailing(t, f.addr, addrs(1, "example.test")...)
	if _, err := m.run(t); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(m.opts.ListPath + ".journal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, want 0600", fi.Mode().Perm())
	}
}

// A run killed mid-way (hard cancel) and then run again delivers every
// recipient the server acknowledged exactly once.
func TestKilledRunThenRerunSendsOnce(t *testing.T) {
	f := newFakeServer(t, nil, false)
	var acks atomic.Int64
	f.onData = func(c *smtp.Conn, to string, n int) error {
		time.Sleep(2 * time.Millisecond)
		acks.Add(1)
		return nil
	}
	rcpts := addrs(200, "example.test")
	m := newMailing(t, f.addr, rcpts...)
	m.cfg.Threads = 4
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for acks.Load() < 40 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	rep, _ := m.runCtx(t, ctx)
	if rep == nil || rep.Counts.Sent == 0 || rep.Counts.Sent == 200 {
		t.Fatalf("the kill did not land mid-way: %+v", rep)
	}
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Sent+rep.Counts.Unknown != 200 || rep.Counts.Deferred+rep.Counts.Failed+rep.Counts.Pending != 0 {
		t.Errorf("after the re-run: %+v", rep.Counts)
	}
	for _, r := range rcpts {
		n := f.ackedFor(r)
		if n > 1 {
			t.Errorf("%s acknowledged %d times", r, n)
		}
		if rec := m.record(t, r); rec.State == journal.StateSent && n != 1 {
			t.Errorf("%s recorded sent but acknowledged %d times", r, n)
		}
	}
}

func TestDrainStopsTakingWork(t *testing.T) {
	f := newFakeServer(t, nil, false)
	var acks atomic.Int64
	f.onData = func(c *smtp.Conn, to string, n int) error {
		time.Sleep(5 * time.Millisecond)
		acks.Add(1)
		return nil
	}
	m := newMailing(t, f.addr, addrs(100, "example.test")...)
	e, err := New(m.cfg, m.opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for acks.Load() < 10 {
			time.Sleep(time.Millisecond)
		}
		e.Drain()
	}()
	rep, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.Counts.Pending == 0 || rep.Counts.Unknown != 0 || rep.Counts.Sent < 10 {
		t.Errorf("drained run: interrupted %v, %+v", rep.Interrupted, rep.Counts)
	}
	rep, err = m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 100})
}

func TestTLSAndAuth(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		t.Run(fmt.Sprintf("implicit=%v", implicit), func(t *testing.T) {
			srvTLS, ca := testCert(t, t.TempDir())
			f := newFakeServer(t, srvTLS, implicit)
			f.users = map[string]string{"bob": "s3cret"}
			m := newMailing(t, f.addr, addrs(3, "example.test")...)
			t.Setenv("MAILROUTE_TEST_PW", "s3cret")
			r := &m.cfg.Relay[0]
			r.TLS, r.Auth, r.Username, r.PasswordEnv, r.CAFile = config.TLSStartTLS, "plain", "bob", "MAILROUTE_TEST_PW", ca
			if implicit {
				r.TLS = config.TLSImplicit
			}
			rep, err := m.run(t)
			if err != nil {
				t.Fatal(err)
			}
			wantCounts(t, rep, Counts{Sent: 3})
		})
	}
}

func TestBadPasswordStopsTheRun(t *testing.T) {
	srvTLS, ca := testCert(t, t.TempDir())
	f := newFakeServer(t, srvTLS, false)
	f.users = map[string]string{"bob": "s3cret"}
	m := newMailing(t, f.addr, addrs(3, "example.test")...)
	t.Setenv("MAILROUTE_TEST_PW", "wrong")
	r := &m.cfg.Relay[0]
	r.TLS, r.Auth, r.Username, r.PasswordEnv, r.CAFile = config.TLSStartTLS, "plain", "bob", "MAILROUTE_TEST_PW", ca
	rep, err := m.run(t)
	var se *Error
	if !errors.As(err, &se) || se.Setup || !strings.Contains(err.Error(), "535") {
		t.Fatalf("err = %v, want the relay's 535", err)
	}
	if rep == nil || rep.Counts.Pending != 3 || rep.Counts.Failed != 0 {
		t.Errorf("report = %+v: a bad password must not fail recipients", rep)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Error("the error shows the password")
	}
}

func TestUntrustedCertificateStopsTheRun(t *testing.T) {
	srvTLS, _ := testCert(t, t.TempDir())
	f := newFakeServer(t, srvTLS, false)
	m := newMailing(t, f.addr, addrs(1, "example.test")...)
	m.cfg.Relay[0].TLS = config.TLSStartTLS // no ca_file: the self-signed certificate is not trusted
	_, err := m.run(t)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate error", err)
	}
}

func TestTwoRelaysShareTheWork(t *testing.T) {
	a := newFakeServer(t, nil, false)
	b := newFakeServer(t, nil, false)
	m := newMailing(t, a.addr, addrs(40, "example.test")...)
	m.cfg.Threads = 2
	m.cfg.Relay = append(m.cfg.Relay, config.Relay{Host: "127.0.0.1", Port: b.port, TLS: config.TLSNone, Auth: "none"})
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 40})
	if a.sessionCount() == 0 || b.sessionCount() == 0 {
		t.Errorf("sessions: a %d, b %d: both relays should work", a.sessionCount(), b.sessionCount())
	}
}

func TestRelayRefusingTheSenderStopsTheRun(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.users = map[string]string{"bob": "pw"} // MAIL without AUTH gets 502 5.7.0
	m := newMailing(t, f.addr, addrs(3, "example.test")...)
	rep, err := m.run(t)
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "MAIL: 502") || !strings.Contains(se.Hint, "sender") {
		t.Fatalf("err = %v", err)
	}
	if rep.Counts.Failed != 0 || rep.Counts.Pending != 3 {
		t.Errorf("counts %+v: the relay's refusal is not the recipients' failure", rep.Counts)
	}
}

// A relay that caps the messages per connection: with messages_per_session
// set, every session stops at the cap and no MAIL is refused; without it
// (the control), MAIL past the cap is refused and those recipients wait for
// a retry.
func TestRelayMessagesPerSession(t *testing.T) {
	for _, capped := range []bool{true, false} {
		f := newFakeServer(t, nil, false)
		f.perSession = 5
		rcpts := addrs(12, "example.test")
		m := newMailing(t, f.addr, rcpts...)
		m.cfg.Threads = 1
		if capped {
			m.cfg.Relay[0].MessagesPerSession = 5
		}
		rep, err := m.run(t)
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		sessions, over := f.sessions, f.overCap
		f.mu.Unlock()
		switch {
		case capped && (rep.Counts != Counts{Sent: 12} || over != 0 || sessions != 3):
			t.Errorf("messages_per_session = 5: counts %+v, %d MAIL refused, %d sessions (want all sent, 0, 3)", rep.Counts, over, sessions)
		case !capped && over == 0:
			t.Errorf("no cap set: the server refused nothing, so the test shows nothing")
		}
	}
}
