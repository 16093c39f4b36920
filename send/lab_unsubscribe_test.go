package send_test

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailroute/mailroute/internal/lab"
)

// TestLabUnsubscribeSigned: a relay send with [dkim] and [unsubscribe]. The
// copy the MX delivered carries List-Unsubscribe with the row's own code and
// List-Unsubscribe-Post (RFC 8058), and its DKIM signature covers both and
// verifies with the key the lab DNS publishes, although dkim.headers does
// not name them.
func TestLabUnsubscribeSigned(t *testing.T) {
	key := lab.NewDKIMKey(t, t.TempDir(), "ed25519")
	const selector = "news"
	l := lab.Start(t, lab.Options{ExtraDNS: []string{lab.TXTRecord(selector+"._domainkey."+lab.RelayDomain, key.Record)}})
	cfg := fmt.Sprintf(`mode = "relay"
threads = 2

[[relay]]
host = %q
port = 587
tls = "starttls"
username = %q
password_env = "LAB_RELAY_PASSWORD"
ca_file = %q

[dkim]
domain = %q
selector = %q
key_file = %q
headers = ["From", "To", "Subject", "Date", "Message-ID"]

[unsubscribe]
url = "https://%[4]s/unsubscribe?c={{.code}}"
mailto = "leave@%[4]s?subject={{.code}}"
`, lab.RelayHost, lab.RelayUser, l.CAFile, lab.RelayDomain, selector, key.File)
	m := newLabMailing(t, cfg, addrs(3, lab.AlphaDomain, "unsub"))
	rep, code := m.run(t, l)
	if code != 0 || rep.Counts.Sent != 3 {
		t.Fatalf("exit %d counts %+v error %q", code, rep.Counts, rep.Error)
	}
	opts := &dkim.VerifyOptions{LookupTXT: l.LookupTXT}
	for i, a := range m.addrs {
		l.WaitDelivered(t, a, 1, 30*time.Second)
		// Maildir keeps bare LF; the signature was made over CRLF.
		raw := l.Messages(a)[0]
		msg := bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		parsed, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		codeVal := fmt.Sprintf("C%05d", i)
		wantList := fmt.Sprintf("<https://%s/unsubscribe?c=%s>, <mailto:leave@%s?subject=%s>", lab.RelayDomain, codeVal, lab.RelayDomain, codeVal)
		if got := parsed.Header.Get("List-Unsubscribe"); got != wantList {
			t.Errorf("%s: List-Unsubscribe %q, want %q", a, got, wantList)
		}
		if got := parsed.Header.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
			t.Errorf("%s: List-Unsubscribe-Post %q", a, got)
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), opts)
		if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != lab.RelayDomain {
			t.Fatalf("%s: DKIM: %v %+v\n%s", a, err, vs, raw)
		}
		signed := strings.ToLower(strings.Join(vs[0].HeaderKeys, ":"))
		for _, h := range []string{"list-unsubscribe", "list-unsubscribe-post"} {
			if !strings.Contains(":"+signed+":", ":"+h+":") {
				t.Errorf("%s: h=%s does not cover %s", a, signed, h)
			}
		}
		// The signature really covers them: another row's URL breaks it.
		forged := bytes.Replace(msg, []byte("c="+codeVal), []byte("c=C99999"), 1)
		if vs, _ := dkim.VerifyWithOptions(bytes.NewReader(forged), opts); len(vs) != 1 || vs[0].Err == nil {
			t.Errorf("%s: a changed List-Unsubscribe still verifies", a)
		}
	}
}
