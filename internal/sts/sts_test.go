package sts

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/dnstest"
	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/testpki"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name, body string
		err        string // substring; "" for a valid policy
		mode       Mode
		mx         int
	}{
		{"enforce", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n", "", Enforce, 2},
		{"CRLF and spaces", "version: STSv1\r\nmode:testing\r\nmx:  mx.example.com \r\nmax_age: 86400\r\n", "", Testing, 1},
		{"none needs no mx", "version: STSv1\nmode: none\nmax_age: 0\n", "", None, 0},
		{"unknown keys are ignored", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nfuture: yes\n", "", Enforce, 1},
		{"no version", "mode: enforce\nmx: a.example\nmax_age: 1\n", "no version", "", 0},
		{"other version", "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "STSv2", "", 0},
		{"bad mode", "version: STSv1\nmode: report\nmx: a.example\nmax_age: 1\n", "mode \"report\"", "", 0},
		{"max_age too long", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", "max_age", "", 0},
		{"max_age not a number", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age", "", 0},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 10\n", "no mx", "", 0},
		{"not key: value", "version: STSv1\nmode enforce\n", "not key: value", "", 0},
		{"html", "<html><body>mode: enforce</body></html>", "no version", "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.body))
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want %q", err, c.err)
			case c.err == "" && (p.Mode != c.mode || len(p.MX) != c.mx):
				t.Errorf("policy %+v", p)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	p := &Policy{MX: []string{"mx1.example.com", "*.example.net", "MX.Example.ORG."}}
	for host, want := range map[string]bool{
		"mx1.example.com":    true,
		"MX1.EXAMPLE.COM.":   true,
		"mx2.example.com":    false,
		"a.example.net":      true,
		"a.b.example.net":    false, // the wildcard covers one label only (§4.1)
		"example.net":        false,
		"mx.example.org":     true,
		"evil-example.net":   false,
		"mx1.example.com.au": false,
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v", host, got)
		}
	}
}

func TestParseRecord(t *testing.T) {
	for _, c := range []struct {
		txts  []string
		id    string
		found bool
		err   bool
	}{
		{nil, "", false, false},
		{[]string{"v=spf1 -all"}, "", false, false},
		{[]string{"v=STSv1; id=20250101T0000;"}, "20250101T0000", true, false},
		{[]string{"v=STSv1;id=abc"}, "abc", true, false},
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, "", true, true},
		{[]string{"v=STSv1; id=not-alnum"}, "", true, true},
		{[]string{"v=STSv1;"}, "", true, true},
	} {
		id, found, err := parseRecord(c.txts)
		if id != c.id || found != c.found || (err != nil) != c.err {
			t.Errorf("%q: %q %v %v", c.txts, id, found, err)
		}
	}
}

// policyServer serves HTTPS on 127.0.0.1 with a certificate for names,
// from a CA the returned Fetcher trusts; the Fetcher dials it whatever
// host it asks for, and finds TXT records in dns.
func policyServer(t *testing.T, names []string, h http.HandlerFunc) (*Fetcher, *dnstest.Server) {
	t.Helper()
	ca, err := testpki.NewCA("sts test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(names, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", leaf.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	d := dnstest.Start(t, dnstest.Zone{})
	res, err := resolve.New(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var dialer net.Dialer
	return &Fetcher{Resolver: res, RootCAs: ca.Pool(), Timeout: 5 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}, d
}

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"

func TestLookup(t *testing.T) {
	serve := func(ctype, body string, status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.example.test" {
				http.NotFound(w, r)
				return
			}
			if status == http.StatusFound {
				http.Redirect(w, r, "https://elsewhere.example/policy", status)
				return
			}
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			w.Write([]byte(body))
		}
	}
	for _, c := range []struct {
		name  string
		names []string // the certificate's
		h     http.HandlerFunc
		err   string // "" for the policy
	}{
		{"policy", []string{"mta-sts.example.test"}, serve("text/plain; charset=utf-8", goodPolicy, 200), ""},
		{"certificate for another name", []string{"www.example.test"}, serve("text/plain", goodPolicy, 200), "certificate"},
		{"redirect", []string{"mta-sts.example.test"}, serve("", "", http.StatusFound), "302"},
		{"not found", []string{"mta-sts.example.test"}, serve("text/plain", "", 404), "404"},
		{"html", []string{"mta-sts.example.test"}, serve("text/html", goodPolicy, 200), "media type"},
		{"too big", []string{"mta-sts.example.test"}, serve("text/plain", goodPolicy+strings.Repeat("x: y\n", 20000), 200), "larger than"},
		{"bad policy", []string{"mta-sts.example.test"}, serve("text/plain", "version: STSv1\n", 200), "no mode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, d := policyServer(t, c.names, c.h)
			d.Add(`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=20261128;"`)
			p, err := f.Lookup(context.Background(), "Example.Test.")
			switch {
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want %q", err, c.err)
			case c.err == "" && (p.ID != "20261128" || p.Mode != Enforce || !p.Matches("mx.example.test") || p.MaxAge != 24*time.Hour):
				t.Errorf("policy %+v", p)
			}
		})
	}
	t.Run("no record", func(t *testing.T) {
		f, d := policyServer(t, []string{"mta-sts.example.test"}, serve("text/plain", goodPolicy, 200))
		d.Add(`example.test. 60 IN TXT "v=spf1 -all"`)
		if p, err := f.Lookup(context.Background(), "example.test"); p != nil || err != nil {
			t.Errorf("%+v %v", p, err)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodPolicy))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("mx: *.example.com\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > maxAge || (p.Mode != None && len(p.MX) == 0) {
			t.Fatalf("accepted %+v from %q", p, b)
		}
		for _, mx := range p.MX {
			p.Matches(mx) // no panic on any pattern
		}
	})
}

// TestCache: RFC 8461 §5.1 with a cache: one fetch per id; the policy
// stands when the record is stripped, DNS fails or the server is down;
// a new id fetches again; an expired policy is gone; "none" withdraws it.
func TestCache(t *testing.T) {
	var fetches int
	body, up := goodPolicy, true
	f, d := policyServer(t, []string{"mta-sts.example.test"}, func(w http.ResponseWriter, r *http.Request) {
		if !up {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fetches++
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	})
	dir := filepath.Join(t.TempDir(), "mta-sts")
	f.Cache = &Cache{Dir: dir}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	f.Now = func() time.Time { return now }
	ctx := context.Background()
	lookup := func(step string, wantMode Mode, wantFetches int) *Policy {
		t.Helper()
		p, err := f.Lookup(ctx, "example.test")
		switch {
		case err != nil:
			t.Fatalf("%s: %v", step, err)
		case wantMode == "" && p != nil:
			t.Fatalf("%s: policy %+v, want none", step, p)
		case wantMode != "" && (p == nil || p.Mode != wantMode):
			t.Fatalf("%s: policy %+v, want mode %s", step, p, wantMode)
		case fetches != wantFetches:
			t.Fatalf("%s: %d fetches, want %d", step, fetches, wantFetches)
		}
		return p
	}

	d.Add(`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=one;"`)
	lookup("first", Enforce, 1)
	if st, err := os.Stat(filepath.Join(dir, "example.test.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", st, err)
	}
	lookup("same id: from the cache", Enforce, 1)

	d.SetRcode("_mta-sts.example.test.", dns.RcodeNameError)
	lookup("record stripped: the cached policy stands", Enforce, 1)
	d.SetRcode("_mta-sts.example.test.", dns.RcodeServerFailure)
	lookup("DNS failing: the cached policy stands", Enforce, 1)

	d.ClearRcode("_mta-sts.example.test.")
	d.Add(`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=two;"`) // now two records: broken
	lookup("broken record: the cached policy stands", Enforce, 1)

	d2, f2 := freshRecord(t, f, "three")
	up = false
	if p := lookupWith(t, f2, "new id, server down"); p == nil || p.ID != "one" {
		t.Fatalf("new id with the server down: %+v, want the cached policy", p)
	}
	up = true
	body = "version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 60\n"
	if p := lookupWith(t, f2, "new id"); p == nil || p.Mode != Testing || p.ID != "three" || fetches != 2 {
		t.Fatalf("new id: %+v after %d fetches", p, fetches)
	}
	now = now.Add(61 * time.Second)
	d2.SetRcode("_mta-sts.example.test.", dns.RcodeNameError)
	if p := lookupWith(t, f2, "expired and stripped"); p != nil {
		t.Fatalf("an expired policy is still used: %+v", p)
	}

	d2.ClearRcode("_mta-sts.example.test.")
	body = "version: STSv1\nmode: none\nmax_age: 86400\n"
	if p := lookupWith(t, f2, "none"); p == nil || p.Mode != None {
		t.Fatalf("none: %+v", p)
	}
	if _, err := os.Stat(filepath.Join(dir, "example.test.json")); !os.IsNotExist(err) {
		t.Errorf("a none policy left the old one cached: %v", err)
	}
}

// freshRecord points a copy of f at a new DNS server whose only record
// has the given id (the old server's state cannot be cleared record by
// record).
func freshRecord(t *testing.T, f *Fetcher, id string) (*dnstest.Server, *Fetcher) {
	t.Helper()
	d := dnstest.Start(t, dnstest.Zone{})
	d.Add(`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=` + id + `;"`)
	res, err := resolve.New(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	g := *f
	g.Resolver = res
	return d, &g
}

func lookupWith(t *testing.T, f *Fetcher, step string) *Policy {
	t.Helper()
	p, err := f.Lookup(context.Background(), "example.test")
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	return p
}
