package send

import (
	"bytes"
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

	"github.com/emersion/go-msgauth/dkim"
)

// Signer adds a DKIM-Signature (RFC 6376) to rendered messages. It is safe
// for concurrent use.
type Signer struct {
	domain, selector string
	key              crypto.Signer
	headers          []string
}

// NewSigner loads the private key of d: RSA (PKCS #1 or PKCS #8) of at least
// 1024 bits, or Ed25519 (RFC 8463). A key file that others can read is an
// error, because whoever reads it can sign as the domain. Problems with the
// configuration come back as *ConfigError.
func NewSigner(d *DKIM) (*Signer, error) {
	fail := func(key, msg, hint string) (*Signer, error) {
		return nil, &ConfigError{Key: "dkim." + key, Message: msg, Hint: hint}
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
	headers := d.Headers
	if len(headers) == 0 {
		headers = defaultDKIMHeaders
	}
	// RFC 6376 §5.4: the From field MUST be signed.
	if !slices.ContainsFunc(headers, func(h string) bool { return strings.EqualFold(h, "From") }) {
		return fail("headers", "does not include From", "RFC 6376 §5.4 requires signing From")
	}
	headers = slices.Clone(headers)
	// RFC 8058 §4: the List-Unsubscribe and List-Unsubscribe-Post fields
	// MUST be covered by the signature. They are always listed, so that
	// nobody can add them to a message that has none either (RFC 6376 §5.4
	// lets h= name fields that are absent: they sign as null).
	for _, h := range []string{"List-Unsubscribe", "List-Unsubscribe-Post"} {
		if !slices.ContainsFunc(headers, func(x string) bool { return strings.EqualFold(x, h) }) {
			headers = append(headers, h)
		}
	}
	return &Signer{domain: d.Domain, selector: d.Selector, key: key, headers: headers}, nil
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

// Sign returns msg with a DKIM-Signature field prepended, using
// relaxed/relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4), which survives
// the re-folding and whitespace changes relays make.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	opts := dkim.SignOptions{
		Domain:                 s.domain,
		Selector:               s.selector,
		Signer:                 s.key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             s.headers,
	}
	var out bytes.Buffer
	out.Grow(len(msg) + 512)
	if err := dkim.Sign(&out, bytes.NewReader(msg), &opts); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return out.Bytes(), nil
}

// Public is the public half of the signing key, for comparing with the key
// published in DNS (mailroute check).
func (s *Signer) Public() crypto.PublicKey { return s.key.Public() }
