package address

import (
	"strings"
	"testing"
)

func TestNormalizeAddress(t *testing.T) {
	tests := []struct {
		in, addr, domain, reason string
	}{
		{in: "bob@example.com", addr: "bob@example.com", domain: "example.com"},
		{in: "Bob.Smith+tag@Example.COM", addr: "Bob.Smith+tag@example.com", domain: "example.com"},
		{in: "j@Bücher.example", addr: "j@xn--bcher-kva.example", domain: "xn--bcher-kva.example"},
		{in: "j@xn--bcher-kva.example", addr: "j@xn--bcher-kva.example", domain: "xn--bcher-kva.example"},
		{in: "", reason: "empty address"},
		{in: "bob@@x.example", reason: `bad address "bob@@x.example"`},
		{in: "bob smith@x.example", reason: "space"},
		{in: "Bob <bob@x.example>", reason: "space"},
		{in: "<bob@x.example>", reason: "bare address"},
		{in: "bob@x.example(comment)", reason: "bare address"},
		{in: `"bob"@x.example`, reason: "bare address"},
		{in: "bob", reason: `bad address "bob"`},
		{in: "jörg@x.example", reason: "SMTPUTF8"},
		{in: strings.Repeat("a", 65) + "@x.example", reason: "longer than 64"},
		{in: "bob@[192.0.2.1]", reason: "address literals"},
		{in: "bob@localhost", reason: "no dot"},
		{in: "bob@192.0.2.1", reason: "IP address"},
		{in: "bob@-x.example", reason: "domain"},
		{in: "bob@" + strings.Repeat("a", 64) + ".example", reason: "domain"},
	}
	for _, tt := range tests {
		addr, domain, reason := Normalize(tt.in)
		if tt.reason != "" {
			if reason == "" || !strings.Contains(reason, tt.reason) {
				t.Errorf("%q: reason %q, want %q", tt.in, reason, tt.reason)
			}
			continue
		}
		if reason != "" || addr != tt.addr || domain != tt.domain {
			t.Errorf("%q: got %q %q %q, want %q %q", tt.in, addr, domain, reason, tt.addr, tt.domain)
		}
	}
}

// FuzzPlainAddress holds the fast path to the full one: what plain
// accepts, full accepts with the same result.
func FuzzPlainAddress(f *testing.F) {
	for _, s := range []string{"bob@example.com", "Bob.Smith+x@Mail.Example.COM", "a@b.c1", "a@1.2.3.4", "a@b", "a..b@x.example",
		".a@x.example", "a.@x.example", "a@-x.example", "a@x-.example", "a@xn--bcher-kva.example", "a@ab--c.example", "a@x..example",
		"a_%+-@x.example", strings.Repeat("a", 65) + "@x.example", "a@" + strings.Repeat("b", 64) + ".example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, domain, ok := plain(s)
		if !ok {
			return
		}
		faddr, fdomain, reason := full(s)
		if reason != "" || faddr != addr || fdomain != domain {
			t.Fatalf("%q: plain %q %q, full %q %q %q", s, addr, domain, faddr, fdomain, reason)
		}
	})
}
