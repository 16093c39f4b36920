package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/mailroute/mailroute/internal/resolve"
)

// KeyRecord is a DKIM key record (RFC 6376 §3.6.1), as published in the TXT
// record at SELECTOR._domainkey.DOMAIN.
type KeyRecord struct {
	Version  string   `json:"v,omitempty"`
	KeyType  string   `json:"k"`           // "rsa" (the default) or "ed25519" (RFC 8463)
	Hashes   []string `json:"h,omitempty"` // acceptable hash algorithms; empty: all
	Services []string `json:"s,omitempty"` // service types; empty: "*"
	Flags    []string `json:"t,omitempty"` // "y" testing, "s" no subdomains in i=
	Public   []byte   `json:"-"`           // p=, decoded; empty: the key was revoked
}

// Revoked reports an empty p= (RFC 6376 §3.6.1: "An empty value means that
// this public key has been revoked").
func (k *KeyRecord) Revoked() bool { return len(k.Public) == 0 }

// Testing reports t=y: "Verifiers MUST NOT treat messages from Signers in
// testing mode differently from unsigned email" (RFC 6376 §3.6.1).
func (k *KeyRecord) Testing() bool {
	for _, f := range k.Flags {
		if f == "y" {
			return true
		}
	}
	return false
}

// ParseKeyRecord reads a key record. It follows RFC 6376 §3.2 (a tag list:
// tag=value pairs separated by ";", whitespace around both ignored,
// duplicate tags invalid, unknown tags ignored) and §3.6.1 (v=DKIM1 first
// when present; p= required, base64 with whitespace allowed inside).
func ParseKeyRecord(txt string) (*KeyRecord, error) {
	tags := map[string]string{}
	first := ""
	for _, part := range strings.Split(txt, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue // a trailing ";" is allowed
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not tag=value", part)
		}
		name = strings.TrimSpace(name)
		if name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
		}) {
			return nil, fmt.Errorf("%q is not a tag name", name)
		}
		if _, dup := tags[name]; dup {
			return nil, fmt.Errorf("tag %s appears twice (RFC 6376 §3.2)", name)
		}
		tags[name] = strings.TrimSpace(value)
		if first == "" {
			first = name
		}
	}
	k := &KeyRecord{KeyType: "rsa"}
	if v, ok := tags["v"]; ok {
		if first != "v" {
			return nil, errors.New("v= must be the first tag (RFC 6376 §3.6.1)")
		}
		if v != "DKIM1" {
			return nil, fmt.Errorf("v=%s: only DKIM1 exists", v)
		}
		k.Version = v
	}
	if t, ok := tags["k"]; ok {
		if t == "" {
			return nil, errors.New("k= is empty (rsa or ed25519)")
		}
		k.KeyType = strings.ToLower(t)
	}
	list := func(s string) []string {
		var out []string
		for _, x := range strings.Split(s, ":") {
			if x = strings.ToLower(strings.TrimSpace(x)); x != "" {
				out = append(out, x)
			}
		}
		return out
	}
	k.Hashes, k.Services, k.Flags = list(tags["h"]), list(tags["s"]), list(tags["t"])
	p, ok := tags["p"]
	if !ok {
		return nil, errors.New("no p= tag: the record holds no public key")
	}
	p = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, p)
	pub, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("p= is not base64: %v", err)
	}
	k.Public = pub
	return k, nil
}

// PublicKey is the key the record publishes: an *rsa.PublicKey (a
// SubjectPublicKeyInfo, or the bare RSAPublicKey some publish) or an
// ed25519.PublicKey (the raw 32 octets, RFC 8463 §4.2).
func (k *KeyRecord) PublicKey() (crypto.PublicKey, error) {
	if k.Revoked() {
		return nil, errors.New("the key is revoked (empty p=)")
	}
	switch k.KeyType {
	case "rsa":
		if pub, err := x509.ParsePKIXPublicKey(k.Public); err == nil {
			if rk, ok := pub.(*rsa.PublicKey); ok {
				return rk, nil
			}
			return nil, fmt.Errorf("k=rsa but p= holds a %T", pub)
		}
		rk, err := x509.ParsePKCS1PublicKey(k.Public)
		if err != nil {
			return nil, fmt.Errorf("p= is not an RSA public key: %v", err)
		}
		return rk, nil
	case "ed25519":
		if len(k.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("k=ed25519 but p= has %d octets, not 32", len(k.Public))
		}
		return ed25519.PublicKey(k.Public), nil
	}
	return nil, fmt.Errorf("k=%s: a key type receivers do not know (rsa or ed25519)", k.KeyType)
}

// DKIMKey is what DNS says about one selector.
type DKIMKey struct {
	Name   string     `json:"name"` // SELECTOR._domainkey.DOMAIN
	Record string     `json:"record,omitempty"`
	Key    *KeyRecord `json:"key,omitempty"`
	// Err is why there is no usable record: none published, a lookup
	// failure, or a record that does not parse.
	Err      string `json:"error,omitempty"`
	NotFound bool   `json:"not_found,omitempty"`
}

// LookupDKIM fetches and parses the key record of selector at domain. Of
// several TXT records the first that parses is used, as verifiers do
// (RFC 6376 §3.6.2.2 leaves the choice to them).
func LookupDKIM(ctx context.Context, r *resolve.Resolver, selector, domain string) *DKIMKey {
	out := &DKIMKey{Name: selector + "._domainkey." + domain}
	txts, err := r.TXT(ctx, out.Name)
	if err != nil {
		out.Err, out.NotFound = err.Error(), resolve.IsNotFound(err)
		return out
	}
	var errs []string
	for _, t := range txts {
		k, err := ParseKeyRecord(t)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%q: %v", t, err))
			continue
		}
		out.Record, out.Key = t, k
		return out
	}
	out.Err = "no usable key record: " + strings.Join(errs, "; ")
	return out
}

// SameKey reports whether the record publishes pub, the public half of the
// signing key.
func SameKey(rec *KeyRecord, pub crypto.PublicKey) (bool, error) {
	published, err := rec.PublicKey()
	if err != nil {
		return false, err
	}
	eq, ok := published.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub), nil
}

// KeyBits is the size of an RSA key in bits; 0 for other kinds.
func KeyBits(pub crypto.PublicKey) int {
	if k, ok := pub.(*rsa.PublicKey); ok {
		return k.N.BitLen()
	}
	return 0
}

// KeyType is "rsa", "ed25519" or the Go type for others.
func KeyType(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "rsa"
	case ed25519.PublicKey:
		return "ed25519"
	}
	return fmt.Sprintf("%T", pub)
}
