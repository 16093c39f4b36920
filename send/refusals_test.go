package send

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

func TestBreakerOpensAfterHeldRefusalsInARow(t *testing.T) {
	b := newBreakers()
	dmarc := &smtpclient.Error{Permanent: true, Code: 550, Enhanced: "5.7.26", Command: "RCPT", Message: "Unauthenticated email from x.example is not accepted due to domain's DMARC policy"}
	unknown := &smtpclient.Error{Permanent: true, Code: 550, Enhanced: "5.1.1", Command: "RCPT", Message: "User unknown"}
	v, _ := classify(dmarc)
	u, _ := classify(unknown)
	if !v.HoldsRecipient() || u.HoldsRecipient() {
		t.Fatalf("5.7.26 holds %v, 5.1.1 holds %v", v.HoldsRecipient(), u.HoldsRecipient())
	}
	// Two, a success, two more: still closed (not in a row).
	b.refused("a.example", v, dmarc)
	b.refused("a.example", v, dmarc)
	b.ok("a.example")
	b.refused("a.example", v, dmarc)
	// A recipient's own refusal does not count towards the breaker.
	b.refused("a.example", u, unknown)
	if b.refused("a.example", v, dmarc) {
		t.Fatal("opened after 2 in a row")
	}
	if p, _ := b.paused("a.example"); p != nil {
		t.Fatal("paused after 2 in a row")
	}
	if !b.refused("a.example", v, dmarc) {
		t.Fatal("did not open after 3 in a row")
	}
	if b.refused("a.example", v, dmarc) {
		t.Fatal("opened twice")
	}
	p, se := b.paused("a.example")
	if p == nil || se != dmarc {
		t.Fatal("not paused after opening")
	}
	b.hold("a.example", p) // a recipient held back, unasked
	if p, _ := b.paused("b.example"); p != nil {
		t.Fatal("another target paused")
	}
	rep := b.report()
	if len(rep) != 2 || rep[0].Count != 6 || !rep[0].Paused || rep[0].Held != 1 || rep[0].Fault != "sender" || rep[1].Count != 1 || rep[1].Fault != "recipient" {
		t.Fatalf("report %+v", rep)
	}
}

// TestRelayBreakerStopsTheRun: a relay that refuses every recipient for a
// sender problem (550 5.7.26 at RCPT) is asked breakerAfter times, not once
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
	if n := asked.Load(); n != breakerAfter {
		t.Errorf("the relay was asked %d times for 20 recipients, want %d", n, breakerAfter)
	}
	if rep.Counts.Pending != 20 || rep.Counts.Failed+rep.Counts.Sent+rep.Counts.Deferred != 0 {
		t.Errorf("counts %+v, want all 20 pending", rep.Counts)
	}
	if len(rep.Refusals) != 1 || rep.Refusals[0].Count != breakerAfter || !rep.Refusals[0].Paused {
		t.Errorf("refusals %+v", rep.Refusals)
	}
}

func hintOf(e *Error) string {
	if e == nil {
		return ""
	}
	return e.Hint
}
