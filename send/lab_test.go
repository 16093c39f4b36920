package send_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/send"
)

// mailing is a config, a list and a message written for one lab run.
type mailing struct {
	dir, config, list, message string
	addrs                      []string
}

func newLabMailing(t testing.TB, config string, addrs []string) *mailing {
	t.Helper()
	dir := t.TempDir()
	m := &mailing{dir: dir, config: filepath.Join(dir, "mailing.toml"), list: filepath.Join(dir, "list.csv"),
		message: filepath.Join(dir, "message.txt"), addrs: addrs}
	var csv strings.Builder
	csv.WriteString("email,name,code\n")
	for i, a := range addrs {
		fmt.Fprintf(&csv, "%s,Person %d,C%05d\n", a, i, i)
	}
	write := func(path, body string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(m.config, config, 0o600)
	write(m.list, csv.String(), 0o644)
	write(m.message, "From: Lab Sender <alice@relay.example>\nSubject: Hello {{.name}}\n\nDear {{.name}},\nyour code is {{.code}}.\n", 0o644)
	return m
}

// run runs mailroute send in the lab namespace and decodes its --json report.
func (m *mailing) run(t testing.TB, l *lab.Lab, extra ...string) (*send.Report, int) {
	t.Helper()
	res := l.RunMailroute(t, []string{"LAB_RELAY_PASSWORD=" + lab.RelayPassword}, m.args(extra...)...)
	var rep send.Report
	if err := json.Unmarshal(res.Stdout, &rep); err != nil {
		t.Fatalf("send --json (exit %d): %v\nstdout: %s\nstderr: %s", res.Code, err, res.Stdout, res.Stderr)
	}
	return &rep, res.Code
}

func (m *mailing) args(extra ...string) []string {
	return append([]string{"send", "--config", m.config, "--list", m.list, "--message", m.message,
		"--json", "--connect-timeout", "2s"}, extra...)
}

func (m *mailing) command(ctx context.Context, t testing.TB, l *lab.Lab, extra ...string) *exec.Cmd {
	cmd := l.Command(ctx, lab.Mailroute(t), m.args(extra...)...)
	cmd.Env = append(os.Environ(), "LAB_RELAY_PASSWORD="+lab.RelayPassword)
	return cmd
}

func addrs(n int, domain string, prefix string) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%03d@%s", prefix, i, domain))
	}
	return out
}

// exactlyOnce checks that every address has exactly one message in the MX
// mailboxes, personalised with its own code.
func exactlyOnce(t *testing.T, l *lab.Lab, m *mailing, skip map[string]bool) {
	t.Helper()
	got := l.Delivered()
	for i, a := range m.addrs {
		if skip[a] {
			if got[a] > 1 {
				t.Errorf("%s (unknown) delivered %d times", a, got[a])
			}
			continue
		}
		if got[a] != 1 {
			t.Errorf("%s delivered %d times, want exactly 1", a, got[a])
			continue
		}
		// Maildir files have bare LF line ends.
		msg := bytes.ReplaceAll(l.Messages(a)[0], []byte("\r\n"), []byte("\n"))
		if want := fmt.Sprintf("Subject: Hello Person %d\n", i); !bytes.Contains(msg, []byte(want)) {
			t.Errorf("%s: message lacks %q:\n%s", a, want, msg)
		}
		if want := fmt.Sprintf("Dear Person %d,\nyour code is C%05d.", i, i); !bytes.Contains(msg, []byte(want)) {
			t.Errorf("%s: message lacks %q:\n%s", a, want, msg)
		}
	}
}

// TestLabRelaySend: 200 personalised recipients through the real Postfix
// relay, shared by a 587 (STARTTLS) and a 465 (implicit TLS) entry, both
// with AUTH; each must reach the MX exactly once.
func TestLabRelaySend(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	cfg := fmt.Sprintf(`mode = "relay"
threads = 4

[[relay]]
host = %[1]q
port = 587
tls = "starttls"
username = %[2]q
password_env = "LAB_RELAY_PASSWORD"
ca_file = %[3]q
threads = 2

[[relay]]
host = %[1]q
port = 465
tls = "implicit"
username = %[2]q
password_env = "LAB_RELAY_PASSWORD"
ca_file = %[3]q
threads = 2
`, lab.RelayHost, lab.RelayUser, l.CAFile)
	m := newLabMailing(t, cfg, addrs(200, lab.AlphaDomain, "rcpt"))
	rep, code := m.run(t, l)
	if code != 0 || rep.Counts.Sent != 200 || rep.Counts.Failed+rep.Counts.Deferred+rep.Counts.Unknown != 0 {
		t.Fatalf("exit %d counts %+v reasons %+v error %q", code, rep.Counts, rep.Reasons, rep.Error)
	}
	for _, a := range m.addrs {
		l.WaitDelivered(t, a, 1, 30*time.Second)
	}
	exactlyOnce(t, l, m, nil)
	relayLog := l.Log("relay")
	for _, svc := range []string{"submission/smtpd", "submissions/smtpd"} {
		if !strings.Contains(relayLog, svc) || !strings.Contains(relayLog, "sasl_username="+lab.RelayUser) {
			t.Errorf("relay log shows no authenticated %s session", svc)
		}
	}
	t.Logf("relay: %d sent in %.2fs (%.0f msg/s)", rep.Counts.Sent, rep.Seconds, rep.PerSecond)

	// A re-run sends nothing.
	rep, code = m.run(t, l)
	if code != 0 || rep.ThisRun.Sent != 0 || rep.Counts.Sent != 200 {
		t.Errorf("re-run: exit %d this run %+v", code, rep.ThisRun)
	}
	time.Sleep(time.Second) // anything re-sent would reach the MX by now
	exactlyOnce(t, l, m, nil)
}

// TestLabDirectSend: direct to the MX hosts of several lab domains, one
// whose first MX is filtered, one with only an implicit MX; a null-MX and
// a non-existent domain fail with their reasons.
func TestLabDirectSend(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	if err := l.Filter(lab.FilterNet, 25); err != nil {
		t.Fatal(err)
	}
	cfg := "mode = \"direct\"\nthreads = 6\n\n[direct]\nper_domain_threads = 2\n"
	good := append(append(addrs(20, lab.AlphaDomain, "a"), addrs(20, lab.BetaDomain, "b")...), addrs(20, lab.GammaDomain, "g")...)
	bad := []string{"x@" + lab.NullMXDomain, "y@" + lab.NoSuchDomain}
	m := newLabMailing(t, cfg, append(good, bad...))
	rep, code := m.run(t, l)
	if code != 1 || rep.Counts.Sent != 60 || rep.Counts.Failed != 2 || rep.Counts.Deferred+rep.Counts.Unknown != 0 {
		t.Fatalf("exit %d counts %+v reasons %+v", code, rep.Counts, rep.Reasons)
	}
	reasons := fmt.Sprint(rep.Reasons)
	for _, want := range []string{"null MX", "does not exist"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("reasons %s lack %q", reasons, want)
		}
	}
	for _, a := range good {
		l.WaitDelivered(t, a, 1, 30*time.Second)
	}
	m.addrs = good
	exactlyOnce(t, l, m, nil)
	t.Logf("direct: %d sent in %.2fs", rep.Counts.Sent, rep.Seconds)
}

// TestLabKillAndResume: kill -9 in the middle of a run, then run again:
// every acknowledged recipient has the message exactly once, and the
// unknown ones (if the kill fell between the final dot and the reply) are
// listed by name.
func TestLabKillAndResume(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	// A rate keeps the run long enough to be killed in the middle.
	cfg := "mode = \"direct\"\nthreads = 4\nrate = \"100/s\"\n\n[direct]\nper_domain_threads = 4\n"
	m := newLabMailing(t, cfg, addrs(400, lab.AlphaDomain, "k"))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := m.command(ctx, t, l)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for total(l.Delivered()) < 100 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// ip netns exec execs mailroute in place: this is mailroute's pid.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killedAt := total(l.Delivered())
	if killedAt >= len(m.addrs) {
		t.Fatalf("the run finished (%d delivered) before it could be killed", killedAt)
	}

	rep, _ := m.run(t, l)
	unknown := map[string]bool{}
	for _, a := range rep.UnknownRecipients {
		unknown[a] = true
	}
	if rep.Counts.Sent+rep.Counts.Unknown != len(m.addrs) || len(unknown) != rep.Counts.Unknown {
		t.Fatalf("after resume: counts %+v, unknown listed %v", rep.Counts, rep.UnknownRecipients)
	}
	for _, a := range m.addrs {
		if !unknown[a] {
			l.WaitDelivered(t, a, 1, 30*time.Second)
		}
	}
	time.Sleep(500 * time.Millisecond)
	exactlyOnce(t, l, m, unknown)
	t.Logf("killed with %d delivered; resume sent %d more; %d unknown %v", killedAt, rep.ThisRun.Sent, rep.Counts.Unknown, rep.UnknownRecipients)
}

func total(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}
