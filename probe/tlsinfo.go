package probe

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// tlsConfig returns a config that completes the handshake whatever the
// certificate, and verifies it itself (system roots plus --tls-ca) into
// info: the probe reports an untrusted certificate as a fact, with the
// reason in words, rather than failing the connection and learning nothing.
// Mail is never sent over this config.
func (p *Prober) tlsConfig(serverName string, info *TLSInfo) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // verified below, by VerifyConnection, into info
		MinVersion:         tls.VersionTLS10,
		VerifyConnection: func(cs tls.ConnectionState) error {
			info.VerifyError = verifyError(p.Roots, serverName, cs.PeerCertificates, p.now())
			info.Verified = info.VerifyError == ""
			return nil
		},
	}
}

func verifyError(roots *x509.CertPool, name string, chain []*x509.Certificate, now time.Time) string {
	if len(chain) == 0 {
		return "the server sent no certificate"
	}
	opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: x509.NewCertPool(), CurrentTime: now}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := chain[0].Verify(opts)
	return certErrorWords(err, chain[0], now)
}

// certErrorWords explains a verification failure the way a person needs it.
func certErrorWords(err error, leaf *x509.Certificate, now time.Time) string {
	if err == nil {
		return ""
	}
	var (
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &he):
		return fmt.Sprintf("the certificate is for %s, not %s", strings.Join(certNames(leaf), ", "), he.Host)
	case errors.As(err, &ua):
		return fmt.Sprintf("the certificate is signed by an unknown authority (%s): not trusted by this machine; pass its CA with --tls-ca if you trust it", leaf.Issuer.CommonName)
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		if now.After(leaf.NotAfter) {
			return fmt.Sprintf("the certificate expired on %s", leaf.NotAfter.Format(time.DateOnly))
		}
		return fmt.Sprintf("the certificate is not valid until %s", leaf.NotBefore.Format(time.DateOnly))
	}
	return err.Error()
}

func fillTLS(info *TLSInfo, cs tls.ConnectionState) {
	info.Version = tls.VersionName(cs.Version)
	info.Cipher = tls.CipherSuiteName(cs.CipherSuite)
	if len(cs.PeerCertificates) == 0 {
		return
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	info.SHA256 = hex.EncodeToString(sum[:])
	info.Names = certNames(leaf)
	info.Subject = leaf.Subject.String()
	info.Issuer = leaf.Issuer.String()
	info.NotBefore, info.NotAfter = leaf.NotBefore, leaf.NotAfter
}

// certNames are the DNS names a certificate is valid for: the SAN list, or
// the Common Name for old certificates without one.
func certNames(c *x509.Certificate) []string {
	if len(c.DNSNames) > 0 {
		return c.DNSNames
	}
	if c.Subject.CommonName != "" {
		return []string{c.Subject.CommonName}
	}
	return nil
}
