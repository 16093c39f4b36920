package probe

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// This file reasons across endpoints by address family: networks often
// treat IPv4 and IPv6 differently (port 25 blocked over IPv4 by a NAT
// gateway's rules while IPv6 passes, or no IPv6 route at all), so an MX
// host's A and AAAA addresses are both probed and judged apart.

// FamilyPort25 is what port 25 did over one address family, across every
// MX endpoint of the report.
type FamilyPort25 struct {
	Family    string         `json:"family"` // "IPv4" or "IPv6"
	Endpoints int            `json:"endpoints"`
	Open      int            `json:"open"` // answered, not intercepted
	Verdicts  map[string]int `json:"verdicts"`
}

// family names an endpoint address's family.
func family(addr string) string {
	if a, err := netip.ParseAddr(addr); err == nil && !a.Unmap().Is4() {
		return "IPv6"
	}
	return "IPv4"
}

// blocked verdicts say the connection did not reach a server.
func blocked(v Verdict) bool {
	return v == Filtered || v == Refused || v == Unreachable
}

// port25ByFamily counts the MX endpoints' verdicts per family, IPv4 first.
func port25ByFamily(rep *Report) []FamilyPort25 {
	byFam := map[string]*FamilyPort25{}
	for _, d := range rep.Domains {
		for _, e := range d.Ends {
			if e.Role != RoleMX {
				continue
			}
			f := family(e.Addr)
			fp := byFam[f]
			if fp == nil {
				fp = &FamilyPort25{Family: f, Verdicts: map[string]int{}}
				byFam[f] = fp
			}
			fp.Endpoints++
			fp.Verdicts[string(e.Verdict)]++
			if e.Verdict == Open {
				fp.Open++
			}
		}
	}
	var out []FamilyPort25
	for _, f := range []string{"IPv4", "IPv6"} {
		if fp := byFam[f]; fp != nil {
			out = append(out, *fp)
		}
	}
	return out
}

// reachedFamilies: the families over which port 25 reached some MX server
// (an open endpoint that is not an interceptor).
func reachedFamilies(rep *Report) map[string]bool {
	out := map[string]bool{}
	for _, fp := range port25ByFamily(rep) {
		out[fp.Family] = fp.Open > 0
	}
	return out
}

// FarEnd reports whether port 25 reached other MX servers from here over
// an address family host was tried on: then host's own block (filtered,
// refused, unreachable) is at that host or its network, not this one's.
func (r *Report) FarEnd(host string) bool {
	return farEnd(r, host, reachedFamilies(r))
}

// farEnd: host was tried over a family over which port 25 reached other MX
// servers, and failed there too: that failure is the host's. A family over
// which port 25 reached nothing at all (often: no IPv6 here) says nothing
// about this host in particular.
func farEnd(rep *Report, host string, reached map[string]bool) bool {
	for _, d := range rep.Domains {
		for _, e := range d.Ends {
			if e.Host == host && e.Role == RoleMX && reached[family(e.Addr)] {
				return true
			}
		}
	}
	return false
}

// familySummary says so when port 25 behaves differently over IPv4 and
// IPv6: it reaches MX servers over one family and none over the other.
func familySummary(rep *Report) string {
	fams := port25ByFamily(rep)
	if len(fams) != 2 || (fams[0].Open > 0) == (fams[1].Open > 0) {
		return ""
	}
	good, bad := fams[0], fams[1]
	if bad.Open > 0 {
		good, bad = bad, good
	}
	worst := mostCommon(bad.Verdicts)
	s := fmt.Sprintf("Port 25 is %s over %s but open over %s (%s: %d of %d MX endpoints open; %s: %s)",
		worst, bad.Family, good.Family, good.Family, good.Open, good.Endpoints, bad.Family, verdictList(bad.Verdicts))
	if blocked(Verdict(worst)) {
		s += fmt.Sprintf(". The block is on the way over %s only (this network, or its ISP); direct mail can go over %s", bad.Family, good.Family)
		if good.Family == "IPv6" {
			s += ", where receivers are strict: Gmail requires a reverse name (PTR) and SPF or DKIM from IPv6 senders"
		}
	}
	return s + "."
}

func mostCommon(m map[string]int) string {
	best, n := "", -1
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > n {
			best, n = k, m[k]
		}
	}
	return best
}

func verdictList(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
