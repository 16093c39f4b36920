package smtpclient

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Roots is the system roots plus the PEM certificates in file, for the
// CA options (--tls-ca, a relay's ca_file, direct.ca_file); nil, which
// crypto/tls takes as the system roots, when file is "".
func Roots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found in the file", file)
	}
	return pool, nil
}
