package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/probe"
)

// The lab tests run the real mailroute binary inside the lab namespace,
// against Postfix, Dovecot and dnsmasq on 127.x addresses. Identity is
// always pointed at the lab DNS (--ip-echo, --dnsbl), so no name outside the
// lab is ever asked for.

// Lab relay limits for the measured test: small, so the measurement is
// quick, and distinct, so a swapped number shows.
const (
	labSessions = 3
	labMessages = 5
	labWindow   = 10 * time.Second
)

// labIdentity are the advise flags that keep the identity checks in the lab.
var labIdentity = []string{"--ip-echo", "myip.lab.example@" + lab.DNSAddr, "--dnsbl", "zen.lab.example"}

// adviceDoc mirrors advise --json.
type adviceDoc struct {
	Recommendation advisor.Recommendation `json:"recommendation"`
	Config         map[string]any         `json:"config"`
	Written        string                 `json:"written"`
	Report         probe.Report           `json:"report"`
}

type labRun struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// mailroute runs the binary in the lab, in dir, with extra environment.
func mailroute(t testing.TB, l *lab.Lab, dir string, env []string, args ...string) labRun {
	t.Helper()
	return asLabRun(l.RunMailrouteWith(t, lab.RunOptions{Dir: dir, Env: env}, args...))
}

func asLabRun(r lab.Result) labRun {
	return labRun{stdout: string(r.Stdout), stderr: r.Stderr, code: r.Code, took: r.Took}
}

func decodeAdvice(t testing.TB, r labRun) *adviceDoc {
	t.Helper()
	var doc adviceDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("advise --json printed no JSON (exit %d): %v\nstdout:\n%s\nstderr:\n%s", r.code, err, r.stdout, r.stderr)
	}
	return &doc
}

// adviseMeasured: port 25 blocked, the relay limited; advise measures it
// and writes the config. Shared by the test and the benchmark.
func adviseMeasured(t testing.TB, l *lab.Lab, dir, measureTime string) (labRun, *adviceDoc) {
	args := append([]string{"advise", "--json", "--timeout", "2s", "--tls-ca", l.CAFile,
		"--to", lab.AlphaDomain, "--relay", lab.RelayHost, "--user", lab.RelayUser, "--password-env", "LAB_PW",
		"--measure", "--measure-time", measureTime, "--write", "cfg.toml"}, labIdentity...)
	r := mailroute(t, l, dir, []string{"LAB_PW=" + lab.RelayPassword}, args...)
	return r, decodeAdvice(t, r)
}

// TestLabAdviseMeasuredRelay: (a) outbound 25 blocked, the relay allows
// labSessions sessions and labMessages messages per labWindow. advise must
// report exactly those numbers, recommend the relay on 465 or 587 with
// threads and rate within them, and write a config that config check takes.
func TestLabAdviseMeasuredRelay(t *testing.T) {
	l := lab.Start(t, lab.Options{RelayConnLimit: labSessions, RelayMsgRateLimit: labMessages, RelayRateWindow: labWindow})
	if err := l.Filter("127.0.0.0/8", 25); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, doc := adviseMeasured(t, l, dir, "40s")
	t.Logf("advise --measure took %s\nstderr:\n%s", r.took, r.stderr)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "measuring the relay's limits; no message is sent") {
		t.Errorf("no measuring notice on stderr")
	}
	if strings.Contains(r.stdout+r.stderr, lab.RelayPassword) {
		t.Fatalf("the password was printed")
	}

	m := doc.Report.Measure
	if m == nil || m.Error != "" {
		t.Fatalf("measurement %+v", m)
	}
	t.Logf("measured: %d sessions (%q), %d messages (%q), window %s (%s), measurement %s",
		m.SessionLimit, m.SessionReply, m.Transactions, m.TransactionReply, m.Window, m.WindowNote, m.Elapsed)
	if m.SessionLimit != labSessions || m.SessionCapped {
		t.Errorf("session limit %d (capped %v), want %d", m.SessionLimit, m.SessionCapped, labSessions)
	}
	if m.Transactions != labMessages || m.TransactionsCapped || m.PerSession {
		t.Errorf("transactions %d (capped %v, per session %v), want %d", m.Transactions, m.TransactionsCapped, m.PerSession, labMessages)
	}
	// anvil keeps time in whole seconds, so a W-second window lasts W to
	// W+1 s; the measurement adds its own stated precision and a retry's
	// round trip on a busy 2-core machine.
	if w := time.Duration(m.Window); w <= 0 || w > labWindow+time.Second+time.Duration(m.WindowPrecision)+500*time.Millisecond {
		t.Errorf("window %s, want about %s (%s)", w, labWindow, m.WindowNote)
	}

	rec := doc.Recommendation
	if !rec.OK || rec.Mode != config.ModeRelay || rec.Relay == nil || (rec.Relay.Port != 465 && rec.Relay.Port != 587) {
		t.Fatalf("recommendation %+v relay %+v", rec, rec.Relay)
	}
	if rec.Threads.Value < 1 || rec.Threads.Value > labSessions || rec.Threads.Source != "measured" {
		t.Errorf("threads %+v, want 1..%d from the measurement", rec.Threads, labSessions)
	}
	rate := rec.Rate.Rate
	if rate.IsZero() || rec.Rate.Source != "measured" || rate.N > labMessages || rate.PerSecond() > float64(labMessages)/labWindow.Seconds() {
		t.Errorf("rate %s from %q, want at most %d per %s", rate, rec.Rate.Source, labMessages, labWindow)
	}
	t.Logf("recommended: %s", rec.Summary)

	if doc.Written != "cfg.toml" {
		t.Fatalf("written %q", doc.Written)
	}
	cfgPath := filepath.Join(dir, "cfg.toml")
	st, err := os.Stat(cfgPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cfg.toml: %v mode %v", err, st.Mode())
	}
	data, _ := os.ReadFile(cfgPath)
	for _, want := range []string{"# Generated by mailroute advise on ", `password_env = "LAB_PW"`, "session_limit = 3", "burst_limit = 5"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("cfg.toml lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), lab.RelayPassword) {
		t.Fatalf("cfg.toml holds the password")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".cfg.toml.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	chk := mailroute(t, l, dir, []string{"LAB_PW=" + lab.RelayPassword}, "config", "check", "cfg.toml")
	if chk.code != 0 || !strings.Contains(chk.stdout, "cfg.toml: ok: mode relay") {
		t.Errorf("config check: exit %d\n%s%s", chk.code, chk.stdout, chk.stderr)
	}

	// Without --force the file is not replaced.
	again := mailroute(t, l, dir, nil, "advise", "--write", "cfg.toml")
	if again.code != 2 || !strings.Contains(again.stderr, "the file exists") {
		t.Errorf("second --write: exit %d %s", again.code, again.stderr)
	}
}

// TestLabAdviseDirect: (b) port 25 open, and the lab DNS gives the echo
// address a forward-confirmed PTR and no blocklist listing: direct.
func TestLabAdviseDirect(t *testing.T) {
	l := lab.Start(t, lab.Options{ExtraDNS: []string{
		"host-record=out.lab.example,127.0.1.1", // A and PTR: forward-confirmed
		"address=/myip.lab.example/127.0.1.1",   // the echo service's answer
	}})
	args := append([]string{"advise", "--json", "--timeout", "2s", "--tls-ca", l.CAFile, "--to", lab.AlphaDomain,
		"--to", lab.BetaDomain, "--list-size", "800"}, labIdentity...)
	r := mailroute(t, l, t.TempDir(), nil, args...)
	doc := decodeAdvice(t, r)
	id := doc.Report.Identity
	if id == nil || id.PublicIP != "127.0.1.1" || !id.ForwardConfirmed || id.ConfirmedName != "out.lab.example" ||
		len(id.Listings) != 1 || id.Listings[0].Listed {
		t.Fatalf("identity %+v\n%s", id, r.stderr)
	}
	rec := doc.Recommendation
	if r.code != 0 || !rec.OK || rec.Mode != config.ModeDirect {
		t.Fatalf("exit %d, %+v\n%s", r.code, rec, r.stderr)
	}
	if doc.Config["helo"] != "out.lab.example" || doc.Config["mode"] != "direct" {
		t.Errorf("config %v", doc.Config)
	}
	if rec.Threads.Source != "list size" || rec.Threads.Value != 4 {
		t.Errorf("threads %+v", rec.Threads)
	}
	t.Logf("recommended: %s", rec.Summary)

	// The human form says the same, without colour off a terminal.
	h := mailroute(t, l, t.TempDir(), nil, append([]string{"advise", "--timeout", "2s", "--tls-ca", l.CAFile, "--to", lab.AlphaDomain}, labIdentity...)...)
	if h.code != 0 || !strings.Contains(h.stdout, "Send direct to the recipients' MX hosts on port 25") ||
		!strings.Contains(h.stdout, "resolves back to it (FCrDNS)") || strings.Contains(h.stdout, "\x1b[") {
		t.Errorf("human advice (exit %d):\n%s\n%s", h.code, h.stdout, h.stderr)
	}
}

// TestLabAdviseWrongPassword: (c) the relay refuses the login: its words,
// exit 1, nothing written.
func TestLabAdviseWrongPassword(t *testing.T) {
	l := lab.Start(t, lab.Options{})
	if err := l.Filter("127.0.0.0/8", 25); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := append([]string{"advise", "--timeout", "2s", "--tls-ca", l.CAFile, "--to", lab.AlphaDomain, "--relay", lab.RelayHost,
		"--user", lab.RelayUser, "--password-env", "LAB_PW", "--measure", "--write", "cfg.toml"}, labIdentity...)
	r := mailroute(t, l, dir, []string{"LAB_PW=not-the-password"}, args...)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "mailroute: error: login to "+lab.RelayHost+":465 as "+lab.RelayUser+" refused: 535 5.7.8") ||
		!strings.Contains(r.stderr, "mailroute: hint: check the user name and the password") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "measuring") {
		t.Errorf("measured after a refused login")
	}
	if strings.Contains(r.stdout+r.stderr, "not-the-password") {
		t.Errorf("the password was printed")
	}
	if _, err := os.Stat(filepath.Join(dir, "cfg.toml")); err == nil {
		t.Errorf("a config was written after a refused login")
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
}

// BenchmarkLabAdviseMeasure prints how long advise --measure takes against
// the lab relay (3 sessions, 5 messages per 10 s), the whole command and the
// measurement's own time: "limits" with a 1 s window budget (the goal: the
// exact limits in at most 15 s), "window" with the window search too (it
// waits for the relay's window by nature). .ci/bench runs it.
func BenchmarkLabAdviseMeasure(b *testing.B) {
	l := lab.Start(b, lab.Options{RelayConnLimit: labSessions, RelayMsgRateLimit: labMessages, RelayRateWindow: labWindow})
	if err := l.Filter("127.0.0.0/8", 25); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, budget string }{{"limits", "1s"}, {"window", "40s"}} {
		b.Run(c.name, func(b *testing.B) {
			var total, meas time.Duration
			for b.Loop() {
				// The relay's rate counter must start afresh each round.
				b.StopTimer()
				time.Sleep(labWindow + time.Second)
				b.StartTimer()
				r, doc := adviseMeasured(b, l, b.TempDir(), c.budget)
				m := doc.Report.Measure
				if r.code != 0 || m == nil || m.SessionLimit != labSessions || m.Transactions != labMessages {
					b.Fatalf("exit %d, measurement %+v\n%s", r.code, m, r.stderr)
				}
				total += r.took
				meas += time.Duration(m.Elapsed)
			}
			n := float64(b.N)
			b.ReportMetric(total.Seconds()/n, "s/advise")
			b.ReportMetric(meas.Seconds()/n, "s/measure")
		})
	}
}
