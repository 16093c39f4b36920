package auth

import (
	"context"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/mailroute/mailroute/internal/resolve"
)

// DMARC is the policy that applies to mail from one From domain.
type DMARC struct {
	FromDomain string `json:"from_domain"`
	OrgDomain  string `json:"org_domain"`
	// Found is the domain whose _dmarc record applies: FromDomain, or
	// OrgDomain when FromDomain has none (RFC 7489 §6.6.3).
	Found  string        `json:"found,omitempty"`
	Record string        `json:"record,omitempty"`
	Policy *dmarc.Record `json:"-"`
	// Effective is the policy for this From domain: p=, or sp= when the
	// record was found at the organizational domain of a subdomain
	// (RFC 7489 §6.3).
	Effective dmarc.Policy `json:"effective,omitempty"`
	Err       string       `json:"error,omitempty"`
	// Temporary: the lookup failed; a receiver may defer the mail
	// (RFC 7489 §6.6.3), and nothing is known about the policy.
	Temporary bool `json:"temporary,omitempty"`
}

// SPFAlignment and DKIMAlignment are the record's modes; relaxed when there
// is no record (the default, RFC 7489 §6.3).
func (d *DMARC) SPFAlignment() dmarc.AlignmentMode {
	if d.Policy == nil || d.Policy.SPFAlignment == "" {
		return dmarc.AlignmentRelaxed
	}
	return d.Policy.SPFAlignment
}

// DKIMAlignment: see SPFAlignment.
func (d *DMARC) DKIMAlignment() dmarc.AlignmentMode {
	if d.Policy == nil || d.Policy.DKIMAlignment == "" {
		return dmarc.AlignmentRelaxed
	}
	return d.Policy.DKIMAlignment
}

// LookupDMARC finds the policy for fromDomain as a receiver does (RFC 7489
// §6.6.3): the _dmarc record of the From domain, else that of its
// organizational domain; records not starting with v=DMARC1 are ignored, and
// more than one valid record means no policy applies.
func LookupDMARC(ctx context.Context, r *resolve.Resolver, fromDomain string) *DMARC {
	fromDomain = strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	out := &DMARC{FromDomain: fromDomain, OrgDomain: OrgDomain(fromDomain)}
	var notes []string
	for _, d := range []string{fromDomain, out.OrgDomain} {
		if d == out.OrgDomain && d == fromDomain && len(notes) > 0 {
			break
		}
		rec, txt, err, temp := dmarcRecord(ctx, r, d)
		if temp {
			out.Err, out.Temporary = err, true
			return out
		}
		if rec != nil {
			out.Found, out.Record, out.Policy = d, txt, rec
			out.Effective = rec.Policy
			if d != fromDomain && rec.SubdomainPolicy != "" {
				out.Effective = rec.SubdomainPolicy
			}
			return out
		}
		notes = append(notes, err)
	}
	out.Err = strings.Join(notes, "; ")
	return out
}

func dmarcRecord(ctx context.Context, r *resolve.Resolver, domain string) (rec *dmarc.Record, txt, why string, temporary bool) {
	name := "_dmarc." + domain
	txts, err := r.TXT(ctx, name)
	if err != nil {
		if resolve.IsNotFound(err) {
			return nil, "", "no DMARC record at " + name, false
		}
		return nil, "", err.Error(), true
	}
	var bad []string
	var found []string
	for _, t := range txts {
		if !strings.HasPrefix(strings.TrimSpace(t), "v=DMARC1") {
			continue
		}
		p, err := dmarc.Parse(t)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%q: %v", t, err))
			continue
		}
		found = append(found, t)
		rec, txt = p, t
	}
	switch {
	case len(found) > 1:
		return nil, "", fmt.Sprintf("%d DMARC records at %s: RFC 7489 §6.6.3 says none applies then", len(found), name), false
	case len(found) == 1:
		return rec, txt, "", false
	case len(bad) > 0:
		return nil, "", "the DMARC record at " + name + " does not parse: " + strings.Join(bad, "; "), false
	}
	return nil, "", "no DMARC record at " + name + " (no TXT record starts with v=DMARC1)", false
}

// OrgDomain is the organizational domain (RFC 7489 §3.2): the public suffix
// of the domain plus one label, from the public suffix list. A name that is
// itself a public suffix is its own organizational domain.
func OrgDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// Aligned reports whether an authenticated domain (the SPF-checked envelope
// domain, or a DKIM signature's d=) is aligned with the From domain: in
// strict mode the same name, in relaxed mode the same organizational domain
// (RFC 7489 §3.1.1, §3.1.2).
func Aligned(authDomain, fromDomain string, mode dmarc.AlignmentMode) bool {
	a := strings.ToLower(strings.TrimSuffix(authDomain, "."))
	f := strings.ToLower(strings.TrimSuffix(fromDomain, "."))
	if a == "" || f == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return a == f
	}
	return OrgDomain(a) == OrgDomain(f)
}
