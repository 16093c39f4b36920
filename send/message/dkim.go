package message

import (
	"bytes"
	"crypto"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/mailroute/mailroute/internal/config"
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
// configuration come back as *config.Error (config.DKIM.LoadKey checks
// them, for `config check` too).
func NewSigner(d *config.DKIM) (*Signer, error) {
	key, err := d.LoadKey()
	if err != nil {
		return nil, err
	}
	headers := d.SignedHeaders()
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
