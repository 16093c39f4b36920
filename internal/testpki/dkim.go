package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
)

// DKIMKey makes a signing key of kind "rsa", "ed25519" or "ecdsa" (which DKIM
// refuses); the RSA one is made once, since 2048-bit generation
// is slow under -race.
func DKIMKey(t testing.TB, kind string) crypto.Signer {
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

// WriteKeyFile writes key as PEM, format "pkcs1" or "pkcs8", to a file of
// mode perm in a temporary directory of t, and returns its path.
func WriteKeyFile(t testing.TB, key crypto.Signer, format string, perm os.FileMode) string {
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

// WriteKey writes a new key of kind (see DKIMKey) with WriteKeyFile.
func WriteKey(t testing.TB, kind, format string, perm os.FileMode) string {
	return WriteKeyFile(t, DKIMKey(t, kind), format, perm)
}

// DKIMRecord is the TXT record (RFC 6376 §3.6.1, RFC 8463 §4.2) for key.
func DKIMRecord(t *testing.T, key crypto.Signer) string {
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
