package send_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/send"
)

// relayConfig is a one-relay config (587, STARTTLS, AUTH) with extra
// top-level and [relay] lines.
func relayConfig(l *lab.Lab, top, relay string) string {
	return fmt.Sprintf(`mode = "relay"
%s

[relay]
host = %q
port = 587
tls = "starttls"
username = %q
password_env = "LAB_RELAY_PASSWORD"
ca_file = %q
%s
`, top, lab.RelayHost, lab.RelayUser, l.CAFile, relay)
}

// runFull runs send with --json and returns the report, exit code and stderr.
func (m *mailing) runFull(t testing.TB, l *lab.Lab, extra ...string) (*send.Report, int, string) {
	t.Helper()
	res := l.RunMailrouteWith(t, lab.RunOptions{Env: []string{"LAB_RELAY_PASSWORD=" + lab.RelayPassword}}, m.args(extra...)...)
	var rep send.Report
	if err := json.Unmarshal(res.Stdout, &rep); err != nil {
		t.Fatalf("send --json (exit %d): %v\nstdout: %s\nstderr: %s", res.Code, err, res.Stdout, res.Stderr)
	}
	return &rep, res.Code, res.Stderr
}

// TestLabRateAtRelayLimit is issue #9's first case: rate = "20/10s"
// against a Postfix relay that allows 20 messages per 10 s (anvil). A
// token bucket drew 8-70 refusals here; exact windows must draw none,
// and not take much longer than the limit itself needs.
func TestLabRateAtRelayLimit(t *testing.T) {
	l := lab.Start(t, lab.Options{RelayMsgRateLimit: 20, RelayRateWindow: 10 * time.Second})
	m := newLabMailing(t, relayConfig(l, "threads = 3\nrate = \"20/10s\"", ""), addrs(60, lab.AlphaDomain, "r"))
	start := time.Now()
	rep, code, stderr := m.runFull(t, l)
	took := time.Since(start)
	if code != 0 || rep.Counts.Sent != 60 {
		t.Fatalf("exit %d counts %+v reasons %+v error %q\n%s", code, rep.Counts, rep.Reasons, rep.Error, stderr)
	}
	if len(rep.Refusals) != 0 {
		t.Errorf("the report counts refusals at an exact limit: %+v", rep.Refusals)
	}
	if n := strings.Count(l.Log("relay"), "rate limit exceeded"); n != 0 {
		t.Fatalf("the relay logged %d \"rate limit exceeded\" refusals; want 0 at an exact limit", n)
	}
	for _, a := range m.addrs {
		l.WaitDelivered(t, a, 1, 30*time.Second)
	}
	exactlyOnce(t, l, m, nil)
	// Ideal: 20 at once, 20 after 10 s, 20 after 20 s.
	t.Logf("60 messages at 20/10s: %.1fs (ideal 20s: %.2fx); the command took %.1fs with the build", rep.Seconds, rep.Seconds/20, took.Seconds())
	if !strings.Contains(stderr, "waiting for "+lab.RelayHost+"'s 20/10s: next at ") {
		t.Errorf("the wait was not said on stderr:\n%s", stderr)
	}
}

// TestLabQuotaAcrossRuns is issue #9's second case: rate = "3/h", a run,
// then another run of another list within the hour: 3 delivered in all,
// not 6. Each run stops at once (--max-wait) with the time to run again,
// everything not sent still pending.
func TestLabQuotaAcrossRuns(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	cfg := relayConfig(l, "threads = 2", "rate = \"3/h\"")
	first := newLabMailing(t, cfg, addrs(5, lab.AlphaDomain, "q"))
	rep, code, stderr := first.runFull(t, l, "--max-wait", "5s")
	if code != 1 || rep.Counts.Sent != 3 || rep.Counts.Pending != 2 || rep.Counts.Failed+rep.Counts.Deferred != 0 {
		t.Fatalf("first run: exit %d counts %+v error %q\n%s", code, rep.Counts, rep.Error, stderr)
	}
	for _, want := range []string{lab.RelayHost + "'s 3/h holds the mailing: the next message may go at ", "run the same command again after "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("first run's stderr lacks %q:\n%s", want, stderr)
		}
	}

	// Another list, the same relay account: the hour's quota is used.
	second := newLabMailing(t, cfg, addrs(2, lab.AlphaDomain, "s"))
	rep, code, stderr = second.runFull(t, l, "--max-wait", "5s")
	if code != 1 || rep.Counts.Sent != 0 || rep.Counts.Pending != 2 {
		t.Fatalf("second list: exit %d counts %+v error %q\n%s", code, rep.Counts, rep.Error, stderr)
	}
	// The first list again: still nothing more.
	rep, code, _ = first.runFull(t, l, "--max-wait", "5s")
	if code != 1 || rep.ThisRun.Sent != 0 || rep.Counts.Sent != 3 {
		t.Fatalf("first list again: exit %d counts %+v this run %+v", code, rep.Counts, rep.ThisRun)
	}
	time.Sleep(time.Second) // anything sent would be in a Maildir by now
	if got := total(l.Delivered()); got != 3 {
		t.Fatalf("%d delivered within the hour, want 3 (the quota)", got)
	}
}

// TestLabSenderProblem is issue #9's third case: the MX answers 550
// 5.7.26 (DMARC) for the sender's domain. The recipients are not failed:
// after a few refusals the domain is left alone, everyone stays pending,
// and once the cause is mended a plain re-run sends to all, once.
func TestLabSenderProblem(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	dmarc := "550 5.7.26 Unauthenticated email from relay.example is not accepted due to domain's DMARC policy. Please contact the administrator of relay.example domain if this was a legitimate mail."
	if err := l.RestrictMX(map[string]string{lab.RelayDomain: dmarc}, nil); err != nil {
		t.Fatal(err)
	}
	// The MX's refusals of our recipients (RestrictMX's own check asks
	// for probe@, and its log line may come late).
	refusals := func() int {
		n := 0
		for _, line := range strings.Split(l.Log("mx"), "\n") {
			if strings.Contains(line, "5.7.26") && strings.Contains(line, "to=<d0") {
				n++
			}
		}
		return n
	}
	m := newLabMailing(t, "mode = \"direct\"\nthreads = 2\n\n[direct]\nper_domain_threads = 2\n", addrs(40, lab.AlphaDomain, "d"))
	rep, code, stderr := m.runFull(t, l)
	if code != 1 || rep.Counts.Sent+rep.Counts.Failed+rep.Counts.Deferred != 0 || rep.Counts.Pending != 40 {
		t.Fatalf("exit %d counts %+v reasons %+v\n%s", code, rep.Counts, rep.Reasons, stderr)
	}
	asked := refusals()
	// replies.BreakerAfter (3) in a row, plus what the second session had in flight.
	if asked < 3 || asked > 4 {
		t.Errorf("the MX was asked %d times for 40 recipients; want 3 (or 4 with two sessions)", asked)
	}
	if len(rep.Refusals) == 0 || rep.Refusals[0].Cause == "" || !rep.Refusals[0].Paused || rep.Refusals[0].Fault != "sender" {
		t.Fatalf("refusals %+v", rep.Refusals)
	}
	t.Logf("the MX was asked %d times for 40 recipients; refusal: %+v\nstderr: %s", asked, rep.Refusals[0], stderr)
	if !strings.Contains(stderr, "mailroute: "+lab.AlphaDomain+" refuses mail from relay.example") {
		t.Errorf("stderr does not say at once who refuses what:\n%s", stderr)
	}

	// The DNS is mended: a plain re-run sends to everyone, once.
	if err := l.RestrictMX(nil, nil); err != nil {
		t.Fatal(err)
	}
	rep, code, stderr = m.runFull(t, l)
	if code != 0 || rep.Counts.Sent != 40 || rep.ThisRun.Sent != 40 {
		t.Fatalf("after the fix: exit %d counts %+v\n%s", code, rep.Counts, stderr)
	}
	for _, a := range m.addrs {
		l.WaitDelivered(t, a, 1, 30*time.Second)
	}
	exactlyOnce(t, l, m, nil)
}

// TestLabRetryFailed: a recipient the MX refuses for good (550 5.1.1)
// fails; mended, a plain re-run leaves it alone, --retry-failed sends it,
// and never again to those sent.
func TestLabRetryFailed(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	bad := "d001@" + lab.AlphaDomain
	if err := l.RestrictMX(nil, map[string]string{bad: "550 5.1.1 <" + bad + ">: Recipient address rejected: User unknown"}); err != nil {
		t.Fatal(err)
	}
	m := newLabMailing(t, "mode = \"direct\"\nthreads = 2\n", addrs(3, lab.AlphaDomain, "d"))
	rep, code, _ := m.runFull(t, l)
	if code != 1 || rep.Counts.Sent != 2 || rep.Counts.Failed != 1 {
		t.Fatalf("exit %d counts %+v", code, rep.Counts)
	}
	if err := l.RestrictMX(nil, nil); err != nil {
		t.Fatal(err)
	}
	if rep, code, _ = m.runFull(t, l); code != 1 || rep.ThisRun.Sent != 0 || rep.Counts.Failed != 1 {
		t.Fatalf("plain re-run: exit %d counts %+v this run %+v", code, rep.Counts, rep.ThisRun)
	}
	if rep, code, _ = m.runFull(t, l, "--retry-failed"); code != 0 || rep.ThisRun.Sent != 1 || rep.Counts.Sent != 3 {
		t.Fatalf("--retry-failed: exit %d counts %+v this run %+v", code, rep.Counts, rep.ThisRun)
	}
	for _, a := range m.addrs {
		l.WaitDelivered(t, a, 1, 30*time.Second)
	}
	exactlyOnce(t, l, m, nil)
}

// TestLabUnreachableRelay is issue #9's fourth case: a relay host that
// does not resolve ends the run at once; a port that refuses ends it
// after retry.unreachable. Both say why at once, exit 1, and leave every
// recipient pending (nothing sent or failed).
func TestLabUnreachableRelay(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	cases := []struct {
		name, host string
		port       int
		want       string
		bound      time.Duration // the longest the run may take
	}{
		{"nxdomain", "smtp.nosuch.example", 587, "no such host", 20 * time.Second},
		{"refused", lab.RelayHost, 2525, "connection refused", 20 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf("mode = \"relay\"\nthreads = 2\n\n[retry]\nunreachable = \"6s\"\n\n[relay]\nhost = %q\nport = %d\ntls = \"none\"\n", tc.host, tc.port)
			m := newLabMailing(t, cfg, addrs(2, lab.AlphaDomain, "u"))
			lab.Mailroute(t) // built before the clock runs
			start := time.Now()
			rep, code, stderr := m.runFull(t, l)
			took := time.Since(start)
			if code != 1 || rep.Counts.Pending != 2 || rep.Counts.Sent+rep.Counts.Failed+rep.Counts.Deferred != 0 {
				t.Fatalf("exit %d counts %+v error %q\n%s", code, rep.Counts, rep.Error, stderr)
			}
			if !strings.Contains(rep.Error, tc.want) || !strings.Contains(stderr, tc.want) {
				t.Errorf("error %q / stderr lack %q:\n%s", rep.Error, tc.want, stderr)
			}
			if took > tc.bound {
				t.Errorf("the run took %s, want it bounded by retry.unreachable (6s)", took)
			}
			if tc.name == "nxdomain" && !strings.Contains(rep.Hint, "does not exist in DNS") {
				t.Errorf("hint %q does not say the name does not exist", rep.Hint)
			}
			t.Logf("%s: ended in %s: %s", tc.name, took.Round(10*time.Millisecond), rep.Error)
		})
	}
}

// BenchmarkLabRelayLimit: N messages at an exact relay limit (a Postfix
// relay allowing 20 per 10 s, rate = "20/10s"): the run's time over the
// ideal (the limit's own: (N/20 - 1) windows of 10 s) and the refusals the
// relay logged. Goal: ≤ 1.25× ideal, 0 refusals.
func BenchmarkLabRelayLimit(b *testing.B) {
	const n, per, window = 60, 20, 10 * time.Second
	ideal := time.Duration(n/per-1) * window
	for b.Loop() {
		l := lab.Start(b, lab.Options{RelayMsgRateLimit: per, RelayRateWindow: window})
		m := newLabMailing(b, relayConfig(l, fmt.Sprintf("threads = 3\nrate = %q", config.Rate{N: per, Window: window}.String()), ""), addrs(n, lab.AlphaDomain, "b"))
		rep, code, stderr := m.runFull(b, l)
		if code != 0 || rep.Counts.Sent != n {
			b.Fatalf("exit %d counts %+v\n%s", code, rep.Counts, stderr)
		}
		b.ReportMetric(rep.Seconds, "s/run")
		b.ReportMetric(rep.Seconds/ideal.Seconds(), "x_ideal")
		b.ReportMetric(float64(strings.Count(l.Log("relay"), "rate limit exceeded")), "refusals")
	}
}

// TestLabSIGTERMDrains: a service manager stops a run with SIGTERM; it
// must drain like the first Ctrl-C: stop taking recipients, finish what is
// in flight, report, and leave the rest pending.
func TestLabSIGTERMDrains(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	m := newLabMailing(t, relayConfig(l, "threads = 1\nrate = \"1/2s\"", ""), addrs(10, lab.AlphaDomain, "t"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := m.command(ctx, t, l)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for total(l.Delivered()) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("after SIGTERM: %v (want exit 1)", err)
	}
	var rep send.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("no report after SIGTERM: %v\n%s", err, out.String())
	}
	if !rep.Interrupted || rep.Counts.Sent < 1 || rep.Counts.Sent+rep.Counts.Pending != 10 || rep.Counts.Failed+rep.Counts.Deferred+rep.Counts.Unknown != 0 {
		t.Fatalf("after SIGTERM: interrupted %v counts %+v", rep.Interrupted, rep.Counts)
	}
}

// TestLabRelayRefusesFasterThanRate: a case the issue does not name. The
// config's rate (20/10s) is above what the relay allows (5 per 10 s): the
// relay's refusals are not the recipients' fault, so after a few the
// relay is left alone and the run ends at once, saying why (it hung,
// silent, until this test was written), with nothing failed.
func TestLabRelayRefusesFasterThanRate(t *testing.T) {
	l := lab.Start(t, lab.Options{RelayMsgRateLimit: 5, RelayRateWindow: 10 * time.Second})
	m := newLabMailing(t, relayConfig(l, "threads = 2\nrate = \"20/10s\"", ""), addrs(20, lab.AlphaDomain, "r"))
	rep, code, stderr := m.runFull(t, l)
	if code != 1 || rep.Counts.Sent != 5 || rep.Counts.Failed != 0 || rep.Counts.Pending+rep.Counts.Deferred != 15 {
		t.Fatalf("exit %d counts %+v error %q\n%s", code, rep.Counts, rep.Error, stderr)
	}
	if rep.Counts.Deferred != 0 {
		t.Errorf("%d recipients reported deferred: a refusal that held them back leaves them pending", rep.Counts.Deferred)
	}
	if !strings.Contains(rep.Error, "left alone for this run") || !strings.Contains(rep.Hint, "lower the rate") {
		t.Errorf("error %q hint %q: not why the run ended", rep.Error, rep.Hint)
	}
}
