package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
)

// LoadKey loads the private key of d: RSA (PKCS #1 or PKCS #8) of at least
// 1024 bits, or Ed25519 (RFC 8463). A key file that others can read is an
// error, because whoever reads it can sign as the domain. It also checks
// the rest of what signing needs (domain, selector, From among the signed
// fields), so that `config check` finds what the signer would refuse.
// Problems come back as *Error.
func (d *DKIM) LoadKey() (crypto.Signer, error) {
	fail := func(key, msg, hint string) (crypto.Signer, error) {
		return nil, &Error{Key: "dkim." + key, Message: msg, Hint: hint}
	}
	if d.Domain == "" {
		return fail("domain", "missing", "the signing domain (d=)")
	}
	if d.Selector == "" {
		return fail("selector", "missing", "the selector (s=)")
	}
	st, err := os.Stat(d.KeyFile)
	if err != nil {
		return fail("key_file", err.Error(), "")
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return fail("key_file", d.KeyFile+" is readable by others", "chmod 600 "+d.KeyFile)
	}
	data, err := os.ReadFile(d.KeyFile)
	if err != nil {
		return fail("key_file", err.Error(), "")
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return fail("key_file", fmt.Sprintf("%s: %v", d.KeyFile, err), "a PEM \"PRIVATE KEY\" (PKCS #8) or \"RSA PRIVATE KEY\" block; e.g. openssl genpkey -algorithm ed25519")
	}
	// RFC 6376 §5.4: the From field MUST be signed.
	if !slices.ContainsFunc(d.SignedHeaders(), func(h string) bool { return strings.EqualFold(h, "From") }) {
		return fail("headers", "does not include From", "RFC 6376 §5.4 requires signing From")
	}
	return key, nil
}

// SignedHeaders is a copy of the header fields to sign: d.Headers, or the
// default ones when it is empty (a Config not defaulted).
func (d *DKIM) SignedHeaders() []string {
	headers := d.Headers
	if len(headers) == 0 {
		headers = defaultDKIMHeaders
	}
	return slices.Clone(headers)
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key this signer reads", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		// RFC 8301 §3.2: signers MUST use at least 1024 bits (2048 SHOULD).
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("RSA key of %d bits; RFC 8301 requires at least 1024", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%T keys are not used by DKIM; use RSA or Ed25519", key)
}
