package send

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/send/journal"
)

// The tally fills the report that cmd/mailroute writes as text
// (TestReportText there) and as JSON.
func TestReportJSON(t *testing.T) {
	ta := newTally()
	next := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ta.add("a.test", journal.StateSent, "250 ok", time.Time{}, false, "x@a.test")
	ta.addRun(journal.StateSent)
	ta.add("a.test", journal.StateFailed, "RCPT: 550 5.1.1 <y@a.test>: no such user", time.Time{}, false, "y@a.test")
	ta.add("b.test", journal.StateFailed, "RCPT: 550 5.1.1 <z@b.test>: no such user", time.Time{}, false, "z@b.test")
	ta.add("b.test", journal.StateDeferred, "RCPT: 451 4.7.1 greylisted", next, false, "w@b.test")
	ta.add("b.test", journal.StateUnknown, "DATA: the server closed the connection", time.Time{}, false, "v@b.test")
	rep := &Report{Recipients: 6, Journal: "list.csv.journal", Finished: next.Add(-time.Hour)}
	ta.fill(rep)
	rep.Counts.Pending = 1
	if rep.ExitCode() != 1 {
		t.Error("exit code 0 with failures")
	}
	if len(rep.Reasons) == 0 || rep.Reasons[0].Count != 2 || !strings.Contains(rep.Reasons[0].Reason, "<recipient>: no such user") {
		t.Errorf("reasons: %+v", rep.Reasons)
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"state":"failed"`) || !strings.Contains(string(js), `"next_retry":"2030-01-01T12:00:00Z"`) {
		t.Errorf("json: %s", js)
	}
}

func TestTallyIsBounded(t *testing.T) {
	ta := newTally()
	for i := range maxTallyDomains + 100 {
		d := itoa(i) + ".test"
		ta.add(d, journal.StateFailed, "550 reason "+d, time.Time{}, false, "")
	}
	if len(ta.domains) > maxTallyDomains+1 || len(ta.reasons) > maxTallyReasons+1 {
		t.Errorf("tally grew: %d domains, %d reasons", len(ta.domains), len(ta.reasons))
	}
	if ta.all.Failed != maxTallyDomains+100 {
		t.Errorf("counted %d", ta.all.Failed)
	}
}

func TestDryRunDirect(t *testing.T) {
	f := newFakeServer(t, nil, false)
	d := newFakeDNS(t)
	mxTo(d, "ok.test", "mx.ok.test")
	d.Add("null.test. 60 IN MX 0 .")
	d.SetRcode("broken.test", dns.RcodeServerFailure)
	m := directMailing(t, f, d, "a@ok.test", "b@ok.test", "c@null.test", "d@broken.test")
	m.opts.DryRun = true
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Plan
	if p == nil || p.WouldSend != 2 || p.WouldFail != 1 || p.DNSTrouble != 1 {
		t.Fatalf("plan %+v", p)
	}
	if f.sessionCount() != 0 {
		t.Error("a dry run connected to the MX")
	}
	if !slices.ContainsFunc(rep.Reasons, func(x ReasonCount) bool { return strings.Contains(x.Reason, "null MX") }) {
		t.Errorf("reasons %+v lack the null MX", rep.Reasons)
	}
}

// The dry run counts what the run would send by the run's own resume rule
// (Engine.sendsAgain): a failed recipient is already done, unless
// --retry-failed, which the dry run used to ignore.
func TestDryRunFollowsTheResumeRule(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.onRcpt = func(_ *smtp.Conn, to string, _ int) error {
		if to == "user1@example.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(3, "example.test")...)
	if rep, err := m.run(t); err != nil || rep.Counts.Failed != 1 || rep.Counts.Sent != 2 {
		t.Fatalf("first run: %v %+v", err, rep)
	}
	for _, retry := range []bool{false, true} {
		m.opts.DryRun, m.opts.RetryFailed = true, retry
		rep, err := m.run(t)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if retry {
			want = 1
		}
		if p := rep.Plan; p.WouldSend != want || p.AlreadyDone != 3-want {
			t.Errorf("--retry-failed %v: would send %d, already done %d; want %d and %d", retry, p.WouldSend, p.AlreadyDone, want, 3-want)
		}
	}
}
