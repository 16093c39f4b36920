package send

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/dnstest"
	"github.com/mailroute/mailroute/send/journal"
)

// directMailing is a direct-mode mailing whose resolver is the fake DNS
// and whose MX port is the fake server's.
func directMailing(t *testing.T, f *fakeServer, d *dnstest.Server, rcpts ...string) *mailing {
	m := newMailing(t, f.addr, rcpts...)
	m.cfg.Mode = config.ModeDirect
	m.cfg.Relay = nil
	m.cfg.Resolver = d.Addr
	m.cfg.Direct.Port = f.port
	m.cfg.Threads = 4
	return m
}

// newFakeDNS is an empty fake resolver on 127.0.0.1; tests fill it with
// mxTo, Add and SetRcode.
func newFakeDNS(t *testing.T) *dnstest.Server { return dnstest.Start(t, dnstest.Zone{}) }

// mxTo gives domain one MX per host, preferences 10, 20, …, in that order,
// every host at 127.0.0.1 (where the fake SMTP server listens).
func mxTo(d *dnstest.Server, domain string, hosts ...string) {
	for i, h := range hosts {
		d.Add(fmt.Sprintf("%s. 60 IN MX %d %s.", domain, 10*(i+1), h), h+". 60 IN A 127.0.0.1")
	}
}

func TestDirectOutcomesByDNS(t *testing.T) {
	f := newFakeServer(t, nil, false)
	d := newFakeDNS(t)
	mxTo(d, "ok.test", "mx.ok.test")
	d.SetRcode("servfail.test", dns.RcodeServerFailure)
	d.Add("null.test. 60 IN MX 0 .")
	m := directMailing(t, f, d, "a@ok.test", "b@servfail.test", "c@null.test", "d@nx.test", "e@ok.test")
	m.cfg.Retry.Attempts = 1
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 2, Deferred: 1, Failed: 2})
	for addr, want := range map[string]struct {
		state  journal.State
		reason string
	}{
		"b@servfail.test": {journal.StateDeferred, "SERVFAIL"},
		"c@null.test":     {journal.StateFailed, "domain accepts no mail (null MX, RFC 7505)"},
		"d@nx.test":       {journal.StateFailed, "NXDOMAIN"},
		"a@ok.test":       {journal.StateSent, ""},
	} {
		rec := m.record(t, addr)
		if rec.State != want.state || !strings.Contains(rec.Reason, want.reason) {
			t.Errorf("%s: %s %q, want %s %q", addr, rec.State, rec.Reason, want.state, want.reason)
		}
	}
}

func TestDirectMXFallbackOn421Greeting(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.mu.Lock()
	f.refuse = 1
	f.mu.Unlock()
	d := newFakeDNS(t)
	mxTo(d, "fb.test", "mx1.fb.test", "mx2.fb.test")
	m := directMailing(t, f, d, "a@fb.test")
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 1})
	if rec := m.record(t, "a@fb.test"); rec.Attempts != 1 {
		t.Errorf("attempts = %d: trying the next MX is the same attempt", rec.Attempts)
	}
}

func TestDirectAllMXBusyDefers(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.mu.Lock()
	f.refuse = 100
	f.mu.Unlock()
	d := newFakeDNS(t)
	mxTo(d, "busy.test", "mx1.busy.test", "mx2.busy.test")
	m := directMailing(t, f, d, "a@busy.test")
	m.cfg.Retry.Attempts = 1
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Deferred: 1})
	if rec := m.record(t, "a@busy.test"); !strings.Contains(rec.Reason, "421") {
		t.Errorf("reason %q", rec.Reason)
	}
}

func TestDirectReusesSessionsWithinPerDomainLimit(t *testing.T) {
	f := newFakeServer(t, nil, false)
	f.onData = func(_ *smtp.Conn, _ string, _ int) error { time.Sleep(time.Millisecond); return nil }
	d := newFakeDNS(t)
	mxTo(d, "one.test", "mx.one.test")
	m := directMailing(t, f, d, addrs(40, "one.test")...)
	m.cfg.Direct.PerDomainThreads = 2
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 40})
	if f.maxOpen > 2 {
		t.Errorf("%d sessions at once to one domain, limit 2", f.maxOpen)
	}
	if f.sessions > 4 {
		t.Errorf("%d sessions for 40 messages: idle sessions are not reused", f.sessions)
	}
}

func TestDirectOpportunisticTLSFallsBack(t *testing.T) {
	srvTLS, _ := testCert(t, t.TempDir())
	// A server that offers STARTTLS but can only speak TLS 1.0: our
	// handshake (TLS 1.2 at least) fails, and the retry is in plaintext.
	srvTLS.MaxVersion = tls.VersionTLS10
	f := newFakeServer(t, srvTLS, false)
	d := newFakeDNS(t)
	mxTo(d, "old.test", "mx.old.test")
	m := directMailing(t, f, d, "a@old.test")
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 1})
	if rep.TLSFallbacks != 1 || !m.record(t, "a@old.test").Fallback {
		t.Errorf("fallback not recorded: %d", rep.TLSFallbacks)
	}

	// With tls = "starttls" there is no plaintext retry.
	m2 := directMailing(t, f, d, "b@old.test")
	m2.cfg.Direct.TLS = config.TLSStartTLS
	m2.cfg.Retry.Attempts = 1
	rep, err = m2.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Deferred: 1})
}

func TestDirectOpportunisticTLSUsesTLS(t *testing.T) {
	srvTLS, _ := testCert(t, t.TempDir())
	f := newFakeServer(t, srvTLS, false)
	var sawTLS atomic.Bool
	f.onRcpt = func(c *smtp.Conn, _ string, _ int) error {
		_, ok := c.TLSConnectionState()
		sawTLS.Store(ok)
		return nil
	}
	d := newFakeDNS(t)
	mxTo(d, "new.test", "mx.new.test")
	m := directMailing(t, f, d, "a@new.test")
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 1})
	if !sawTLS.Load() || rep.TLSFallbacks != 0 {
		t.Errorf("TLS %v, fallbacks %d", sawTLS.Load(), rep.TLSFallbacks)
	}
}

func TestDeadHostsAreTriedLast(t *testing.T) {
	d := newDeadHosts()
	now := time.Unix(1000, 0)
	d.mark("127.0.0.9:25", now)
	if !d.isDead("127.0.0.9:25", now.Add(time.Minute)) || d.isDead("127.0.0.8:25", now) {
		t.Fatal("mark/isDead")
	}
	if d.isDead("127.0.0.9:25", now.Add(6*time.Minute)) {
		t.Error("remembered past its five minutes")
	}
	d.clear("127.0.0.9:25")
	if d.isDead("127.0.0.9:25", now) {
		t.Error("clear")
	}
	d.max = 3
	for i := range 10 {
		d.mark(fmt.Sprintf("127.0.0.%d:25", i), now)
	}
	if len(d.until) > 3 {
		t.Errorf("bound: %d entries", len(d.until))
	}
}

// TestDirectAddressFamily: an MX with an A and an AAAA address, where only
// the IPv4 one has a server: direct.address_family picks which is used.
func TestDirectAddressFamily(t *testing.T) {
	for _, c := range []struct {
		family   string
		want     journal.State
		sessions bool
		reason   string
	}{
		{config.FamilyAny, journal.StateSent, true, ""},
		{config.FamilyIPv4, journal.StateSent, true, ""},
		{config.FamilyIPv6, journal.StateDeferred, false, ""},
	} {
		t.Run(c.family, func(t *testing.T) {
			f := newFakeServer(t, nil, false)
			d := newFakeDNS(t)
			d.Add("fam.test. 60 IN MX 10 mx.fam.test.", "mx.fam.test. 60 IN A 127.0.0.1", "mx.fam.test. 60 IN AAAA ::1")
			m := directMailing(t, f, d, "a@fam.test")
			m.cfg.Direct.AddressFamily = c.family
			m.cfg.Retry.Attempts = 1
			if _, err := m.run(t); err != nil {
				t.Fatal(err)
			}
			rec := m.record(t, "a@fam.test")
			f.mu.Lock()
			sessions := f.sessions
			f.mu.Unlock()
			if rec.State != c.want || (sessions > 0) != c.sessions || !strings.Contains(rec.Reason, c.reason) {
				t.Errorf("%s: %s %q, %d sessions; want %s with %q", c.family, rec.State, rec.Reason, sessions, c.want, c.reason)
			}
		})
	}
}
