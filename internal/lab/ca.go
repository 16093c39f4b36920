package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Certificates are made with Go rather than openssl: no subprocesses, and ECDSA P-256 keys
// take microseconds. One CA and one set of server certificates serve every lab of a test
// process: they depend on no lab-specific name, and each lab writes its own copies.

// certNames lists each server certificate's subjectAltNames; the first is its subject CN.
var certNames = map[string][]string{
	"mx":    {MXHost, BetaMX2Host, GammaDomain},
	"relay": {RelayHost, RelayDomain},
	"isp":   {ISPHost},
	// The shared MX (sharedmx.go): one certificate for all its hosted domains, and the
	// dual-stack MX's own.
	"shared": {SharedMXHost},
	"dual":   {DualMXHost},
	// MTA-STS policy hosts (ServeMTASTS).
	"sts": {"mta-sts." + AlphaDomain, "mta-sts." + BetaDomain, "mta-sts." + GammaDomain, "mta-sts." + DeltaDomain},
}

type pemPair struct{ cert, key []byte }

var pki struct {
	once   sync.Once
	err    error
	ca     []byte
	server map[string]pemPair
}

func makePKI() {
	pki.once.Do(func() {
		pki.server = map[string]pemPair{}
		now := time.Now()
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			pki.err = err
			return
		}
		caTmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "mailroute lab CA", Organization: []string{"mailroute lab"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(7 * 24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			MaxPathLenZero:        true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			pki.err = err
			return
		}
		caCert, err := x509.ParseCertificate(caDER)
		if err != nil {
			pki.err = err
			return
		}
		pki.ca = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
		serial := int64(2)
		for name, sans := range certNames {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				pki.err = err
				return
			}
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(serial),
				Subject:      pkix.Name{CommonName: sans[0], Organization: []string{"mailroute lab"}},
				DNSNames:     sans,
				NotBefore:    now.Add(-time.Hour),
				NotAfter:     now.Add(7 * 24 * time.Hour),
				KeyUsage:     x509.KeyUsageDigitalSignature,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}
			serial++
			der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
			if err != nil {
				pki.err = err
				return
			}
			keyDER, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				pki.err = err
				return
			}
			pki.server[name] = pemPair{
				cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
				key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
			}
		}
	})
}

// writeCerts writes ca.pem into the lab dir and <instance>/{cert,key}.pem for each server.
func (l *Lab) writeCerts() error {
	makePKI()
	if pki.err != nil {
		return pki.err
	}
	if err := os.WriteFile(l.CAFile, pki.ca, 0o644); err != nil {
		return err
	}
	for name, pair := range pki.server {
		dir := filepath.Join(l.Dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// Postfix reads its key as root before dropping privileges, so 0600 root is enough.
		if err := os.WriteFile(filepath.Join(dir, "key.pem"), pair.key, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pair.cert, 0o644); err != nil {
			return err
		}
	}
	if len(pki.server) != len(certNames) {
		return fmt.Errorf("made %d of %d server certificates", len(pki.server), len(certNames))
	}
	return nil
}
