package probe

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

func measure(t *testing.T, p *Prober, e *Endpoint, opt MeasureOptions) (*Measurement, []string) {
	t.Helper()
	// Cancelled only when the test ends: the cancel would close any
	// session Measure left open, and waitIdle is there to see those.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	var mu sync.Mutex
	var progress []string
	opt.Progress = func(s string) {
		mu.Lock()
		progress = append(progress, s)
		mu.Unlock()
	}
	m := p.Measure(ctx, e, opt)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), testSecret) {
		t.Fatalf("the secret is in the measurement: %s", b)
	}
	t.Logf("measurement in %s:\n  %s", m.Elapsed, strings.Join(m.Evidence, "\n  "))
	return m, progress
}

// waitIdle waits until the server has seen every session end: Measure
// closes its sessions before it returns, and the server notices the QUIT
// a moment later, so the wait is on the server's count, woken by each
// Logout, with a deadline only for a session that never ends.
func waitIdle(t *testing.T, b *relayBackend) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = sync.NewCond(&b.mu)
	}
	late := false
	timer := time.AfterFunc(3*time.Second, func() {
		b.mu.Lock()
		late = true
		b.changed.Broadcast()
		b.mu.Unlock()
	})
	defer timer.Stop()
	for b.active > 0 && b.data == 0 && !late {
		b.changed.Wait()
	}
	if b.data != 0 {
		t.Fatalf("the server saw %d DATA commands", b.data)
	}
	if b.active > 0 {
		t.Fatalf("%d sessions still open at the server 3s after Measure returned", b.active)
	}
}

// TestMeasureLimits: 3 sessions at once, 5 MAIL per 1.5 s per client. The
// measurement must find exactly 3 and 5, a per-client (not per-session)
// cap, and a window of 1.5 s within the precision it states.
func TestMeasureLimits(t *testing.T) {
	pk := newPKI(t)
	const window = 1500 * time.Millisecond
	b := &relayBackend{user: testUser, pass: testSecret, maxSessions: 3, maxMail: 5, window: window}
	e := startRelay(t, b, "implicit", pk.server(t, relayHost))
	cred := &Credentials{User: testUser, Secret: testSecret}
	m, progress := measure(t, loginProber(pk.ca.Pool()), e, MeasureOptions{Cred: cred, To: "bob@example.test"})
	waitIdle(t, b)

	if m.Error != "" {
		t.Fatalf("error %q", m.Error)
	}
	if m.SessionLimit != 3 || m.SessionCapped || !strings.Contains(m.SessionReply, "421 4.7.0 "+relayHost+" Error: too many connections") {
		t.Errorf("sessions %d capped %v reply %q", m.SessionLimit, m.SessionCapped, m.SessionReply)
	}
	if m.Transactions != 5 || m.TransactionsCapped || m.TransactionReply != "450 4.7.1 Error: too much mail from 127.0.0.1" || m.TransactionCommand != "MAIL" {
		t.Errorf("transactions %d capped %v reply %q at %q", m.Transactions, m.TransactionsCapped, m.TransactionReply, m.TransactionCommand)
	}
	if m.PerSession {
		t.Errorf("the cap is per client, not per session")
	}
	// The window is timed by the client, the server counts it by its own
	// clock: each end of it may be off by a command's round trip, so the
	// slack beyond the stated precision is the measured P90 latency
	// (doubled: two ends), not a fixed number that a loaded machine
	// exceeds. Only the coarse cycle writes a note; the fine one's
	// precision is about half its step, far below a quarter window.
	w, prec := time.Duration(m.Window), time.Duration(m.WindowPrecision)
	slack := 2 * time.Duration(m.LatencyP90)
	if m.WindowNote != "" || prec <= 0 || prec >= window/4 || w-prec > window+slack || w+prec < window-slack {
		t.Errorf("window %s ± %s, want %s within the stated precision and %s of latency (note %q)", w, prec, window, slack, m.WindowNote)
	}
	if m.LatencyMedian <= 0 || m.LatencyP90 < m.LatencyMedian || m.SetupTLS <= 0 || m.SetupAuth <= 0 {
		t.Errorf("latency %s/%s setup %s/%s", m.LatencyMedian, m.LatencyP90, m.SetupTLS, m.SetupAuth)
	}
	if len(m.Evidence) < 5 {
		t.Errorf("evidence %q", m.Evidence)
	}
	all := strings.Join(progress, "\n")
	for _, want := range []string{"sessions: 3 open", "transactions: 5 accepted", "window: retrying in"} {
		if !strings.Contains(all, want) {
			t.Errorf("progress lacks %q:\n%s", want, all)
		}
	}
}

func TestMeasurePerSessionCap(t *testing.T) {
	pk := newPKI(t)
	b := &relayBackend{user: testUser, pass: testSecret, maxMail: 4, perSession: true}
	e := startRelay(t, b, "starttls", pk.server(t, relayHost))
	m, _ := measure(t, loginProber(pk.ca.Pool()), e, MeasureOptions{Cred: &Credentials{User: testUser, Secret: testSecret}, MaxSessions: 4})
	waitIdle(t, b)
	if m.SessionLimit != 4 || !m.SessionCapped || m.SessionReply != "" {
		t.Errorf("sessions %d capped %v reply %q", m.SessionLimit, m.SessionCapped, m.SessionReply)
	}
	if m.Transactions != 4 || !m.PerSession || m.Window != 0 || !strings.HasPrefix(m.TransactionReply, "452 4.5.3") {
		t.Errorf("transactions %d per session %v window %s reply %q", m.Transactions, m.PerSession, m.Window, m.TransactionReply)
	}
	if m.Elapsed > Duration(2*time.Second) {
		t.Errorf("took %s: a per-session cap needs no window measurement", m.Elapsed)
	}
}

func TestMeasureWindowBudget(t *testing.T) {
	pk := newPKI(t)
	t.Run("skipped", func(t *testing.T) {
		b := &relayBackend{user: testUser, pass: testSecret, maxMail: 3, window: time.Hour}
		e := startRelay(t, b, "implicit", pk.server(t, relayHost))
		m, _ := measure(t, loginProber(pk.ca.Pool()), e, MeasureOptions{Cred: &Credentials{User: testUser, Secret: testSecret}, MaxSessions: 2, WindowBudget: -1})
		waitIdle(t, b)
		if m.Transactions != 3 || m.Window != 0 || m.WindowNote != "window not measured (skipped)" || m.Elapsed > Duration(2*time.Second) {
			t.Errorf("%+v", m)
		}
	})
	t.Run("longer than the budget", func(t *testing.T) {
		b := &relayBackend{user: testUser, pass: testSecret, maxMail: 3, window: time.Hour}
		e := startRelay(t, b, "implicit", pk.server(t, relayHost))
		m, _ := measure(t, loginProber(pk.ca.Pool()), e, MeasureOptions{Cred: &Credentials{User: testUser, Secret: testSecret}, MaxSessions: 2, WindowBudget: 2500 * time.Millisecond})
		waitIdle(t, b)
		if m.Window != 0 || !strings.Contains(m.WindowNote, "still refused") || m.Elapsed > Duration(4*time.Second) {
			t.Errorf("window %s note %q in %s", m.Window, m.WindowNote, m.Elapsed)
		}
	})
}

func TestMeasureRefusalIsNotALimit(t *testing.T) {
	pk := newPKI(t)
	// No credentials: the relay wants AUTH before MAIL (530, permanent).
	b := &relayBackend{user: testUser, pass: testSecret}
	e := startRelay(t, b, "implicit", pk.server(t, relayHost))
	m, _ := measure(t, loginProber(pk.ca.Pool()), e, MeasureOptions{From: "me@example.test", MaxSessions: 2})
	waitIdle(t, b)
	if m.Transactions != 0 || !strings.HasPrefix(m.TransactionReply, "530 5.7.0") || m.PerSession || !strings.Contains(m.WindowNote, "not a limit") {
		t.Errorf("%+v", m)
	}
}

func TestMeasureFailures(t *testing.T) {
	pk := newPKI(t)
	t.Run("wrong password", func(t *testing.T) {
		b := &relayBackend{user: testUser, pass: testSecret}
		e := startRelay(t, b, "implicit", pk.server(t, relayHost))
		m, _ := measure(t, loginProber(pk.ca.Pool()), e, MeasureOptions{Cred: &Credentials{User: testUser, Secret: "wrong-" + testSecret}})
		if m.SessionLimit != 0 || !strings.Contains(m.Error, "could not open a session at AUTH: 535 5.7.8") {
			t.Errorf("%+v", m)
		}
	})
	t.Run("nothing listens", func(t *testing.T) {
		ln := listen(t, "127.0.0.1", 0)
		e := &Endpoint{Host: relayHost, Addr: "127.0.0.1", Port: portOf(ln), TLSMode: "implicit"}
		ln.Close()
		m, _ := measure(t, loginProber(nil), e, MeasureOptions{From: "me@example.test"})
		if !strings.Contains(m.Error, "at connect: connection refused") {
			t.Errorf("%+v", m)
		}
	})
	t.Run("bad addresses", func(t *testing.T) {
		e := &Endpoint{Host: relayHost, Addr: "127.0.0.1", Port: 1}
		for _, c := range []struct {
			opt  MeasureOptions
			want string
		}{
			{MeasureOptions{}, "needs a sender (From) address"},
			{MeasureOptions{From: "a@b.test\r\nDATA", To: "c@d.test"}, "not a plain mail address"},
		} {
			if m, _ := measure(t, loginProber(nil), e, c.opt); !strings.Contains(m.Error, c.want) {
				t.Errorf("error %q, want %q", m.Error, c.want)
			}
		}
	})
}

// TestMeasureCancelClosesSessions: cancelled while it waits for the
// window, Measure returns at once and leaves no session open.
func TestMeasureCancelClosesSessions(t *testing.T) {
	pk := newPKI(t)
	b := &relayBackend{user: testUser, pass: testSecret, maxSessions: 2, maxMail: 2, window: time.Hour}
	e := startRelay(t, b, "implicit", pk.server(t, relayHost))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Measurement)
	opt := MeasureOptions{Cred: &Credentials{User: testUser, Secret: testSecret}, Progress: func(s string) {
		if strings.HasPrefix(s, "window:") {
			cancel()
		}
	}}
	go func() { done <- loginProber(pk.ca.Pool()).Measure(ctx, e, opt) }()
	select {
	case m := <-done:
		if !strings.Contains(m.Error, "cancelled") || m.Transactions != 2 || m.SessionLimit != 2 {
			t.Errorf("%+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Measure did not return after cancel")
	}
	cancel()
	waitIdle(t, b)
}
