package message

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/testpki"
)

func TestSignVerify(t *testing.T) {
	tmpl := loadTestTemplate(t, "From: News <news@example.com>\nSubject: Héllo {{.name}}\n\nDear {{.name}},\n\nnon-ASCII body: café\n")
	for _, tt := range []struct{ kind, format string }{{"rsa", "pkcs1"}, {"rsa", "pkcs8"}, {"ed25519", "pkcs8"}} {
		t.Run(tt.kind+"/"+tt.format, func(t *testing.T) {
			key := testpki.DKIMKey(t, tt.kind)
			s, err := NewSigner(&config.DKIM{Domain: "example.com", Selector: "s1", KeyFile: testpki.WriteKeyFile(t, key, tt.format, 0o600)})
			if err != nil {
				t.Fatal(err)
			}
			r, err := tmpl.Render(testRecipient(map[string]string{"name": "Zoë"}), RenderOptions{Now: time.Now(), Signer: s})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(r.Data, []byte("DKIM-Signature: ")) {
				t.Fatalf("not signed:\n%s", r.Data)
			}
			var asked []string
			opts := &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
				asked = append(asked, domain)
				if domain != "s1._domainkey.example.com" {
					return nil, errors.New("NXDOMAIN")
				}
				return []string{testpki.DKIMRecord(t, key)}, nil
			}}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(r.Data), opts)
			if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.com" {
				t.Fatalf("verify: %v %+v (asked %v)", err, vs, asked)
			}
			// The signature must break when the body changes.
			tampered := bytes.Replace(r.Data, []byte("Dear"), []byte("Deer"), 1)
			vs, _ = dkim.VerifyWithOptions(bytes.NewReader(tampered), opts)
			if len(vs) != 1 || vs[0].Err == nil {
				t.Fatal("tampered message verifies")
			}
		})
	}
}

func TestNewSignerErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	tests := []struct {
		name   string
		d      config.DKIM
		key    string
		msgHas string
		hint   string
	}{
		{"readable by others", config.DKIM{Domain: "e.example", Selector: "s", KeyFile: testpki.WriteKey(t, "ed25519", "pkcs8", 0o644)}, "dkim.key_file", "readable by others", "chmod 600"},
		{"missing", config.DKIM{Domain: "e.example", Selector: "s", KeyFile: "/nonexistent.pem"}, "dkim.key_file", "no such file", ""},
		{"not pem", config.DKIM{Domain: "e.example", Selector: "s", KeyFile: bad}, "dkim.key_file", "no PEM block", "PRIVATE KEY"},
		{"ecdsa", config.DKIM{Domain: "e.example", Selector: "s", KeyFile: testpki.WriteKey(t, "ecdsa", "pkcs8", 0o600)}, "dkim.key_file", "RSA or Ed25519", ""},
		{"no from", config.DKIM{Domain: "e.example", Selector: "s", KeyFile: testpki.WriteKey(t, "ed25519", "pkcs8", 0o600), Headers: []string{"Subject"}}, "dkim.headers", "From", "6376"},
		{"no domain", config.DKIM{Selector: "s"}, "dkim.domain", "missing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "readable by others" && runtime.GOOS == "windows" {
				t.Skip()
			}
			_, err := NewSigner(&tt.d)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tt.key || !strings.Contains(ce.Message, tt.msgHas) || !strings.Contains(ce.Hint, tt.hint) {
				t.Fatalf("got %#v", err)
			}
		})
	}
}

// BenchmarkSign shows what DKIM costs per message: RSA-2048 signing is the
// expensive part of a signed mailing; Ed25519 is far cheaper.
func BenchmarkSign(b *testing.B) {
	tmpl := loadTestTemplate(b, "From: news@example.com\nSubject: s\n\n"+strings.Repeat("body line\n", 40))
	r, err := tmpl.Render(testRecipient(nil), RenderOptions{Now: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"rsa", "ed25519"} {
		b.Run(kind, func(b *testing.B) {
			s, err := NewSigner(&config.DKIM{Domain: "example.com", Selector: "s1", KeyFile: testpki.WriteKey(b, kind, "pkcs8", 0o600)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(r.Data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
