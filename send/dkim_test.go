package send

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
)

// testKey makes a key; the RSA one is made once, since 2048-bit generation
// is slow under -race.
func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	switch kind {
	case "rsa":
		rsaKeyOnce.Do(func() {
			var err error
			if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		})
		return rsaKey
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "ecdsa":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t.Fatalf("kind %q", kind)
	return nil
}

func writeKeyFile(t testing.TB, key crypto.Signer, format string, perm os.FileMode) string {
	t.Helper()
	var block *pem.Block
	switch format {
	case "pkcs1":
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	case "pkcs8":
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	p := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // umask
		t.Fatal(err)
	}
	return p
}

func writeKey(t testing.TB, kind, format string, perm os.FileMode) string {
	return writeKeyFile(t, testKey(t, kind), format, perm)
}

// dnsRecord is the TXT record (RFC 6376 §3.6.1, RFC 8463 §4.2) for key.
func dnsRecord(t *testing.T, key crypto.Signer) string {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	t.Fatalf("key %T", key)
	return ""
}

func TestSignVerify(t *testing.T) {
	tmpl := loadTestTemplate(t, "From: News <news@example.com>\nSubject: Héllo {{.name}}\n\nDear {{.name}},\n\nnon-ASCII body: café\n")
	for _, tt := range []struct{ kind, format string }{{"rsa", "pkcs1"}, {"rsa", "pkcs8"}, {"ed25519", "pkcs8"}} {
		t.Run(tt.kind+"/"+tt.format, func(t *testing.T) {
			key := testKey(t, tt.kind)
			s, err := NewSigner(&DKIM{Domain: "example.com", Selector: "s1", KeyFile: writeKeyFile(t, key, tt.format, 0o600)})
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
				return []string{dnsRecord(t, key)}, nil
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
		d      DKIM
		key    string
		msgHas string
		hint   string
	}{
		{"readable by others", DKIM{Domain: "e.example", Selector: "s", KeyFile: writeKey(t, "ed25519", "pkcs8", 0o644)}, "dkim.key_file", "readable by others", "chmod 600"},
		{"missing", DKIM{Domain: "e.example", Selector: "s", KeyFile: "/nonexistent.pem"}, "dkim.key_file", "no such file", ""},
		{"not pem", DKIM{Domain: "e.example", Selector: "s", KeyFile: bad}, "dkim.key_file", "no PEM block", "PRIVATE KEY"},
		{"ecdsa", DKIM{Domain: "e.example", Selector: "s", KeyFile: writeKey(t, "ecdsa", "pkcs8", 0o600)}, "dkim.key_file", "RSA or Ed25519", ""},
		{"no from", DKIM{Domain: "e.example", Selector: "s", KeyFile: writeKey(t, "ed25519", "pkcs8", 0o600), Headers: []string{"Subject"}}, "dkim.headers", "From", "6376"},
		{"no domain", DKIM{Selector: "s"}, "dkim.domain", "missing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "readable by others" && runtime.GOOS == "windows" {
				t.Skip()
			}
			_, err := NewSigner(&tt.d)
			var ce *ConfigError
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
			s, err := NewSigner(&DKIM{Domain: "example.com", Selector: "s1", KeyFile: writeKey(b, kind, "pkcs8", 0o600)})
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
