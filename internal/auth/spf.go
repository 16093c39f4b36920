// Package auth gathers the DNS facts receivers use to authenticate mail:
// SPF (RFC 7208) evaluated for the addresses a mailing will leave from, the
// DKIM key record (RFC 6376 §3.6) of a selector, the DMARC policy (RFC 7489)
// of the From domain with its organizational-domain fallback, and the
// alignment rules that tie them to the From domain (RFC 7489 §3.1).
//
// It observes and never judges: the advisor turns these facts into
// verdicts and advice. It is shared by the check command, advise and the
// wizard, and the sender's dry run.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/miekg/dns"

	"github.com/mailroute/mailroute/internal/resolve"
)

// SPF is the SPF outcome for one envelope domain.
type SPF struct {
	Domain string `json:"domain"`
	// Record is the domain's SPF record ("v=spf1 …"); "" when there is none
	// or it could not be read (RecordErr says which).
	Record    string    `json:"record,omitempty"`
	RecordErr string    `json:"record_error,omitempty"`
	Results   []SPFAddr `json:"results,omitempty"`
	// Include is the provider's documented include that was looked for
	// (from the catalog), IncludeFound whether the domain's record reaches
	// it, through nested includes and redirects (IncludePath).
	Include      string   `json:"include,omitempty"`
	IncludeFound bool     `json:"include_found,omitempty"`
	IncludePath  []string `json:"include_path,omitempty"`
}

// SPFAddr is the result of check_host() (RFC 7208 §4) for one address.
type SPFAddr struct {
	Addr   string `json:"addr"`
	Result string `json:"result"` // pass, fail, softfail, neutral, none, temperror, permerror (RFC 7208 §2.6)
	Detail string `json:"detail,omitempty"`
}

// CheckSPF evaluates the SPF policy of sender's domain for each address, as
// the receiving server will when the mail arrives from it. helo is used only
// when sender has no domain (RFC 7208 §2.4). The evaluation is
// blitiri.com.ar/go/spf's, with its lookups through r.
func CheckSPF(ctx context.Context, r *resolve.Resolver, sender, helo string, addrs []netip.Addr) *SPF {
	domain := sender[strings.LastIndexByte(sender, '@')+1:]
	out := &SPF{Domain: domain}
	out.Record, out.RecordErr = spfRecord(ctx, r, domain)
	res := Resolver{R: r}
	for _, a := range addrs {
		result, err := spf.CheckHostWithSender(net.IP(a.Unmap().AsSlice()), helo, sender,
			spf.WithResolver(res), spf.WithContext(ctx))
		x := SPFAddr{Addr: a.String(), Result: string(result)}
		if err != nil {
			x.Detail = err.Error()
		}
		out.Results = append(out.Results, x)
	}
	return out
}

// Passed reports whether every address got "pass": mail from any of them
// may be judged, so all must pass.
func (s *SPF) Passed() bool {
	if s == nil || len(s.Results) == 0 {
		return false
	}
	for _, r := range s.Results {
		if r.Result != string(spf.Pass) {
			return false
		}
	}
	return true
}

// spfRecord is the domain's one SPF record (RFC 7208 §4.5: records that
// start with "v=spf1" followed by a space or the end; more than one is a
// permerror).
func spfRecord(ctx context.Context, r *resolve.Resolver, domain string) (string, string) {
	txts, err := r.TXT(ctx, domain)
	if err != nil {
		if resolve.IsNotFound(err) {
			return "", "no SPF record (no TXT records at " + domain + ")"
		}
		return "", err.Error()
	}
	var recs []string
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", "no SPF record (no TXT record at " + domain + " starts with v=spf1)"
	case 1:
		return recs[0], ""
	}
	return "", fmt.Sprintf("%d SPF records at %s; RFC 7208 §4.5 makes that a permerror: %s", len(recs), domain, strings.Join(recs, " | "))
}

// maxIncludeLookups bounds the walk for a documented include, as RFC 7208
// §4.6.4 bounds an evaluation to 10 lookups.
const maxIncludeLookups = 10

// FindInclude reports whether the SPF record of domain reaches the include
// domain want (e.g. "_spf.google.com") through include: and redirect=
// terms, and the chain of domains that leads there. It is how a relay's
// outbound addresses, which are not the submission host's, are predicted:
// providers document the include that lists them.
func FindInclude(ctx context.Context, r *resolve.Resolver, domain, want string) (bool, []string, error) {
	want = strings.ToLower(strings.TrimSuffix(want, "."))
	lookups := 0
	var walk func(d string, path []string) (bool, []string, error)
	walk = func(d string, path []string) (bool, []string, error) {
		path = append(path, d)
		if strings.EqualFold(d, want) {
			return true, path, nil
		}
		if lookups++; lookups > maxIncludeLookups {
			return false, nil, errors.New("more than 10 lookups (RFC 7208 §4.6.4)")
		}
		rec, recErr := spfRecord(ctx, r, d)
		if rec == "" {
			if len(path) == 1 {
				return false, nil, errors.New(recErr)
			}
			return false, nil, nil
		}
		for _, term := range strings.Fields(rec)[1:] {
			term = strings.ToLower(term)
			var target string
			switch {
			case strings.HasPrefix(term, "include:"), strings.HasPrefix(term, "+include:"):
				target = term[strings.IndexByte(term, ':')+1:]
			case strings.HasPrefix(term, "redirect="):
				target = strings.TrimPrefix(term, "redirect=")
			default:
				continue
			}
			// A macro (RFC 7208 §7) depends on the message; it cannot be
			// followed here.
			if target == "" || strings.Contains(target, "%") {
				continue
			}
			if ok, p, err := walk(strings.TrimSuffix(target, "."), path); ok || err != nil {
				return ok, p, err
			}
		}
		return false, nil, nil
	}
	return walk(strings.ToLower(domain), nil)
}

// Resolver gives the SPF library (spf.DNSResolver, shaped like
// *net.Resolver) our resolver, so that --resolver and the lab DNS apply and
// the evaluation uses the same servers as every other fact. Errors come back
// as *net.DNSError, whose IsNotFound the library counts as a void lookup
// (RFC 7208 §4.6.4) and whose other failures make a temperror.
type Resolver struct{ R *resolve.Resolver }

func (x Resolver) dnsErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsNotFound: resolve.IsNotFound(err), IsTemporary: !resolve.IsNotFound(err)}
}

// LookupTXT returns the TXT records of name, strings joined.
func (x Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := x.R.TXT(ctx, name)
	return txts, x.dnsErr(name, err)
}

// LookupIPAddr returns the A and AAAA addresses of host.
func (x Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := x.R.Addrs(ctx, host)
	if err != nil {
		return nil, x.dnsErr(host, err)
	}
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: a.AsSlice()}
	}
	return out, nil
}

// LookupMX returns the MX records of name as published: the "mx" mechanism
// uses no implicit MX (RFC 7208 §5.4), so resolve.MX, which applies RFC 5321
// §5.1, is not used.
func (x Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	reply, err := x.R.Query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, x.dnsErr(name, err)
	}
	if reply.Msg.Rcode == dns.RcodeNameError {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	var out []*net.MX
	for _, rr := range reply.Msg.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no MX records", Name: name, IsNotFound: true}
	}
	return out, nil
}

// LookupAddr returns the PTR names of addr.
func (x Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: addr}
	}
	names, err := x.R.PTR(ctx, a)
	return names, x.dnsErr(addr, err)
}
