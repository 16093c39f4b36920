package replies

import (
	"testing"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

func TestBreakerOpensAfterHeldRefusalsInARow(t *testing.T) {
	b := NewBreakers()
	dmarc := &smtpclient.Error{Permanent: true, Code: 550, Enhanced: "5.7.26", Command: "RCPT", Message: "Unauthenticated email from x.example is not accepted due to domain's DMARC policy"}
	unknown := &smtpclient.Error{Permanent: true, Code: 550, Enhanced: "5.1.1", Command: "RCPT", Message: "User unknown"}
	v, _ := OfError(dmarc)
	u, _ := OfError(unknown)
	if !v.HoldsRecipient() || u.HoldsRecipient() {
		t.Fatalf("5.7.26 holds %v, 5.1.1 holds %v", v.HoldsRecipient(), u.HoldsRecipient())
	}
	// Two, a success, two more: still closed (not in a row).
	b.Refused("a.example", v, dmarc)
	b.Refused("a.example", v, dmarc)
	b.OK("a.example")
	b.Refused("a.example", v, dmarc)
	// A recipient's own refusal does not count towards the breaker.
	b.Refused("a.example", u, unknown)
	if b.Refused("a.example", v, dmarc) {
		t.Fatal("opened after 2 in a row")
	}
	if p, _ := b.Paused("a.example"); p != nil {
		t.Fatal("paused after 2 in a row")
	}
	if !b.Refused("a.example", v, dmarc) {
		t.Fatal("did not open after 3 in a row")
	}
	if b.Refused("a.example", v, dmarc) {
		t.Fatal("opened twice")
	}
	p, se := b.Paused("a.example")
	if p == nil || se != dmarc {
		t.Fatal("not paused after opening")
	}
	b.Hold("a.example", p) // a recipient held back, unasked
	if p, _ := b.Paused("b.example"); p != nil {
		t.Fatal("another target paused")
	}
	rep := b.Report()
	if len(rep) != 2 || rep[0].Count != 6 || !rep[0].Paused || rep[0].Held != 1 || rep[0].Fault != "sender" || rep[1].Count != 1 || rep[1].Fault != "recipient" {
		t.Fatalf("report %+v", rep)
	}
}
