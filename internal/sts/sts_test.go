package sts

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
