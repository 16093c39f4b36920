package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/send"
	"github.com/mailroute/mailroute/send/journal"
)

// TestReportText writes the report that send's tally fills in
// TestReportJSON (send/report_test.go).
func TestReportText(t *testing.T) {
	next := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	rep := &send.Report{
		Recipients: 6, Journal: "list.csv.journal", Finished: next.Add(-time.Hour),
		Counts:            send.Counts{Sent: 1, Deferred: 1, Failed: 2, Unknown: 1, Pending: 1},
		ThisRun:           send.Counts{Sent: 1},
		NextRetry:         &next,
		UnknownRecipients: []string{"v@b.test"},
		Reasons: []send.ReasonCount{
			{State: journal.StateFailed, Reason: "RCPT: 550 5.1.1 <recipient>: no such user", Count: 2},
			{State: journal.StateDeferred, Reason: "RCPT: 451 4.7.1 greylisted", Count: 1},
		},
	}
	var b strings.Builder
	if err := writeReport(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"6 recipients: 1 sent, 1 deferred, 2 failed, 1 unknown, 1 pending",
		"run the same command again to send to the 1 deferred and 1 pending",
		"best after",
		"add --retry-unknown",
		"journal: list.csv.journal",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestAboutDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{40 * time.Second, "40 s"},
		{25*time.Minute + 10*time.Second, "25 min"},
		{3*time.Hour + 3*time.Second, "3 h"},
		{2*time.Hour + 31*time.Minute, "2 h 30 min"},
		{20 * time.Hour, "20 h"},
		{2*24*time.Hour + 2*time.Second, "2 days"},
	} {
		if got := aboutDuration(tc.d); got != tc.want {
			t.Errorf("aboutDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
