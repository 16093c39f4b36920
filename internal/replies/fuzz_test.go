package replies

import "testing"

// FuzzClassify: Classify never panics, always says something, and
// Permanent follows the basic code (RFC 5321 §4.2.1).
func FuzzClassify(f *testing.F) {
	for _, r := range []Reply{
		{550, "5.1.1", "<u@x.invalid>: Recipient address rejected: User unknown in virtual mailbox table", "RCPT"},
		{450, "4.7.1", "Error: too much mail from 127.0.0.1", "MAIL"},
		{554, "5.7.1", "<x>: Relay access denied", "RCPT"},
		{421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred", "MAIL"},
		{550, "", "5.7.26 text / 5.7.26 more - gsmtp", "DATA"},
		{534, "5.7.9", "Application-specific password required - gsmtp", "AUTH"},
		{0, "", "", ""},
		{999, "9.9.9", "\n / \n", "x"},
	} {
		f.Add(r.Code, r.Enhanced, r.Text, r.Command)
	}
	f.Fuzz(func(t *testing.T, code int, enhanced, text, command string) {
		v := Classify(Reply{code, enhanced, text, command})
		if v.Fault == "" || v.Cause == "" || v.Words == "" || v.Source == "" {
			t.Fatalf("empty verdict %+v", v)
		}
		if code >= 200 && code <= 599 && v.Permanent != (code >= 500) {
			t.Fatalf("code %d: permanent %v", code, v.Permanent)
		}
		if (code < 200 || code > 599) && v.Permanent {
			t.Fatalf("code %d: permanent", code)
		}
	})
}
