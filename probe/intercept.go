package probe

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
)

// judgeInterception applies README "Design: interception" to the open port-25 MX
// endpoints. An ISP that intercepts port 25 answers connections to many MX
// hosts itself; but on the internet many honest MX hosts greet with, or
// present a certificate for, another name (shared hosting, a provider's
// default or self-signed certificate). So:
//
//   - a foreign certificate or greeting alone is a note (WeightNote);
//   - a trusted certificate for the MX name, an identity that resolves to
//     the address that answered (forward-confirmed), or the certificate of
//     such a confirmed server is the real server, perhaps shared
//     (WeightGenuine): never intercepted;
//   - the same unconfirmed identity answering for the MX hosts of two or
//     more unrelated domains at two or more addresses, a well-known
//     provider's MX answering as nobody of the provider's, or a port-25
//     handshake far faster than another port's of the same address
//     (timing.go) corroborates interception (WeightCorroborating).
//
// An endpoint is intercepted when it has a corroborating signal and no
// genuine one. Every signal stays in Endpoint.Signals.
func (p *Prober) judgeInterception(ctx context.Context, rep *Report) {
	var mx []*Endpoint
	domainOf := map[*Endpoint]string{}
	for _, d := range rep.Domains {
		for _, e := range d.Ends {
			if e.Role == RoleMX && e.Verdict == Open && e.Banner != nil {
				mx = append(mx, e)
				domainOf[e] = d.Name
			}
		}
	}
	if len(mx) == 0 {
		return
	}

	// What each endpoint says about itself, and the foreign names to
	// forward-confirm.
	foreign := map[*Endpoint][]string{}
	for _, e := range mx {
		if e.TLS != nil && e.TLS.Verified {
			e.signal(SignalVerified, WeightGenuine, fmt.Sprintf("the certificate verifies for %s: only its owner could present it", e.Host))
		}
		if foreignCert(e) {
			e.signal(SignalForeignCert, WeightNote, fmt.Sprintf("the STARTTLS certificate is for %s, not the MX %s (common for shared hosting and default certificates; alone it is not interception)",
				strings.Join(e.TLS.Names, ", "), e.Host))
			for _, n := range e.TLS.Names {
				if !strings.HasPrefix(n, "*.") {
					foreign[e] = append(foreign[e], strings.ToLower(n))
				}
			}
		}
		if foreignBanner(e) {
			e.signal(SignalForeignBanner, WeightNote, fmt.Sprintf("the greeting names %s, outside the MX's domain %s (common for hosted mail; alone it is not interception)",
				e.BannerHost, registered(e.Host)))
			foreign[e] = append(foreign[e], strings.ToLower(e.BannerHost))
		}
	}

	// Forward confirmation: does the foreign name resolve to the address
	// that answered? An interceptor answers at the target's address, which
	// its own name does not resolve to.
	var names []string
	for _, ns := range foreign {
		names = append(names, ns...)
	}
	addrs := p.lookupNames(ctx, names)
	confirmedCert := map[string]string{} // certificate fingerprint → where its owner is confirmed
	for _, e := range mx {
		for _, n := range foreign[e] {
			if slices.Contains(addrs[n], e.Addr) {
				e.signal(SignalConfirmed, WeightGenuine, fmt.Sprintf("%s resolves to %s, the address that answered: the real server, shared with other names", n, e.Addr))
				break
			}
		}
		// A certificate is confirmed where it answered for a name that
		// resolves there: the MX's own name (we connected to its address),
		// or a forward-confirmed foreign one.
		own := e.TLS != nil && len(e.TLS.Names) > 0 && !foreignCert(e) // a nameless certificate confirms nothing
		if e.TLS != nil && e.TLS.SHA256 != "" && (own || e.has(SignalConfirmed) || e.TLS.Verified) {
			if _, ok := confirmedCert[e.TLS.SHA256]; !ok {
				confirmedCert[e.TLS.SHA256] = e.Host + " at " + e.Addr
			}
		}
	}
	for _, e := range mx {
		if e.genuine() || e.TLS == nil || len(foreign[e]) == 0 {
			continue // nothing foreign to explain
		}
		if where, ok := confirmedCert[e.TLS.SHA256]; ok {
			e.signal(SignalSameCert, WeightGenuine, fmt.Sprintf("it presents the same certificate (sha256 %s…) as %s, where it is confirmed: one server under several names",
				e.TLS.SHA256[:16], where))
		}
	}

	var suspects []*Endpoint
	for _, e := range mx {
		if !e.genuine() && len(foreign[e]) > 0 {
			suspects = append(suspects, e)
		}
	}
	p.timeSuspects(ctx, suspects)
	corroborate(mx, domainOf, foreign)

	for _, e := range mx {
		var strong, notes []string
		for _, s := range e.Signals {
			switch s.Weight {
			case WeightCorroborating:
				strong = append(strong, s.Text)
			case WeightNote:
				notes = append(notes, s.Text)
			}
		}
		if len(strong) > 0 && !e.genuine() {
			e.Verdict = Intercepted
			e.Evidence = append(append(e.Evidence, strong...), notes...)
			continue
		}
		e.Notes = append(e.Notes, notes...)
		if len(notes) > 0 {
			for _, s := range e.Signals {
				if s.Weight == WeightGenuine {
					e.Notes = append(e.Notes, "not interception: "+s.Text)
				}
			}
		}
	}
}

// corroborate adds the corroborating signals to the unconfirmed endpoints
// with a foreign identity.
func corroborate(mx []*Endpoint, domainOf map[*Endpoint]string, foreign map[*Endpoint][]string) {
	// The same identity at several unrelated domains' MX hosts: an
	// interceptor answers every address with its one name and certificate.
	// Two addresses at least: one server on one address hosting several
	// domains under a name nobody confirms is odd, not an interceptor.
	groups := map[string][]*Endpoint{}
	for _, e := range mx {
		if e.genuine() || len(foreign[e]) == 0 {
			continue
		}
		if foreignBanner(e) {
			k := "greeting as " + e.BannerHost
			groups[k] = append(groups[k], e)
		}
		if foreignCert(e) && e.TLS.SHA256 != "" {
			k := fmt.Sprintf("certificate sha256 %s… for %s", e.TLS.SHA256[:16], strings.Join(e.TLS.Names, ", "))
			groups[k] = append(groups[k], e)
		}
	}
	said := map[*Endpoint]map[string]bool{}
	// Greetings first: they read better than fingerprints in the evidence.
	ids := slices.SortedFunc(maps.Keys(groups), func(a, b string) int {
		ga, gb := strings.HasPrefix(a, "greeting"), strings.HasPrefix(b, "greeting")
		if ga != gb {
			if ga {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, id := range ids {
		g := groups[id]
		doms, addrs := map[string]bool{}, map[string]bool{}
		var who []string
		for _, e := range g {
			doms[registered(domainOf[e])] = true
			addrs[e.Addr] = true
			who = append(who, fmt.Sprintf("%s: %s at %s", domainOf[e], e.Host, e.Addr))
		}
		if len(doms) < 2 || len(addrs) < 2 {
			continue
		}
		slices.Sort(who)
		who = slices.Compact(who)
		members := strings.Join(who, "; ")
		text := fmt.Sprintf("the same unconfirmed identity (%s) answers for the MX hosts of %d unrelated domains at %d addresses (%s)",
			id, len(doms), len(addrs), members)
		for _, e := range g {
			if said[e] == nil {
				said[e] = map[string]bool{}
			}
			if said[e][members] {
				continue // the greeting and the certificate tell the same story once
			}
			said[e][members] = true
			e.signal(SignalSharedIdentity, WeightCorroborating, text)
		}
	}

	// A provider whose MX identity is known, answering as someone else.
	for _, e := range mx {
		prov := providerOf(e.Host)
		if prov == nil || e.genuine() {
			continue
		}
		var ids []string
		if e.BannerHost != "" {
			ids = append(ids, e.BannerHost)
		}
		if e.TLS != nil {
			ids = append(ids, e.TLS.Names...)
		}
		if len(ids) == 0 || slices.ContainsFunc(ids, prov.owns) {
			continue
		}
		e.signal(SignalProviderMismatch, WeightCorroborating, fmt.Sprintf("%s is %s's MX host, whose servers answer as %s (%s), but this one answered as %s",
			e.Host, prov.Name, strings.Join(prov.IdentityDomains, ", "), prov.Sources[0], strings.Join(ids, ", ")))
	}
}

// lookupNames resolves names (deduplicated) to their addresses, all at
// once, within one timeout; a name that fails resolves to nothing.
func (p *Prober) lookupNames(ctx context.Context, names []string) map[string][]string {
	slices.Sort(names)
	names = slices.Compact(names)
	out := map[string][]string{}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		if _, err := netip.ParseAddr(n); err == nil || !strings.Contains(n, ".") {
			continue // an address literal or a bare label confirms nothing
		}
		wg.Go(func() {
			as, err := p.Resolver.Addrs(ctx, n)
			if err != nil {
				return
			}
			var ss []string
			for _, a := range as {
				ss = append(ss, addrString(a.Unmap()))
			}
			mu.Lock()
			out[n] = ss
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (e *Endpoint) signal(kind SignalKind, w Weight, text string) {
	e.Signals = append(e.Signals, Signal{Kind: kind, Weight: w, Text: text})
}

func (e *Endpoint) has(kind SignalKind) bool {
	return slices.ContainsFunc(e.Signals, func(s Signal) bool { return s.Kind == kind })
}

func (e *Endpoint) genuine() bool {
	return slices.ContainsFunc(e.Signals, func(s Signal) bool { return s.Weight == WeightGenuine })
}

// foreignCert: the endpoint presented a certificate that names other hosts
// than the MX.
func foreignCert(e *Endpoint) bool {
	return e.TLS != nil && len(e.TLS.Names) > 0 && !certRelated(e.TLS.Names, e.Host)
}

// foreignBanner: the greeting names a host outside the MX's registered
// domain.
func foreignBanner(e *Endpoint) bool {
	return e.BannerHost != "" && strings.Contains(e.BannerHost, ".") && registered(e.BannerHost) != registered(e.Host)
}

// registered is a name's registered domain (publicsuffix eTLD+1); for a name
// that has none (a bare suffix, an address) it is the name itself.
func registered(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host
}

// certRelated: a certificate belongs to the MX when one of its names covers
// the MX host (wildcards included) or shares its registered domain.
func certRelated(names []string, host string) bool {
	host = strings.ToLower(host)
	for _, n := range names {
		n = strings.ToLower(n)
		if n == host || registered(strings.TrimPrefix(n, "*.")) == registered(host) {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if _, after, ok := strings.Cut(host, "."); ok && after == rest {
				return true
			}
		}
	}
	return false
}
