package probe

import (
	"slices"
	"strings"
	"testing"
)

func TestParseTo(t *testing.T) {
	got, err := ParseTo([]string{"Example.COM", "bob@example.com", "Alice <a@b.example>", "bücher.example"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"example.com", "b.example", "xn--bcher-kva.example"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
	for _, bad := range []string{"exa mple.com", "bob@", "@@x", "", "-x.example"} {
		if _, err := ParseTo([]string{bad}); err == nil {
			t.Errorf("ParseTo(%q): no error", bad)
		}
	}
}

func TestParseRelay(t *testing.T) {
	cases := []struct {
		in    string
		host  string
		ports []int
		err   string
	}{
		{"smtp.example.com", "smtp.example.com", SubmissionPorts, ""},
		{"smtp.example.com:465", "smtp.example.com", []int{465}, ""},
		{"[2001:db8::1]:587", "2001:db8::1", []int{587}, ""},
		{"192.0.2.1", "192.0.2.1", SubmissionPorts, ""},
		{"host:99999", "", nil, "port must be a number from 1 to 65535"},
		{"host:abc", "", nil, "port must be"},
		{":25", "", nil, "no host"},
		{"bad host:25", "", nil, "space"},
	}
	for _, c := range cases {
		s, err := ParseRelay(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRelay(%q) err %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || s.Host != c.host || !slices.Equal(s.Ports, c.ports) {
			t.Errorf("ParseRelay(%q) = %+v, %v", c.in, s, err)
		}
	}
}
