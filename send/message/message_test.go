package message

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/testpki"
	"github.com/mailroute/mailroute/send/list"
)

func loadTestTemplate(t testing.TB, text string) *Template {
	t.Helper()
	tm, err := LoadTemplate(writeTemp(t, "msg.txt", text), "")
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testRecipient is row 12 of a list with an email column and fields.
func testRecipient(fields map[string]string) *list.Recipient {
	f := map[string]string{"email": "bob@example.org"}
	for k, v := range fields {
		f[k] = v
	}
	return &list.Recipient{Line: 12, Email: f["email"], Addr: f["email"], Domain: "example.org", Fields: f}
}

var testNow = time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))

// parsed splits a rendered message into header field lines (unfolded) and
// checks the wire rules every message must keep: CRLF only, no bare CR or LF.
func parsed(t *testing.T, data []byte) (*mail.Message, []string) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) ||
		bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\r")) {
		t.Fatalf("bare CR or LF in\n%q", data)
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	unfolded := strings.ReplaceAll(string(head), "\r\n ", " ")
	var names []string
	for _, l := range strings.Split(unfolded, "\r\n") {
		name, _, _ := strings.Cut(l, ":")
		names = append(names, name)
	}
	return m, names
}

func TestRender(t *testing.T) {
	tm := loadTestTemplate(t, "From: News <news@example.com>\r\nSubject: Hello {{.name}}\r\nX-Campaign: spring\r\nReply-To: help@example.com\r\n\r\nDear {{.name}},\r\n\r\nsee you.\r\n")
	r, err := tm.Render(testRecipient(map[string]string{"name": "Bob"}), RenderOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	m, names := parsed(t, r.Data)
	want := []string{"Date", "Message-Id", "From", "Subject", "X-Campaign", "Reply-To", "To", "Mime-Version", "Content-Type", "Content-Transfer-Encoding"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("header order %v, want %v", names, want)
	}
	for k, v := range map[string]string{
		"Date":                      "Tue, 04 Mar 2025 05:06:07 +0100",
		"From":                      `"News" <news@example.com>`,
		"To":                        "<bob@example.org>",
		"Subject":                   "Hello Bob",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "7bit",
		"Mime-Version":              "1.0",
	} {
		if got := m.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if r.From != "news@example.com" || !strings.HasSuffix(r.MessageID, "@example.com") || m.Header.Get("Message-Id") != "<"+r.MessageID+">" {
		t.Errorf("From %q, Message-ID %q / %q", r.From, r.MessageID, m.Header.Get("Message-Id"))
	}
	body, _ := io.ReadAll(m.Body)
	if string(body) != "Dear Bob,\r\n\r\nsee you.\r\n" {
		t.Errorf("body %q", body)
	}
	r2, _ := tm.Render(testRecipient(map[string]string{"name": "Bob"}), RenderOptions{Now: testNow, MessageIDDomain: "mid.example"})
	if r2.MessageID == r.MessageID || !strings.HasSuffix(r2.MessageID, "@mid.example") {
		t.Errorf("Message-IDs %q, %q", r.MessageID, r2.MessageID)
	}
}

func TestRenderNonASCII(t *testing.T) {
	tm := loadTestTemplate(t, "From: Zoë <zoe@bücher.example>\nTo: {{.name}} <{{.email}}>\nSubject: Grüße, {{.name}}\n\nHallo {{.name}}, schöne Grüße.\n"+strings.Repeat("x", 1200)+"\n")
	r, err := tm.Render(testRecipient(map[string]string{"name": "Jürgen", "email": "j@Bücher.example"}), RenderOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := parsed(t, r.Data)
	dec := new(mime.WordDecoder)
	subj, _ := dec.DecodeHeader(m.Header.Get("Subject"))
	if subj != "Grüße, Jürgen" || !strings.HasPrefix(m.Header.Get("Subject"), "=?utf-8?q?") {
		t.Errorf("Subject %q → %q", m.Header.Get("Subject"), subj)
	}
	to, err := m.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != "Jürgen" || to[0].Address != "j@xn--bcher-kva.example" {
		t.Errorf("To %q → %v %v", m.Header.Get("To"), to, err)
	}
	if r.From != "zoe@xn--bcher-kva.example" || !strings.HasSuffix(r.MessageID, "@xn--bcher-kva.example") {
		t.Errorf("From %q, Message-ID %q", r.From, r.MessageID)
	}
	if m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("CTE %q", m.Header.Get("Content-Transfer-Encoding"))
	}
	for _, l := range bytes.Split(r.Data, []byte("\r\n")) {
		if len(l) > 78 {
			t.Errorf("line of %d octets", len(l))
		}
		for _, c := range l {
			if c >= 0x80 {
				t.Fatalf("8-bit byte in %q", l)
			}
		}
	}
	e, _ := message.Read(bytes.NewReader(r.Data))
	body, _ := io.ReadAll(e.Body)
	if !strings.HasPrefix(string(body), "Hallo Jürgen, schöne Grüße.\r\n") {
		t.Errorf("decoded body %q", body)
	}
}

func TestRenderRefusesHeaderInjection(t *testing.T) {
	tm := loadTestTemplate(t, "From: news@example.com\nTo: {{.name}} <{{.email}}>\nSubject: {{index . \"subject line\"}}\n\n{{.name}}\n{{index . \"subject line\"}}\n")
	for _, tt := range []struct {
		fields map[string]string
		errHas string
	}{
		{map[string]string{"name": "Bob\r\nBcc: victim@example.net", "subject line": "s"}, `line 12: field "name" contains a line break; it would forge headers`},
		{map[string]string{"name": "Bob", "subject line": "hi\nBcc: x@example.net"}, `field "subject line" contains a line break`},
		{map[string]string{"name": "Bob", "subject line": "hi\rthere"}, "line break"},
		{map[string]string{"name": "Bob", "subject line": "nul\x00"}, "control character"},
		{map[string]string{"name": "Bob", "subject line": "s", "email": "a@b.example>, evil@x.example"}, "To header"},
	} {
		_, err := tm.Render(testRecipient(tt.fields), RenderOptions{Now: testNow})
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%q: err = %v, want %q", tt.fields, err, tt.errHas)
		}
	}
	// In the body a line break is just text.
	body := loadTestTemplate(t, "From: news@example.com\nSubject: s\n\n{{.name}}\n")
	r, err := body.Render(testRecipient(map[string]string{"name": "line one\r\nline two\rthree\nfour"}), RenderOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(r.Data, []byte("\r\n\r\nline one\r\nline two\r\nthree\r\nfour\r\n")) {
		t.Errorf("body %q", r.Data)
	}
}

func TestRenderHTML(t *testing.T) {
	text := writeTemp(t, "msg.txt", "From: news@example.com\nSubject: s\n\nHi {{.name}}\n")
	html := writeTemp(t, "msg.html", "<p>Hi {{.name}}</p>\n")
	tm, err := LoadTemplate(text, html)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tm.Render(testRecipient(map[string]string{"name": "<script>Ann</script>"}), RenderOptions{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	parsed(t, r.Data)
	e, err := message.Read(bytes.NewReader(r.Data))
	if err != nil {
		t.Fatal(err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("not multipart: %q", e.Header.Get("Content-Type"))
	}
	var parts []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p.Body)
		ct, _, _ := p.Header.ContentType()
		parts = append(parts, ct+": "+string(b))
	}
	want := []string{"text/plain: Hi <script>Ann</script>\r\n", "text/html: <p>Hi &lt;script&gt;Ann&lt;/script&gt;</p>\r\n"}
	if strings.Join(parts, "|") != strings.Join(want, "|") {
		t.Errorf("parts %q, want %q", parts, want)
	}
}

func TestLoadTemplateErrors(t *testing.T) {
	tests := []struct {
		name, text, errHas string
	}{
		{"no From", "Subject: s\n\nbody\n", "no From header"},
		{"no Subject", "From: a@example.com\n\nbody\n", "no Subject header"},
		{"no blank line", "From: a@example.com\nSubject: s\n", "no empty line"},
		{"not a header", "From: a@example.com\nSubject: s\nhello there\n\nbody\n", `msg.txt:3: "hello there" is not a header line`},
		{"leading space", " From: a@example.com\n\nbody\n", "msg.txt:1: the first line starts with a space"},
		{"generated", "From: a@example.com\nSubject: s\nMessage-ID: <x@y>\n\nb\n", "msg.txt:3: remove the Message-ID header"},
		{"bcc", "From: a@example.com\nSubject: s\nBcc: b@example.com\n\nb\n", "remove the Bcc header"},
		{"twice", "From: a@example.com\nSubject: s\nsubject: t\n\nb\n", "msg.txt:3: a second subject header"},
		{"two From", "From: a@example.com, b@example.com\nSubject: s\n\nb\n", "exactly one address"},
		{"header parse", "From: a@example.com\nSubject: {{.x\n\nb\n", "msg.txt:2"},
		{"body parse line", "From: a@example.com\nSubject: s\n\nline 4\nline 5 {{.x | nofunc}}\n", "msg.txt:5: function \"nofunc\" not defined"},
		{"templated name", "From: a@example.com\nSubject: s\n{{.h}}: v\n\nb\n", "not a header line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTemplate(writeTemp(t, "msg.txt", tt.text), "")
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want %q", err, tt.errHas)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tm := loadTestTemplate(t, "From: news@example.com\nSubject: Hi {{.Name}}\n\n{{if .vip}}VIP{{end}}\n{{with .nothing}}[{{.}}]{{end}}\n{{$.city}} {{index . \"zip code\"}}\n")
	err := tm.Check([]string{"email", "name", "vip", "nothing", "city", "zip code"})
	if err == nil || !strings.Contains(err.Error(), `msg.txt:2:`) || !strings.Contains(err.Error(), `field "Name" is not a column`) ||
		!strings.Contains(err.Error(), `did you mean "name"?`) {
		t.Fatalf("err = %v", err)
	}
	if err := tm.Check([]string{"email", "Name", "vip", "nothing", "city", "zip code"}); err != nil {
		t.Fatal(err)
	}
	if err := tm.Check([]string{"email", "Name", "vip", "nothing", "city"}); err == nil || !strings.Contains(err.Error(), `msg.txt:6:`) || !strings.Contains(err.Error(), `"zip code"`) {
		t.Fatalf("err = %v", err)
	}
	// A From built from a column that holds no address fails the sample render.
	bad := loadTestTemplate(t, "From: {{.name}}\nSubject: s\n\nb\n")
	if err := bad.Check([]string{"email", "name"}); err != nil {
		t.Fatalf("sample address in name: %v", err)
	}
}

func FuzzRender(f *testing.F) {
	f.Add("Bob", "Hello", "bob@example.org")
	f.Add("Bob\r\nBcc: x@example.net", "s", "a@b.example")
	f.Add("Zoë \"Z\" <z>", "Grüße\n", "z@bücher.example")
	f.Add("=?utf-8?q?x?=", "a: b", "x@y.example")
	dir := f.TempDir()
	p1 := filepath.Join(dir, "a.txt")
	p2 := filepath.Join(dir, "b.txt")
	os.WriteFile(p1, []byte("From: News <news@example.com>\nTo: {{.name}} <{{.email}}>\nSubject: {{.subject}} for {{.name}}\nX-Tag: {{.name}}\n\nDear {{.name}}\n{{.subject}}\n"), 0o600)
	os.WriteFile(p2, []byte("From: {{.name}} <news@example.com>\nSubject: {{.subject}}\n\n{{.name}}\n"), 0o600)
	var tms []*Template
	for _, p := range []string{p1, p2} {
		tm, err := LoadTemplate(p, "")
		if err != nil {
			f.Fatal(err)
		}
		tms = append(tms, tm)
	}
	allowed := map[string]bool{"Date": true, "Message-Id": true, "From": true, "To": true, "Subject": true, "X-Tag": true,
		"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true}
	f.Fuzz(func(t *testing.T, name, subject, email string) {
		for _, tm := range tms {
			rc := testRecipient(map[string]string{"name": name, "subject": subject, "email": email})
			rc.Addr = email
			r, err := tm.Render(rc, RenderOptions{Now: testNow})
			if err != nil {
				continue
			}
			m, names := parsed(t, r.Data)
			seen := map[string]bool{}
			for _, n := range names {
				if !allowed[n] || seen[n] {
					t.Fatalf("injected header %q:\n%s", n, r.Data)
				}
				seen[n] = true
			}
			for _, h := range []string{"From", "To", "Subject"} {
				if _, ok := m.Header[h]; !ok {
					t.Fatalf("no %s:\n%s", h, r.Data)
				}
			}
			if _, err := m.Header.AddressList("From"); err != nil {
				t.Fatalf("From does not parse: %v\n%s", err, r.Data)
			}
			if _, err := m.Header.AddressList("To"); err != nil {
				t.Fatalf("To does not parse: %v\n%s", err, r.Data)
			}
		}
	})
}

func BenchmarkRender(b *testing.B) {
	tm := loadTestTemplate(b, "From: News <news@example.com>\nTo: {{.name}} <{{.email}}>\nSubject: News for {{.name}} in {{.city}}\nList-Unsubscribe: <mailto:unsub@example.com?subject={{.email}}>\n\n"+
		"Dear {{.name}},\n\n"+strings.Repeat("This month in {{.city}}: more of everything, at the usual place and time.\n", 20)+"\nRegards\n")
	rc := testRecipient(map[string]string{"name": "Bob Example", "city": "Lyon", "zip": "69001", "a": "1", "b": "2", "c": "3"})
	opt := RenderOptions{Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tm.Render(rc, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRenderConcurrent renders from many goroutines, as the engine does;
// run with -race.
func TestRenderConcurrent(t *testing.T) {
	text := writeTemp(t, "msg.txt", "From: news@example.com\nTo: {{.name}} <{{.email}}>\nSubject: Hi {{.name}}\n\nHi {{.name}}\n")
	html := writeTemp(t, "msg.html", "<p>Hi {{.name}}</p>\n")
	tm, err := LoadTemplate(text, html)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(&config.DKIM{Domain: "example.com", Selector: "s1", KeyFile: testpki.WriteKey(t, "ed25519", "pkcs8", 0o600)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				name := fmt.Sprintf("n%d-%d", g, i)
				r, err := tm.Render(testRecipient(map[string]string{"name": name}), RenderOptions{Now: testNow, Signer: s})
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Contains(r.Data, []byte("Subject: Hi "+name+"\r\n")) {
					t.Errorf("%s: wrong message", name)
					return
				}
			}
		})
	}
	wg.Wait()
}
