package send

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mailroute/mailroute/internal/replies"
)

// TestRelayBreakerStopsTheRun: a relay that refuses every recipient for a
// sender problem (550 5.7.26 at RCPT) is asked replies.BreakerAfter times, not once
// per recipient; the run stops naming the cause and the fix, and every
// recipient stays pending.
func TestRelayBreakerStopsTheRun(t *testing.T) {
	f := newFakeServer(t, nil, false)
	var asked atomic.Int32
	f.onRcpt = func(*smtp.Conn, string, int) error {
		asked.Add(1)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 26}, Message: "Unauthenticated email from example.test is not accepted due to domain's DMARC policy"}
	}
	m := newMailing(t, f.addr, addrs(20, "example.test")...)
	m.cfg.Threads = 1
	rep, err := m.run(t)
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "left alone for this run") || !strings.Contains(se.Hint, "DMARC") {
		t.Fatalf("err = %v (hint %q)", err, hintOf(se))
	}
	if n := asked.Load(); n != replies.BreakerAfter {
		t.Errorf("the relay was asked %d times for 20 recipients, want %d", n, replies.BreakerAfter)
	}
	if rep.Counts.Pending != 20 || rep.Counts.Failed+rep.Counts.Sent+rep.Counts.Deferred != 0 {
		t.Errorf("counts %+v, want all 20 pending", rep.Counts)
	}
	if len(rep.Refusals) != 1 || rep.Refusals[0].Count != replies.BreakerAfter || !rep.Refusals[0].Paused {
		t.Errorf("refusals %+v", rep.Refusals)
	}
}

func hintOf(e *Error) string {
	if e == nil {
		return ""
	}
	return e.Hint
}
