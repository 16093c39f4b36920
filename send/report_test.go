package send

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/send/journal"
	"github.com/miekg/dns"
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
