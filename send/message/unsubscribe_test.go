package message

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/testpki"
)

func TestRenderUnsubscribe(t *testing.T) {
	tests := []struct {
		name       string
		u          config.Unsubscribe
		fields     map[string]string
		list, post string
	}{
		{"both", config.Unsubscribe{URL: "https://example.com/u?id={{.id}}", Mailto: "leave@example.com?subject={{.id}}"},
			map[string]string{"id": "42"}, "<https://example.com/u?id=42>, <mailto:leave@example.com?subject=42>", "List-Unsubscribe=One-Click"},
		// RFC 8058 §3.1: no Post field without an https URI.
		{"mailto only", config.Unsubscribe{Mailto: "leave@example.com"}, nil, "<mailto:leave@example.com>", ""},
		{"url only", config.Unsubscribe{URL: "https://example.com/u/{{.id}}"}, map[string]string{"id": "a b"}, "<https://example.com/u/a+b>", "List-Unsubscribe=One-Click"},
		// A value cannot end the URI, add another, or a header field.
		{"escaped", config.Unsubscribe{URL: "https://example.com/u?id={{.id}}"}, map[string]string{"id": "x>, <https://evil.example/\r\nBcc: a@b"},
			"<https://example.com/u?id=x%3E%2C+%3Chttps%3A%2F%2Fevil.example%2F%0D%0ABcc%3A+a%40b>", "List-Unsubscribe=One-Click"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := loadTestTemplate(t, "From: news@example.com\nSubject: Hi\n\nHello.\n")
			if err := tmpl.SetUnsubscribe(&tt.u); err != nil {
				t.Fatal(err)
			}
			r, err := tmpl.Render(testRecipient(tt.fields), RenderOptions{Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			m, names := parsed(t, r.Data)
			if got := m.Header.Get("List-Unsubscribe"); got != tt.list {
				t.Errorf("List-Unsubscribe %q, want %q", got, tt.list)
			}
			if got := m.Header.Get("List-Unsubscribe-Post"); got != tt.post {
				t.Errorf("List-Unsubscribe-Post %q, want %q", got, tt.post)
			}
			if strings.Count(strings.Join(names, "\n"), "Bcc") != 0 {
				t.Errorf("a field forged a header: %v", names)
			}
		})
	}
}

func TestUnsubscribeErrors(t *testing.T) {
	tmpl := loadTestTemplate(t, "From: news@example.com\nSubject: Hi\n\nHello.\n")
	if err := tmpl.SetUnsubscribe(&config.Unsubscribe{URL: "https://example.com/u?id={{.nosuch}}"}); err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Check([]string{"email", "id"}); err == nil || !strings.Contains(err.Error(), `"nosuch" is not a column`) {
		t.Errorf("Check: %v", err)
	}
	own := loadTestTemplate(t, "From: news@example.com\nList-Unsubscribe: <mailto:x@example.com>\nSubject: Hi\n\nHello.\n")
	if err := own.SetUnsubscribe(&config.Unsubscribe{Mailto: "leave@example.com"}); err == nil || !strings.Contains(err.Error(), "remove one") {
		t.Errorf("the message's own List-Unsubscribe: %v", err)
	}
	for _, tt := range []struct {
		u        config.Unsubscribe
		key, msg string
	}{
		{config.Unsubscribe{}, "unsubscribe", "neither url nor mailto"},
		{config.Unsubscribe{URL: "http://example.com/u"}, "unsubscribe.url", "https"},
		{config.Unsubscribe{URL: "https://example.com/u?id={{.id"}, "unsubscribe.url", "unclosed action"},
		{config.Unsubscribe{URL: "https://exa mple.com/{{.id}}"}, "unsubscribe.url", ""},
		{config.Unsubscribe{Mailto: "not an address"}, "unsubscribe.mailto", "not an address"},
		{config.Unsubscribe{URL: "https://example.com/u/{{.id}}", Mailto: "Leave <leave@example.com>"}, "unsubscribe.mailto", "not an address"},
	} {
		cfg := &config.Config{Mode: config.ModeDirect, Unsubscribe: &tt.u}
		cfg.ApplyDefaults()
		err := cfg.Validate()
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tt.key || !strings.Contains(ce.Message, tt.msg) {
			t.Errorf("%+v: %v, want %s: …%s…", tt.u, err, tt.key, tt.msg)
		}
	}
	cfg := &config.Config{Mode: config.ModeDirect, Unsubscribe: &config.Unsubscribe{URL: "https://example.com/u?id={{.id}}", Mailto: "leave@example.com?subject={{.id}}"}}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Errorf("a good [unsubscribe]: %v", err)
	}
}

// TestUnsubscribeSigned: RFC 8058 §4 wants both fields under the DKIM
// signature, also when dkim.headers does not name them.
func TestUnsubscribeSigned(t *testing.T) {
	key := testpki.DKIMKey(t, "ed25519")
	s, err := NewSigner(&config.DKIM{Domain: "example.com", Selector: "s1", KeyFile: testpki.WriteKeyFile(t, key, "pkcs8", 0o600), Headers: []string{"From", "Subject"}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := loadTestTemplate(t, "From: news@example.com\nSubject: Hi\n\nHello.\n")
	if err := tmpl.SetUnsubscribe(&config.Unsubscribe{URL: "https://example.com/u?id={{.id}}"}); err != nil {
		t.Fatal(err)
	}
	r, err := tmpl.Render(testRecipient(map[string]string{"id": "7"}), RenderOptions{Now: testNow, Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	opts := &dkim.VerifyOptions{LookupTXT: func(string) ([]string, error) { return []string{testpki.DKIMRecord(t, key)}, nil }}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(r.Data), opts)
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("verify: %v %+v", err, vs)
	}
	for _, h := range []string{"list-unsubscribe", "list-unsubscribe-post"} {
		if !containsFold(vs[0].HeaderKeys, h) {
			t.Errorf("h= %v lacks %s", vs[0].HeaderKeys, h)
		}
	}
	// Changing the unsubscribe URL on the way breaks the signature.
	tampered := bytes.Replace(r.Data, []byte("id=7"), []byte("id=8"), 1)
	if vs, _ := dkim.VerifyWithOptions(bytes.NewReader(tampered), opts); len(vs) != 1 || vs[0].Err == nil {
		t.Fatal("a changed List-Unsubscribe still verifies")
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func FuzzUnsubscribeHeaders(f *testing.F) {
	f.Add("https://example.com/u?id={{.id}}", "leave@example.com?subject={{.id}}", "42")
	f.Add("https://example.com/{{.id}}/x", "", "a b\r\nc")
	f.Fuzz(func(t *testing.T, url, mailto, id string) {
		tmpl, err := LoadTemplate(writeTemp(t, "m.txt", "From: a@example.com\nSubject: s\n\nb\n"), "")
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.SetUnsubscribe(&config.Unsubscribe{URL: url, Mailto: mailto}) != nil {
			return
		}
		r, err := tmpl.Render(testRecipient(map[string]string{"id": id}), RenderOptions{Now: testNow})
		if err != nil {
			return
		}
		// Whatever the values, the header block stays well formed: one
		// List-Unsubscribe field, no line break inside it.
		m, names := parsed(t, r.Data)
		n := 0
		for _, x := range names {
			if strings.EqualFold(x, "List-Unsubscribe") {
				n++
			}
		}
		if (url != "" || mailto != "") && n != 1 {
			t.Fatalf("%d List-Unsubscribe fields: %v", n, names)
		}
		if v := m.Header.Get("List-Unsubscribe"); strings.ContainsAny(v, "\r\n") {
			t.Fatalf("line break in %q", v)
		}
	})
}
