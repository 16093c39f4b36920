package probe

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// markInterception applies design.md's evidence rules to the port-25 MX
// endpoints. An ISP that intercepts port 25 answers every connection itself,
// so, strongest first:
//  1. the STARTTLS certificate names a host unrelated to the MX → intercepted;
//  2. two or more unrelated MX hosts, at different addresses, answer with the
//     same banner host, itself unrelated to all of them → intercepted;
//  3. the banner host's registered domain differs from the MX's → a note
//     only: many honest MXs greet with their provider's name.
func markInterception(rep *Report) {
	var mx []*Endpoint
	for _, e := range rep.Endpoints() {
		if e.Role == RoleMX && e.Verdict == Open && e.Banner != nil {
			mx = append(mx, e)
		}
	}
	for _, e := range mx {
		if e.TLS != nil && len(e.TLS.Names) > 0 && !certRelated(e.TLS.Names, e.Host) {
			e.Evidence = append(e.Evidence, fmt.Sprintf("the STARTTLS certificate is for %s, a host unrelated to the MX %s",
				strings.Join(e.TLS.Names, ", "), e.Host))
		}
	}
	groups := map[string][]*Endpoint{}
	for _, e := range mx {
		if e.BannerHost != "" {
			groups[e.BannerHost] = append(groups[e.BannerHost], e)
		}
	}
	for banner, g := range groups {
		domains, addrs := map[string]bool{}, map[string]bool{}
		bannerOwn := false
		for _, e := range g {
			domains[registered(e.Host)] = true
			addrs[e.Addr] = true
			if registered(e.Host) == registered(banner) {
				bannerOwn = true
			}
		}
		// One server listening on several addresses for several customers'
		// MX names greets with its own name, which is one of them; an
		// interceptor's name is none of them.
		if len(domains) < 2 || len(addrs) < 2 || bannerOwn {
			continue
		}
		var hosts []string
		for _, e := range g {
			hosts = append(hosts, e.Host)
		}
		slices.Sort(hosts)
		hosts = slices.Compact(hosts)
		for _, e := range g {
			e.Evidence = append(e.Evidence, fmt.Sprintf("%d unrelated MX hosts (%s) all greet as %s",
				len(hosts), strings.Join(hosts, ", "), banner))
		}
	}
	for _, e := range mx {
		if len(e.Evidence) > 0 {
			e.Verdict = Intercepted
			continue
		}
		if e.BannerHost != "" && registered(e.BannerHost) != registered(e.Host) {
			e.Notes = append(e.Notes, fmt.Sprintf("the greeting names %s, outside the MX's domain %s (common for hosted mail; alone it is not interception)",
				e.BannerHost, registered(e.Host)))
		}
	}
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
