package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// MaxMXHosts caps the hosts MX returns. RFC 5321 §5.1 asks a client to try
// at least two addresses and leaves the upper limit to it; a domain with
// more than ten MX hosts is either huge (and any of the first ten will do)
// or misconfigured, and each host costs two address lookups and a
// connection attempt.
const MaxMXHosts = 10

// addrParallelism bounds the MX hosts whose addresses are looked up at once
// (each lookup is an A and an AAAA query in parallel), so a ten-host domain
// does not throw twenty packets at a small home router at the same instant.
const addrParallelism = 4

// MX is one mail exchanger with its addresses.
type MX struct {
	Host    string       // lowercase, without the trailing dot
	Pref    uint16       // lower is preferred
	Addrs   []netip.Addr // IPv4 first, then IPv6, each in ascending order
	AddrErr error        // why Addrs is empty (an *Error); nil when there are addresses
}

// MXResult is where mail for a domain goes, with the evidence.
type MXResult struct {
	Domain string // normalized (ASCII, lowercase, no trailing dot)
	// Hosts in the order to try them: preference order, equal preferences
	// shuffled (RFC 5321 §5.1), at most MaxMXHosts.
	Hosts []MX
	// Implicit: no MX records, so the domain itself is the host, with
	// preference 0 (RFC 5321 §5.1 implicit MX).
	Implicit bool
	// Null: the domain publishes a null MX (RFC 7505): it accepts no mail.
	// Hosts is empty.
	Null bool
	// Notes are oddities found on the way (records skipped, hosts cut),
	// in words for the probe report.
	Notes []string
	Reply *Reply // the MX reply, for evidence
}

// MX finds where mail for domain is delivered, following RFC 5321 §5.1:
//
//   - NXDOMAIN: an *Error of Kind NXDomain (permanent).
//   - No MX records: the implicit MX, the domain's own addresses. If it has
//     none, an *Error of Kind NoData ("domain has no MX and no address").
//   - A null MX (RFC 7505): Null set, no Hosts, no error.
//   - Otherwise the hosts in order, each with its A and AAAA addresses
//     looked up in parallel. A host whose addresses cannot be found has
//     AddrErr set; that is not an error of MX: the caller tries the next host.
//
// Transport failures are *Error values with Temporary() true.
func (r *Resolver) MX(ctx context.Context, domain string) (*MXResult, error) {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return nil, &Error{Name: domain, Type: "MX", Kind: BadName, Err: err}
	}
	reply, rrs, canonical, err := r.lookup(ctx, d, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	res := &MXResult{Domain: d, Reply: reply}
	if !strings.EqualFold(canonical, dns.Fqdn(d)) {
		res.Notes = append(res.Notes, fmt.Sprintf("%s is an alias (CNAME) for %s", d, displayName(canonical)))
	}

	if len(rrs) == 0 {
		// RFC 5321 §5.1: "If an empty list of MXs is returned, the address
		// is treated as if it was associated with an implicit MX RR, with
		// a preference of 0, pointing to that host." After a CNAME, "the
		// resulting name is processed as if it were the initial name", so
		// the host is the canonical name.
		host := strings.ToLower(displayName(canonical))
		addrs, err := r.addrs(ctx, host)
		if err != nil {
			if IsNotFound(err) {
				return nil, noData(d, "MX", reply, "domain has no MX and no address (A/AAAA)")
			}
			return nil, err
		}
		res.Implicit = true
		res.Hosts = []MX{{Host: host, Pref: 0, Addrs: addrs}}
		return res, nil
	}

	hosts, nulls, notes := sortMX(rrs)
	res.Notes = append(res.Notes, notes...)
	switch {
	case len(hosts) == 0 && nulls > 0:
		// RFC 7505 §3: a null MX is a single MX with preference 0 and an
		// empty exchange ("."). A lone "." with another preference, or
		// several of them, still names no host at all, so the meaning is
		// the same.
		res.Null = true
		return res, nil
	case nulls > 0:
		// RFC 7505 §3: "A domain that advertises a null MX MUST NOT
		// advertise any other MX RR." It gives no rule for a client that
		// meets both. The "." names no host, so, like any unusable MX, it
		// is skipped and the real hosts are used: bouncing mail for a
		// domain that lists working servers would be the worse mistake.
		res.Notes = append(res.Notes, "null MX (\".\") published together with other MX records (RFC 7505 §3 forbids this); ignored it")
	case len(hosts) == 0:
		// RFC 5321 §5.1: "If MX records are present, but none of them are
		// usable, ... this situation MUST be reported as an error."
		return nil, noData(d, "MX", reply, "MX records present but none usable: "+strings.Join(res.Notes, "; "))
	}

	r.shuffleEqualPref(hosts)
	if len(hosts) > MaxMXHosts {
		res.Notes = append(res.Notes, fmt.Sprintf("%d MX hosts; kept the first %d", len(hosts), MaxMXHosts))
		hosts = hosts[:MaxMXHosts]
	}
	res.Hosts = hosts

	sem := make(chan struct{}, addrParallelism)
	var wg sync.WaitGroup
	for i := range res.Hosts {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res.Hosts[i].AddrErr = &Error{Name: res.Hosts[i].Host, Type: "A/AAAA", Kind: classify(ctx, nil, ctx.Err()), Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			res.Hosts[i].Addrs, res.Hosts[i].AddrErr = r.addrs(ctx, res.Hosts[i].Host)
		})
	}
	wg.Wait()
	return res, nil
}

// sortMX turns MX records into hosts sorted by preference, then name (a
// fixed order, so that a seeded Rand shuffles reproducibly whatever order the
// server sent). It counts "." exchanges and skips records that name no
// usable host, saying why in notes.
func sortMX(rrs []dns.RR) (hosts []MX, nulls int, notes []string) {
	seen := make(map[string]int) // host → index in hosts
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		if mx.Mx == "." {
			nulls++
			if mx.Preference != 0 {
				notes = append(notes, fmt.Sprintf("null MX (\".\") with preference %d instead of 0 (RFC 7505 §3)", mx.Preference))
			}
			continue
		}
		host := strings.ToLower(displayName(mx.Mx))
		// RFC 5321 §5.1: the MX data "MUST contain a domain name". An
		// address written as a name would be looked up as one and fail in
		// a confusing way, so say what it is instead.
		if _, err := netip.ParseAddr(host); err == nil {
			notes = append(notes, fmt.Sprintf("MX %d %s is an IP address, not a host name (RFC 5321 §5.1); skipped", mx.Preference, host))
			continue
		}
		if i, ok := seen[host]; ok {
			// Listed twice: trying it twice gains nothing; keep the
			// better preference.
			hosts[i].Pref = min(hosts[i].Pref, mx.Preference)
			continue
		}
		seen[host] = len(hosts)
		hosts = append(hosts, MX{Host: host, Pref: mx.Preference})
	}
	slices.SortFunc(hosts, func(a, b MX) int {
		return cmp.Or(cmp.Compare(a.Pref, b.Pref), strings.Compare(a.Host, b.Host))
	})
	return hosts, nulls, notes
}

// shuffleEqualPref randomizes each run of equal preference in sorted hosts.
// RFC 5321 §5.1: with several hosts of the same preference and no clear
// reason to favour one, "the sender-SMTP MUST randomize them to spread the
// load across multiple mail exchangers".
func (r *Resolver) shuffleEqualPref(hosts []MX) {
	for start := 0; start < len(hosts); {
		end := start + 1
		for end < len(hosts) && hosts[end].Pref == hosts[start].Pref {
			end++
		}
		run := hosts[start:end]
		// Fisher–Yates, from the Resolver's source so tests can seed it.
		for i := len(run) - 1; i > 0; i-- {
			j := r.intN(i + 1)
			run[i], run[j] = run[j], run[i]
		}
		start = end
	}
}

// Addrs returns the IPv4 and IPv6 addresses of host (A and AAAA, asked in
// parallel), IPv4 first. NXDOMAIN is an *Error of Kind NXDomain; a name with
// neither record type is Kind NoData. When one family fails and the other
// has addresses, the addresses are returned and the failure is dropped:
// they are enough to connect.
func (r *Resolver) Addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	h, err := NormalizeDomain(host)
	if err != nil {
		return nil, &Error{Name: host, Type: "A/AAAA", Kind: BadName, Err: err}
	}
	return r.addrs(ctx, h)
}

// addrs is Addrs for names that come from DNS (MX targets), which are used
// as published.
func (r *Resolver) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	type result struct {
		reply *Reply
		rrs   []dns.RR
		err   error
	}
	var res [2]result
	var wg sync.WaitGroup
	for i, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Go(func() {
			reply, rrs, _, err := r.lookup(ctx, host, qt)
			res[i] = result{reply, rrs, err}
		})
	}
	wg.Wait()

	var addrs []netip.Addr
	for _, x := range res {
		for _, rr := range x.rrs {
			var ip []byte
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A.To4()
			case *dns.AAAA:
				ip = rr.AAAA.To16()
			}
			if a, ok := netip.AddrFromSlice(ip); ok && !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) > 0 {
		// Compare puts IPv4 before IPv6: IPv4 is the family more likely
		// to have a working route on the networks this tool diagnoses.
		slices.SortFunc(addrs, netip.Addr.Compare)
		return addrs, nil
	}
	// No address: a failure to find out beats "does not exist", so the
	// caller retries rather than gives up; NXDOMAIN beats NODATA.
	var nx *Error
	for _, x := range res {
		var e *Error
		if x.err == nil {
			continue
		}
		if !errors.As(x.err, &e) || e.Temporary() {
			return nil, x.err
		}
		if e.Kind == NXDomain {
			nx = e
		}
	}
	if nx != nil {
		nx.Type = "A/AAAA"
		return nil, nx
	}
	return nil, noData(displayName(dns.Fqdn(host)), "A/AAAA", res[0].reply, "host has no address (A or AAAA)")
}
