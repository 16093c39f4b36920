// Package sts is MTA-STS (RFC 8461) for a sending MTA: it finds a
// recipient domain's policy (a TXT record, then the policy file over
// HTTPS with a verified certificate) and says which MX hosts the policy
// allows. The probe reports it and direct delivery honours it: under an
// "enforce" policy only a matching MX, over STARTTLS with a certificate
// valid for its name, may receive the domain's mail.
//
// A Cache keeps policies between runs (RFC 8461 §5.1), so that a policy
// once seen cannot be stripped by an attacker who removes the TXT record or
// blocks the HTTPS fetch. TLSRPT (RFC 8460) reporting is left out.
package sts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/resolve"
)

// Mode is what a policy asks of senders (RFC 8461 §5).
type Mode string

const (
	Enforce Mode = "enforce" // deliver only to matching MX hosts with valid TLS
	Testing Mode = "testing" // deliver as usual; failures are for reports
	None    Mode = "none"    // the domain withdrew its policy
)

// Policy is a domain's MTA-STS policy (RFC 8461 §3.2).
type Policy struct {
	ID     string        `json:"id"` // from the TXT record
	Mode   Mode          `json:"mode"`
	MX     []string      `json:"mx"` // patterns: "mx.example.com" or "*.example.com"
	MaxAge time.Duration `json:"max_age"`
}

// maxAge is the longest max_age allowed: 31557600 s, a year (§3.2).
const maxAge = 31557600 * time.Second

// maxBody bounds the policy file: real ones are a few hundred bytes, and
// a larger body is an error, not our memory.
const maxBody = 64 << 10

// Matches reports whether the MX host name is allowed by the policy
// (§4.1): equal, case-insensitively, to a pattern, or matching a
// "*.domain" pattern in exactly its leftmost label.
func (p *Policy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		pat = strings.ToLower(strings.TrimSuffix(pat, "."))
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// Parse reads a policy file (§3.2): "key: value" lines, LF or CRLF;
// version, mode and max_age required, mx required unless the mode is
// none; unknown keys ignored.
func Parse(body []byte) (*Policy, error) {
	p := &Policy{}
	var version, mode, age bool
	for line := range strings.Lines(string(body)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy line %q is not key: value", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("policy version %q (want STSv1)", v)
			}
			version = true
		case "mode":
			switch Mode(v) {
			case Enforce, Testing, None:
				p.Mode, mode = Mode(v), true
			default:
				return nil, fmt.Errorf("policy mode %q (want enforce, testing or none)", v)
			}
		case "max_age":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || len(v) > 10 || time.Duration(n)*time.Second > maxAge {
				return nil, fmt.Errorf("policy max_age %q (want 0 to 31557600 seconds)", v)
			}
			p.MaxAge, age = time.Duration(n)*time.Second, true
		case "mx":
			if v == "" || strings.ContainsAny(v, " \t") {
				return nil, fmt.Errorf("policy mx %q is not a host name pattern", v)
			}
			p.MX = append(p.MX, v)
		}
	}
	switch {
	case !version:
		return nil, errors.New("policy has no version: STSv1 line")
	case !mode:
		return nil, errors.New("policy has no mode")
	case !age:
		return nil, errors.New("policy has no max_age")
	case len(p.MX) == 0 && p.Mode != None:
		return nil, errors.New("policy names no mx")
	}
	return p, nil
}

// Resolver looks up TXT records and addresses; *resolve.Resolver is one.
// A TXT name that does not exist or has none is an error
// resolve.IsNotFound knows, or no strings and no error. The policy host is
// looked up here too, not through the system's resolver: the same DNS
// server answers for the MX hosts and for the policy.
type Resolver interface {
	TXT(ctx context.Context, name string) ([]string, error)
	Addrs(ctx context.Context, host string) ([]netip.Addr, error)
}

// Fetcher finds policies.
type Fetcher struct {
	Resolver Resolver
	// RootCAs verifies the policy host's certificate; nil: the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds the whole HTTPS fetch; 0: 10 s. RFC 8461 §3.3
	// suggests a minute; a mailing should not wait that long per domain.
	Timeout time.Duration
	// DialContext, when set, connects for the HTTPS fetch instead of
	// Resolver and a net.Dialer (tests).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Cache keeps policies between runs; nil: none (each Lookup fetches).
	Cache *Cache
	// Now is the clock for the cache; nil: time.Now.
	Now func() time.Time
}

// Lookup returns domain's policy, or nil and no error when the domain
// publishes none (no "v=STSv1" TXT record at _mta-sts). A TXT record with
// a policy that cannot be fetched or read is an error: RFC 8461 §5 has the
// sender then proceed as if there were no policy, and the caller says so.
//
// With a Cache, a policy fetched before stays in force until its max_age
// runs out (§5.1): it is used without a fetch while the record's id is the
// same, and it stands when the record is gone, DNS fails or the fetch
// fails. A new id fetches the policy again.
func (f *Fetcher) Lookup(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	var known *Policy
	if f.Cache != nil {
		known = f.Cache.get(domain, now)
	}
	txts, err := f.Resolver.TXT(ctx, "_mta-sts."+domain)
	if err != nil && !resolve.IsNotFound(err) {
		if known != nil {
			return known, nil
		}
		return nil, fmt.Errorf("_mta-sts.%s TXT: %w", domain, err)
	}
	id, found, err := parseRecord(txts)
	switch {
	case (!found || err != nil) && known != nil:
		return known, nil // a stripped or broken record does not end a known policy
	case !found:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("_mta-sts.%s TXT: %w", domain, err)
	case known != nil && known.ID == id:
		return known, nil
	}
	p, err := f.fetch(ctx, domain)
	if err != nil {
		if known != nil {
			return known, nil
		}
		return nil, err
	}
	p.ID = id
	if f.Cache != nil {
		// A cache that cannot be written (a read-only home) only means
		// the next run fetches again: not a reason to stop.
		if p.Mode == None {
			f.Cache.drop(domain) // the domain withdrew its policy
		} else {
			_ = f.Cache.put(domain, p, now)
		}
	}
	return p, nil
}

// parseRecord reads the TXT record (§3.1): of the strings that begin with
// "v=STSv1;" there must be exactly one, with an id of 1 to 32 letters and
// digits. found is false when none begins so: no policy.
func parseRecord(txts []string) (id string, found bool, err error) {
	var recs []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1;") || t == "v=STSv1" {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, fmt.Errorf("%d v=STSv1 records (want one)", len(recs))
	}
	for _, field := range strings.Split(recs[0], ";")[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
		if k == "id" {
			id = v
		}
	}
	if id == "" || len(id) > 32 || strings.IndexFunc(id, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}) >= 0 {
		return "", true, fmt.Errorf("record %q has no valid id (1 to 32 letters and digits)", recs[0])
	}
	return id, true, nil
}

// fetch gets https://mta-sts.DOMAIN/.well-known/mta-sts.txt (§3.3): the
// certificate must be valid for that name, redirects are not followed,
// and the media type must be text/plain.
func (f *Fetcher) fetch(ctx context.Context, domain string) (*Policy, error) {
	host := "mta-sts." + domain
	where := "https://" + host + "/.well-known/mta-sts.txt"
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := f.DialContext
	if dial == nil {
		dial = f.dial
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: f.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12},
		DialContext:       dial,
		DisableKeepAlives: true,
		Proxy:             nil, // a policy comes from the domain itself, never through a proxy
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", where, unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: HTTP %s (redirects are not followed)", where, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("fetching %s: media type %q (want text/plain)", where, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", where, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("fetching %s: the policy is larger than %d KiB", where, maxBody>>10)
	}
	p, err := Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return p, nil
}

// dial connects to addr's host through the Resolver's addresses, in the
// order given, the first that answers.
func (f *Fetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := f.Resolver.Addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	var last error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	if last == nil {
		last = fmt.Errorf("%s has no address", host)
	}
	return nil, last
}

// unwrapURL drops net/http's "Get \"URL\": " prefix: the caller names the
// URL once.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
