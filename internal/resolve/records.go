package resolve

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ErrServiceUnavailable is the cause (inside an *Error of Kind NoData) when a
// domain publishes a single SRV record with target ".": the service is
// "decidedly not available at this domain" (RFC 2782, definition of Target;
// RFC 6186 uses SRV, with that rule, for mail submission). Test for it with
// errors.Is.
var ErrServiceUnavailable = errors.New("service decidedly not available (SRV target \".\")")

// maxCNAMEChain bounds how far we follow aliases inside one answer, so a
// looping or absurd chain cannot keep us busy. Recursive servers give up on
// much shorter chains than this anyway.
const maxCNAMEChain = 16

// lookup runs Query and turns NXDOMAIN into an *Error of Kind NXDomain. It
// returns the records of qtype that answer the question, following a CNAME
// chain inside the answer section (RFC 1034 §3.6.2: the answer to an alias
// carries the CNAME and then the records of its target), and the canonical
// name at the end of that chain. No records and no error means NODATA; the
// caller decides whether that is an error.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*Reply, []dns.RR, string, error) {
	reply, err := r.Query(ctx, name, qtype)
	if err != nil {
		return nil, nil, "", err
	}
	qname := dns.Fqdn(name)
	if reply.Msg.Rcode == dns.RcodeNameError {
		return reply, nil, qname, &Error{
			Name: displayName(qname), Type: typeName(qtype), Kind: NXDomain,
			Server: reply.Server, Rcode: dns.RcodeNameError,
		}
	}
	rrs, canonical := answerRecords(reply.Msg, qname, qtype)
	return reply, rrs, canonical, nil
}

func answerRecords(msg *dns.Msg, qname string, qtype uint16) ([]dns.RR, string) {
	name := qname
	if qtype != dns.TypeCNAME {
		for range maxCNAMEChain {
			next := ""
			for _, rr := range msg.Answer {
				if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
					next = c.Target
					break
				}
			}
			if next == "" {
				break
			}
			name = next
		}
	}
	var rrs []dns.RR
	for _, rr := range msg.Answer {
		h := rr.Header()
		// Only records owned by the end of the chain answer the question;
		// anything else in the section is not ours to trust.
		if h.Rrtype == qtype && h.Class == dns.ClassINET && strings.EqualFold(h.Name, name) {
			rrs = append(rrs, rr)
		}
	}
	return rrs, name
}

func noData(name, qtype string, reply *Reply, why string) *Error {
	e := &Error{Name: name, Type: qtype, Kind: NoData, Err: errors.New(why)}
	if reply != nil {
		e.Server = reply.Server
	}
	return e
}

// PTR returns the names an address points back to (reverse DNS). CNAMEs in
// the answer are followed, as used by classless in-addr.arpa delegation
// (RFC 2317). No PTR records is an *Error of Kind NXDomain or NoData.
func (r *Resolver) PTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	if !addr.IsValid() {
		return nil, &Error{Name: "invalid address", Type: "PTR", Kind: BadName, Err: errors.New("invalid IP address")}
	}
	// An IPv4-mapped IPv6 address is an IPv4 address for reverse DNS; a
	// zone is local to this machine and means nothing in DNS.
	a := addr.Unmap().WithZone("")
	arpa, err := dns.ReverseAddr(a.String())
	if err != nil {
		return nil, &Error{Name: a.String(), Type: "PTR", Kind: BadName, Err: err}
	}
	reply, rrs, _, err := r.lookup(ctx, arpa, dns.TypePTR)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Kind == NXDomain {
			e.Name = a.String() // people recognise the address, not the arpa name
		}
		return nil, err
	}
	if len(rrs) == 0 {
		return nil, noData(a.String(), "PTR", reply, "no PTR records")
	}
	names := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		names = append(names, strings.ToLower(displayName(rr.(*dns.PTR).Ptr)))
	}
	return names, nil
}

// TXT returns the TXT records of name, each record's character-strings joined
// with nothing between them, as SPF (RFC 7208 §3.3) and DKIM (RFC 6376
// §3.6.2.2) require. No TXT records is an *Error of Kind NoData.
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	reply, rrs, _, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	if len(rrs) == 0 {
		return nil, noData(displayName(dns.Fqdn(name)), "TXT", reply, "no TXT records")
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// SRV is one service location, in the order it should be tried.
type SRV struct {
	Target   string // host name, lowercase, without the trailing dot
	Port     uint16
	Priority uint16
	Weight   uint16
}

// SRV looks up _service._proto.domain (service and proto without the
// leading underscore, e.g. "submission", "tcp") and returns the records in
// RFC 2782 order: lowest priority first, and within one priority a weighted
// random order. A lone record with target "." yields an *Error of Kind
// NoData wrapping ErrServiceUnavailable. No records is an *Error of Kind
// NXDomain or NoData, so IsNotFound covers every "no service here".
func (r *Resolver) SRV(ctx context.Context, service, proto, domain string) ([]SRV, error) {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return nil, &Error{Name: domain, Type: "SRV", Kind: BadName, Err: err}
	}
	service, proto = strings.TrimPrefix(service, "_"), strings.TrimPrefix(proto, "_")
	name := "_" + service + "._" + proto + "." + d
	for _, label := range []string{service, proto} {
		if label == "" || strings.ContainsAny(label, ". \t") {
			return nil, &Error{Name: name, Type: "SRV", Kind: BadName, Err: fmt.Errorf("bad service or protocol label %q", label)}
		}
	}
	reply, rrs, _, err := r.lookup(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	if len(rrs) == 0 {
		return nil, noData(name, "SRV", reply, "no SRV records")
	}
	var out []SRV
	for _, rr := range rrs {
		s := rr.(*dns.SRV)
		// A "." among real targets is a publishing mistake; it names no
		// host, so it is dropped.
		if s.Target == "." {
			continue
		}
		out = append(out, SRV{Target: strings.ToLower(displayName(s.Target)), Port: s.Port, Priority: s.Priority, Weight: s.Weight})
	}
	if len(out) == 0 {
		e := noData(name, "SRV", reply, "")
		e.Err = ErrServiceUnavailable
		return nil, e
	}
	r.orderSRV(out)
	return out, nil
}

// orderSRV sorts by priority and then, within each priority, applies the
// RFC 2782 weighted selection ("Usage rules"): repeatedly pick a record with
// probability proportional to its weight. Zero-weight records go last, in
// a stable order; RFC 2782 gives them "a very small chance", which makes no
// difference in practice.
func (r *Resolver) orderSRV(srvs []SRV) {
	// A deterministic starting order, so a seeded Rand gives a reproducible
	// result whatever order the server listed the records in.
	slices.SortFunc(srvs, func(a, b SRV) int {
		if a.Priority != b.Priority {
			return int(a.Priority) - int(b.Priority)
		}
		if a.Weight != b.Weight {
			return int(b.Weight) - int(a.Weight)
		}
		return strings.Compare(a.Target, b.Target)
	})
	for start := 0; start < len(srvs); {
		end := start
		for end < len(srvs) && srvs[end].Priority == srvs[start].Priority {
			end++
		}
		group := srvs[start:end]
		sum := 0
		for _, s := range group {
			sum += int(s.Weight)
		}
		for sum > 0 && len(group) > 1 {
			n, run := r.intN(sum), 0
			for i := range group {
				run += int(group[i].Weight)
				if run > n {
					group[0], group[i] = group[i], group[0]
					break
				}
			}
			sum -= int(group[0].Weight)
			group = group[1:]
		}
		start = end
	}
}
