package send_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
)

// Issue #12: transactions streamed with BDAT (RFC 3030) to a real Postfix
// relay, which offers CHUNKING and PIPELINING. Every case checks where each
// recipient ends: in the report, and in the MX's mailboxes behind the relay.

// TestLabStreamMany: 150 recipients over one session, several transactions
// in flight; each arrives exactly once.
func TestLabStreamMany(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	m := newLabMailing(t, relayConfig(l, "threads = 1", ""), addrs(150, lab.AlphaDomain, "s"))
	rep, code, stderr := m.runFull(t, l)
	if code != 0 || rep.Counts.Sent != 150 {
		t.Fatalf("exit %d counts %+v reasons %+v error %q\n%s", code, rep.Counts, rep.Reasons, rep.Error, stderr)
	}
	if rep.Streamed < 150 || rep.MaxInFlight < 2 {
		t.Errorf("streamed %d, at most %d in flight: want all streamed, several at once", rep.Streamed, rep.MaxInFlight)
	}
	for _, a := range m.addrs {
		l.WaitDelivered(t, a, 1, 30*time.Second)
	}
	exactlyOnce(t, l, m, nil)
	t.Logf("150 streamed, at most %d in flight, %.0f msg/s", rep.MaxInFlight, rep.PerSecond)
}

// TestLabStreamRefusedInTheMiddle: the relay refuses some recipients at
// RCPT; Postfix still reads their chunks and answers "554 no valid
// recipients". Exactly those fail, with the relay's words, and every other
// one is delivered once, on the same sessions.
func TestLabStreamRefusedInTheMiddle(t *testing.T) {
	list := addrs(60, lab.AlphaDomain, "m")
	bad := map[string]string{}
	for _, i := range []int{7, 8, 30, 59} {
		bad[list[i]] = "550 5.1.1 <" + list[i] + ">: Recipient address rejected: no such user here"
	}
	l := lab.Start(t, lab.Options{RelayRcptReplies: bad})
	m := newLabMailing(t, relayConfig(l, "threads = 2", ""), list)
	rep, _, stderr := m.runFull(t, l)
	if rep.Counts.Sent != 56 || rep.Counts.Failed != 4 || rep.Counts.Unknown+rep.Counts.Deferred+rep.Counts.Pending != 0 || rep.Streamed < 56 {
		t.Fatalf("counts %+v streamed %d reasons %+v error %q\n%s", rep.Counts, rep.Streamed, rep.Reasons, rep.Error, stderr)
	}
	if len(rep.Reasons) == 0 || !strings.Contains(rep.Reasons[0].Reason, "5.1.1") {
		t.Errorf("reasons %+v", rep.Reasons)
	}
	deliveredButRefused(t, l, m, bad, nil)
}

// deliveredButRefused checks the MX's mailboxes: every recipient once,
// those refused never, those unknown at most once.
func deliveredButRefused(t *testing.T, l *lab.Lab, m *mailing, refused map[string]string, unknown []string) {
	t.Helper()
	skip := map[string]bool{}
	for a := range refused {
		skip[a] = true
	}
	for _, a := range unknown {
		skip[a] = true
	}
	for _, a := range m.addrs {
		if !skip[a] {
			l.WaitDelivered(t, a, 1, 30*time.Second)
		}
	}
	exactlyOnce(t, l, m, skip)
	for a := range refused {
		if n := l.Delivered()[a]; n != 0 {
			t.Errorf("%s was refused yet delivered %d times", a, n)
		}
	}
}

// TestLabStream421InTheMiddle: after two errors in a session the relay
// answers 421 and hangs up (smtpd_hard_error_limit = 2), with transactions
// in flight behind it. The server read none of those: they go again on a
// fresh session, and every good recipient arrives once.
func TestLabStream421InTheMiddle(t *testing.T) {
	list := addrs(80, lab.AlphaDomain, "q")
	bad := map[string]string{}
	for _, i := range []int{10, 11, 40, 41} {
		bad[list[i]] = "550 5.1.1 <" + list[i] + ">: Recipient address rejected: no such user here"
	}
	l := lab.Start(t, lab.Options{RelayRcptReplies: bad, RelayHardErrorLimit: 2})
	m := newLabMailing(t, relayConfig(l, "threads = 1", "")+"\n[retry]\nbackoff = \"1s\"\nmax_backoff = \"1s\"\n", list)
	rep, _, stderr := m.runFull(t, l)
	// Postfix closes after its 421 with our pipeline unread, so the kernel
	// may answer with a reset that drops the replies before it: those
	// transactions are unknown (the client cannot tell), never more than
	// one session's window, and each delivered at most once.
	c := rep.Counts
	if c.Sent+c.Unknown+c.Failed != 80 || c.Unknown > 32+16 || c.Sent < 76-c.Unknown || c.Failed > 4 {
		t.Fatalf("counts %+v reasons %+v error %q\n%s", c, rep.Reasons, rep.Error, stderr)
	}
	if !strings.Contains(l.Log("relay"), "too many errors") {
		t.Error("the relay never said 421 too many errors: the case was not met")
	}
	if rep.Streamed == 0 || rep.MaxInFlight < 2 {
		t.Errorf("streamed %d, at most %d in flight: the 421 did not meet a stream", rep.Streamed, rep.MaxInFlight)
	}
	deliveredButRefused(t, l, m, bad, rep.UnknownRecipients)
	t.Logf("counts %+v", c)
}

// TestLabStreamReset: the relay's smtpd processes are killed (-9) while
// transactions are in flight. Each recipient must end right: a "sent" one
// is delivered once, an "unknown" one at most once, nothing twice, and the
// unknowns are no more than the in-flight window.
func TestLabStreamReset(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	m := newLabMailing(t, relayConfig(l, "threads = 2", "")+"\n[retry]\nbackoff = \"1s\"\nmax_backoff = \"1s\"\n", addrs(800, lab.AlphaDomain, "k"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan time.Time, 1)
	go func() {
		// Once the relay has taken a few hundred, reset its sessions.
		for ctx.Err() == nil && strings.Count(l.Log("relay"), "status=sent") < 100 {
			time.Sleep(20 * time.Millisecond)
		}
		_ = exec.CommandContext(ctx, "pkill", "-9", "-f", "syslog_name=postfix/submission").Run()
		done <- time.Now()
	}()
	rep, _, stderr := m.runFull(t, l)
	killed := <-done
	if !killed.Before(rep.Finished) || !strings.Contains(l.Log("relay"), "killed by signal 9") {
		t.Fatalf("the relay's sessions were not killed while the run went on (killed %s, run finished %s)", killed, rep.Finished)
	}
	if rep.Counts.Sent+rep.Counts.Unknown != 800 || rep.Counts.Failed != 0 {
		t.Fatalf("counts %+v reasons %+v error %q\n%s", rep.Counts, rep.Reasons, rep.Error, stderr)
	}
	if rep.MaxInFlight < 2 {
		t.Errorf("at most %d in flight: the reset did not meet a stream", rep.MaxInFlight)
	}
	if rep.Counts.Unknown > 2*(32+16) {
		t.Errorf("%d unknown: more than the in-flight window of 2 sessions (README Design: the journal)", rep.Counts.Unknown)
	}
	unknown := map[string]bool{}
	for _, a := range rep.UnknownRecipients {
		unknown[a] = true
	}
	for _, a := range m.addrs {
		if !unknown[a] {
			l.WaitDelivered(t, a, 1, 60*time.Second)
		}
	}
	exactlyOnce(t, l, m, unknown)
	t.Logf("after the reset: %d sent, %d unknown (%v)", rep.Counts.Sent, rep.Counts.Unknown, rep.UnknownRecipients)
}

// TestLabStreamFallsBackToData: a relay without CHUNKING gets DATA, one
// transaction in flight per session, as before.
func TestLabStreamFallsBackToData(t *testing.T) {
	l := lab.Start(t, lab.Options{RelayNoChunking: true})
	m := newLabMailing(t, relayConfig(l, "threads = 1", ""), addrs(40, lab.AlphaDomain, "d"))
	rep, code, stderr := m.runFull(t, l)
	if code != 0 || rep.Counts.Sent != 40 || rep.Streamed != 0 {
		t.Fatalf("exit %d counts %+v streamed %d error %q\n%s", code, rep.Counts, rep.Streamed, rep.Error, stderr)
	}
	for _, a := range m.addrs {
		l.WaitDelivered(t, a, 1, 30*time.Second)
	}
	exactlyOnce(t, l, m, nil)
}

// TestLabStreamKill is the crash test with streaming: mailroute is killed
// (-9) while transactions are in flight to the relay. The re-run must send
// every recipient the relay never took, never one twice; the ones in
// flight are listed unknown, no more than the window of its 2 sessions
// (README "Design: the journal": 32 + 16 + 1 each).
func TestLabStreamKill(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	m := newLabMailing(t, relayConfig(l, "threads = 2", ""), addrs(600, lab.AlphaDomain, "x"))
	lab.Mailroute(t) // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := m.command(ctx, t, l, "--trace")
	var trace lockedBuffer
	cmd.Stderr = &trace
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil && strings.Count(l.Log("relay"), "sasl_username=") < 100 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	taken := strings.Count(l.Log("relay"), "sasl_username=")
	if n := bdatAhead(trace.String()); n < 2 {
		t.Fatalf("the killed run had at most %d BDAT in flight: the kill did not meet a stream", n)
	}
	if taken >= len(m.addrs) {
		t.Fatalf("the run finished (%d taken by the relay) before it could be killed", taken)
	}
	rep, _ := m.run(t, l)
	unknown := map[string]bool{}
	for _, a := range rep.UnknownRecipients {
		unknown[a] = true
	}
	if rep.Counts.Sent+rep.Counts.Unknown != len(m.addrs) || len(unknown) != rep.Counts.Unknown || rep.Counts.Unknown > 2*(32+16+1) {
		t.Fatalf("after resume: counts %+v, unknown listed %v", rep.Counts, rep.UnknownRecipients)
	}
	deliveredButRefused(t, l, m, nil, rep.UnknownRecipients)
	t.Logf("killed with %d taken by the relay; resume sent %d more; %d unknown", taken, rep.ThisRun.Sent, rep.Counts.Unknown)
}

// bdatAhead reads a --trace and returns the most BDAT commands one session
// sent with no reply read in between: how many transactions it had in
// flight at least.
func bdatAhead(trace string) int {
	run := map[string]int{}
	most := 0
	for _, line := range strings.Split(trace, "\n") {
		session, rest, ok := strings.Cut(line, "] ")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, " -> BDAT "):
			run[session]++
			most = max(most, run[session])
		case strings.HasPrefix(rest, "<-"):
			run[session] = 0
		}
	}
	return most
}

// lockedBuffer is a bytes.Buffer a child process writes to while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
