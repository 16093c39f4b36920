package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Mail authentication in the lab: SPF, DKIM and DMARC records are TXT
// records served by the lab dnsmasq (Options.ExtraDNS), and DKIM keys are
// made in Go, like the certificates.

// TXTRecord is a dnsmasq line that serves value as the TXT record of name.
// A value longer than 255 octets (an RSA DKIM key) is split into several
// character-strings of one record, which receivers join with nothing between
// them (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func TXTRecord(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return "txt-record=" + name + "," + strings.Join(parts, ",")
}

// DKIMKey is a throwaway DKIM key: the private half in a file for a
// mailroute config, the public half as the selector's TXT record value.
type DKIMKey struct {
	File   string // PEM (PKCS #8), mode 0600
	Record string // "v=DKIM1; k=ed25519; p=…" or "v=DKIM1; k=rsa; p=…"
}

// NewDKIMKey writes a new key of kind "ed25519" or "rsa" (2048 bits) into
// dir. Ed25519 keys are published as the raw 32 octets (RFC 8463 §4.2), RSA
// keys as a SubjectPublicKeyInfo (RFC 6376 §3.6.1).
func NewDKIMKey(t testing.TB, dir, kind string) DKIMKey {
	t.Helper()
	var priv any
	var pub []byte
	switch kind {
	case "ed25519":
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, p
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, der
	default:
		t.Fatalf("lab: NewDKIMKey: unknown kind %q", kind)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "dkim-"+kind+"-*.pem")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		t.Fatal(err)
	}
	return DKIMKey{File: filepath.Clean(f.Name()), Record: "v=DKIM1; k=" + kind + "; p=" + base64.StdEncoding.EncodeToString(pub)}
}

// LookupTXT asks the lab DNS for the TXT records of name, each record's
// strings joined, in the shape go-msgauth's verifier wants
// (dkim.VerifyOptions.LookupTXT).
func (l *Lab) LookupTXT(name string) ([]string, error) {
	in, err := l.Query(context.Background(), name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range in.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	if len(out) == 0 {
		return nil, &os.PathError{Op: "lookup TXT", Path: name, Err: os.ErrNotExist}
	}
	return out, nil
}
