package lab

import (
	"strings"
	"testing"
)

// TestTXTRecord: long values become several strings of at most 255 octets
// in one record, which join back to the value (RFC 7208 §3.3).
func TestTXTRecord(t *testing.T) {
	if got := TXTRecord("a.example", "v=spf1 -all"); got != `txt-record=a.example,"v=spf1 -all"` {
		t.Errorf("short: %s", got)
	}
	long := strings.Repeat("x", 600)
	got := TXTRecord("k._domainkey.a.example", long)
	parts := strings.Split(strings.TrimPrefix(got, "txt-record=k._domainkey.a.example,"), ",")
	if len(parts) != 3 {
		t.Fatalf("%d strings: %s", len(parts), got)
	}
	joined := ""
	for _, p := range parts {
		s := strings.Trim(p, `"`)
		if len(s) > 255 {
			t.Errorf("a string of %d octets", len(s))
		}
		joined += s
	}
	if joined != long {
		t.Errorf("the strings do not join back to the value")
	}
}
