package send

import (
	"testing"

	"github.com/mailroute/mailroute/internal/smtpx"
)

func TestBreakerOpensAfterHeldRefusalsInARow(t *testing.T) {
	b := newBreakers()
	dmarc := &smtpx.Error{Permanent: true, Code: 550, Enhanced: "5.7.26", Command: "RCPT", Message: "Unauthenticated email from x.example is not accepted due to domain's DMARC policy"}
	unknown := &smtpx.Error{Permanent: true, Code: 550, Enhanced: "5.1.1", Command: "RCPT", Message: "User unknown"}
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
	if p, _ := b.paused("a.example", false); p != nil {
		t.Fatal("paused after 2 in a row")
	}
	if !b.refused("a.example", v, dmarc) {
		t.Fatal("did not open after 3 in a row")
	}
	if b.refused("a.example", v, dmarc) {
		t.Fatal("opened twice")
	}
	if p, se := b.paused("a.example", true); p == nil || se != dmarc {
		t.Fatal("not paused after opening")
	}
	if p, _ := b.paused("b.example", false); p != nil {
		t.Fatal("another target paused")
	}
	rep := b.report()
	if len(rep) != 2 || rep[0].Count != 6 || !rep[0].Paused || rep[0].Held != 1 || rep[0].Fault != "sender" || rep[1].Count != 1 || rep[1].Fault != "recipient" {
		t.Fatalf("report %+v", rep)
	}
}
