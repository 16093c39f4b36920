package probe

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ResolverDoubt says that the DNS server answered falsely about names that
// certainly exist (the built-in targets): it is lying or filtering, as
// captive portals, filtering DNS and some sandboxes do. Its other answers
// are not to be trusted either, so a missing domain is not a spelling
// mistake.
type ResolverDoubt struct {
	Resolver []string `json:"resolver"`
	// Seen is the false answer: "nxdomain" (the names do not exist) or
	// "private" (they point to private, loopback or unspecified addresses).
	Seen string `json:"seen"`
	// Names are the names that certainly exist and were answered falsely;
	// Addrs, for "private", what they were said to be.
	Names []string `json:"names"`
	Addrs []string `json:"addrs,omitempty"`
	Text  string   `json:"text"`
}

// KindLyingResolver is the DNSError.Kind of a domain whose answer came from
// a resolver that answers falsely (Report.ResolverLies); DNSError.Seen keeps
// what it answered.
const KindLyingResolver = "lying_resolver"

// checkResolver compares the resolver's answers with what is certain: the
// built-in targets exist and have public MX addresses. When they are
// among the domains asked about, their answers are the test; otherwise, if
// some domain came back NXDOMAIN, one built-in name is asked (a single NS
// query) to tell a misspelt domain from a resolver that denies everything.
// Endpoints at the false private addresses are dropped: probing them would
// report on whatever listens there (often this machine), not on the target.
func (p *Prober) checkResolver(ctx context.Context, rep *Report) {
	var lied, addrs []string
	seen := ""
	nx := func(d *Domain) bool {
		return d.DNSError != nil && (d.DNSError.Kind == "nxdomain" || d.DNSError.Kind == "nodata")
	}
	asked := false
	for _, d := range rep.Domains {
		if !slices.Contains(Builtin, d.Name) {
			continue
		}
		asked = true
		switch {
		case nx(d):
			lied, seen = append(lied, d.Name), "nxdomain"
		case d.DNSError == nil && len(d.Ends) > 0 && allPrivate(d):
			lied = append(lied, d.Name)
			if seen == "" {
				seen = "private"
			}
			for _, h := range d.MX {
				addrs = append(addrs, h.Addrs...)
			}
		}
	}
	if !asked && slices.ContainsFunc(rep.Domains, nx) {
		cctx, cancel := context.WithTimeout(ctx, p.Timeout)
		reply, err := p.Resolver.Query(cctx, Builtin[0], dns.TypeNS)
		cancel()
		if err == nil && reply.Msg != nil && reply.Msg.Rcode == dns.RcodeNameError {
			lied, seen = []string{Builtin[0]}, "nxdomain"
		}
	}
	if len(lied) == 0 {
		return
	}
	slices.Sort(addrs)
	res := strings.Join(rep.Resolver, ", ")
	doubt := &ResolverDoubt{Resolver: rep.Resolver, Seen: seen, Names: lied, Addrs: slices.Compact(addrs)}
	what := fmt.Sprintf("it answers that %s do not exist (NXDOMAIN), and they certainly do", strings.Join(lied, ", "))
	if len(lied) == 1 {
		what = fmt.Sprintf("it answers that %s does not exist (NXDOMAIN), and it certainly does", lied[0])
	}
	if seen == "private" {
		what = fmt.Sprintf("it points %s to private or local addresses (%s), which they never have", strings.Join(lied, ", "), strings.Join(doubt.Addrs, ", "))
	}
	doubt.Text = fmt.Sprintf("The DNS server %s is lying or filtering: %s. Captive portals (Wi-Fi that wants a login first), filtering DNS and some sandboxes do this, and its other answers cannot be trusted either. Log in to the network if it has a portal, or name a DNS server that answers truthfully with --resolver IP (for example your router's address).",
		res, what)
	rep.ResolverLies = doubt

	for _, d := range rep.Domains {
		builtin := slices.Contains(lied, d.Name)
		if !nx(d) && !builtin {
			continue
		}
		was := "private"
		if d.DNSError != nil {
			was = d.DNSError.Kind
		}
		msg := fmt.Sprintf("the DNS server %s says %s does not exist (%s), but that server also denies %s, which certainly exists: it is lying or filtering, so this answer proves nothing; ask another with --resolver IP",
			res, d.Name, strings.ToUpper(was), strings.Join(lied, ", "))
		switch {
		case builtin && was == "private":
			msg = fmt.Sprintf("the DNS server %s points %s's mail servers to private or local addresses, which they never have: it is lying or filtering; ask another with --resolver IP", res, d.Name)
			d.Ends = nil // not probed: see above
		case builtin:
			msg = fmt.Sprintf("the DNS server %s says %s does not exist (%s), and it certainly does: that server is lying or filtering; ask another with --resolver IP", res, d.Name, strings.ToUpper(was))
		}
		d.DNSError = &DNSError{Kind: KindLyingResolver, Seen: was, Message: msg}
	}
}

// allPrivate: every MX address of d is one no large provider's MX can have.
func allPrivate(d *Domain) bool {
	n := 0
	for _, h := range d.MX {
		for _, s := range h.Addrs {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			n++
			if !notPublic(a) {
				return false
			}
		}
	}
	return n > 0
}

// notPublic: loopback, unspecified (0.0.0.0, what many filtering DNS
// answer), private (RFC 1918, RFC 4193), link-local, CGNAT (RFC 6598).
func notPublic(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsUnspecified() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}
