package probe

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Rank orders endpoints from the most useful (0) down, so that a host with
// several addresses is judged by its best one (an IPv6 address without a
// route must not hide an open IPv4 one): open and usable, intercepted, open
// but not usable (a refusing greeting), refused, unreachable, filtered,
// failed. Intercepted ranks above a refusing greeting: it tells more about
// the network.
func Rank(e *Endpoint) int {
	switch {
	case e.Verdict == Open && e.Usable():
		return 0
	case e.Verdict == Intercepted:
		return 1
	case e.Verdict == Open:
		return 2
	case e.Verdict == Refused:
		return 3
	case e.Verdict == Unreachable:
		return 4
	case e.Verdict == Filtered:
		return 5
	}
	return 6
}

// meaning is what each port-25 verdict says about this network, in words.
var meaning = map[Verdict]string{
	Filtered:    "your network drops outbound SMTP (most ISPs do this to stop spam)",
	Refused:     "something rejects the connections (a firewall, or your ISP)",
	Unreachable: "the network refuses to route to them (ICMP prohibited or no route)",
	Intercepted: "your ISP answers port 25 itself instead of the recipients' servers",
	Failed:      "the connections failed",
}

// farMeaning is what a blocked port-25 verdict says when port 25 reached
// other MX hosts from here over the same address families.
var farMeaning = map[Verdict]string{
	Filtered:    "port 25 reaches other MX hosts from here, so those hosts or their networks drop the connections, not yours",
	Refused:     "port 25 reaches other MX hosts from here, so those hosts turn the connections down (nothing listens, or their firewall)",
	Unreachable: "port 25 reaches other MX hosts from here, so the way to those hosts is broken, not your outbound port 25",
}

// CanSend reports whether some endpoint could take a message: a usable MX
// on port 25 (not intercepted) or a usable relay port.
func (r *Report) CanSend() bool {
	for _, e := range r.Endpoints() {
		if e.Usable() {
			return true
		}
	}
	return false
}

func summarize(rep *Report) []string {
	var out []string
	if rep.Offline {
		return []string{"No DNS server answered and no server could be reached: this machine seems to be offline, or DNS is blocked. Check the network, or name a resolver with --resolver."}
	}
	if rep.ResolverLies != nil {
		out = append(out, rep.ResolverLies.Text)
	}
	for _, d := range rep.Domains {
		switch {
		case d.DNSError != nil && d.DNSError.Kind == KindLyingResolver:
			if !slices.Contains(rep.ResolverLies.Names, d.Name) {
				out = append(out, fmt.Sprintf("%s: the same DNS server says it does not exist, which proves nothing (see above).", d.Name))
			}
		case d.DNSError != nil:
			out = append(out, domainProblem(d))
		case d.NullMX:
			out = append(out, fmt.Sprintf("%s accepts no mail: it publishes a null MX (RFC 7505).", d.Name))
		case d.Implicit:
			out = append(out, fmt.Sprintf("%s has no MX record; mail goes to the domain's own address (implicit MX).", d.Name))
		}
	}
	if id := rep.Identity; id != nil {
		out = append(out, identitySummary(id))
		if id.IPv6 != nil {
			out = append(out, identity6Summary(id.IPv6))
		}
	}
	if s := mxSummary(rep); s != "" {
		out = append(out, s)
	}
	if s := familySummary(rep); s != "" {
		out = append(out, s)
	}
	for _, e := range rep.Endpoints() {
		if e.Path != nil && (e.Path.Where == "local" || e.Path.Where == "hop") {
			out = append(out, fmt.Sprintf("Port 25 to %s (%s): %s.", e.Host, e.Addr, e.Path.Text))
		}
	}
	for _, r := range rep.Relays {
		out = append(out, relaySummary(r))
	}
	if !rep.CanSend() {
		out = append(out, "Nothing reachable from here can take a message.")
	}
	return out
}

func domainProblem(d *Domain) string {
	switch d.DNSError.Kind {
	case "nxdomain":
		return fmt.Sprintf("%s does not exist (NXDOMAIN): check the spelling.", d.Name)
	case "nodata":
		return fmt.Sprintf("%s has neither an MX record nor an address: it cannot receive mail.", d.Name)
	case "servfail":
		return fmt.Sprintf("The DNS server failed to look up %s (SERVFAIL): its DNS is broken or unreachable right now; try later.", d.Name)
	case "timeout", "network":
		return fmt.Sprintf("No DNS answer for %s: %s.", d.Name, d.DNSError.Message)
	}
	return fmt.Sprintf("DNS look-up of %s failed: %s.", d.Name, d.DNSError.Message)
}

// BestPerMXHost returns the MX hosts probed, in report order, each with its
// best endpoint by Rank.
func (r *Report) BestPerMXHost() (hosts []string, best map[string]*Endpoint) {
	best = map[string]*Endpoint{}
	for _, d := range r.Domains {
		for _, e := range d.Ends {
			b, ok := best[e.Host]
			if !ok {
				hosts = append(hosts, e.Host)
			}
			if !ok || Rank(e) < Rank(b) {
				best[e.Host] = e
			}
		}
	}
	return hosts, best
}

func mxSummary(rep *Report) string {
	hosts, best := rep.BestPerMXHost()
	if len(hosts) == 0 {
		return ""
	}
	reached := reachedFamilies(rep)
	// A blocked host counts "far" when port 25 reached another MX host over
	// a family this one was tried on: the same network let port 25 through,
	// so the block is at that host or its network, not here (farEnd).
	type key struct {
		v   Verdict
		far bool
	}
	count := map[key]int{}
	far := map[Verdict][]string{}
	usable, verified := 0, 0
	var banners []string
	for _, h := range hosts {
		e := best[h]
		k := key{v: e.Verdict}
		if blocked(e.Verdict) && farEnd(rep, h, reached) {
			k.far = true
			far[e.Verdict] = append(far[e.Verdict], h)
		}
		count[k]++
		if e.Usable() {
			usable++
			if e.TLS != nil && e.TLS.Verified {
				verified++
			}
		}
		if e.Verdict == Intercepted && e.BannerHost != "" {
			banners = append(banners, e.BannerHost)
		}
	}
	n := len(hosts)
	var parts []string
	if usable > 0 {
		s := fmt.Sprintf("Port 25 reaches %d of %d MX hosts directly", usable, n)
		if verified > 0 {
			s += fmt.Sprintf(" (STARTTLS with a verified certificate on %d)", verified)
		}
		parts = append(parts, s)
	}
	if c := count[key{v: Open}] - usable; c > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d MX hosts accept the connection but do not greet properly", c, n))
	}
	for _, v := range []Verdict{Intercepted, Filtered, Refused, Unreachable, Failed} {
		if c := count[key{v: v}]; c > 0 {
			s := fmt.Sprintf("port 25 is %s on %d of %d MX hosts: %s", v, c, n, meaning[v])
			if v == Failed {
				s = fmt.Sprintf("port 25 connections failed on %d of %d MX hosts", c, n)
			}
			if v == Intercepted {
				slices.Sort(banners)
				s += " (they all answer as " + strings.Join(slices.Compact(banners), ", ") + ")"
			}
			parts = append(parts, s)
		}
		if c := count[key{v: v, far: true}]; c > 0 {
			parts = append(parts, fmt.Sprintf("port 25 is %s on %d of %d MX hosts (%s): %s", v, c, n, strings.Join(far[v], ", "), farMeaning[v]))
		}
	}
	s := strings.Join(parts, "; ") + "."
	return strings.ToUpper(s[:1]) + s[1:]
}

func relaySummary(r *Relay) string {
	if r.Error != nil {
		return fmt.Sprintf("Relay %s: %s.", r.Host, r.Error.Message)
	}
	var ok, closed []string
	auth := map[string]bool{}
	var plainAuth []string
	for _, e := range r.Ends {
		label := ":" + strconv.Itoa(e.Port)
		if e.Usable() {
			mode := "STARTTLS"
			switch {
			case e.TLSMode == "implicit":
				mode = "implicit TLS"
			case e.TLS == nil:
				mode = "no TLS"
			}
			ok = append(ok, label+" ("+mode+")")
			for _, m := range e.AuthTLS {
				auth[m] = true
			}
			if len(e.AuthPlain) > 0 {
				plainAuth = append(plainAuth, label)
			}
		} else {
			what := string(e.Verdict)
			if e.Verdict == Open {
				what = e.Problem
			}
			closed = append(closed, label+" "+what)
		}
	}
	s := "Relay " + r.Host
	if r.Source != "--relay" {
		s += " (found by " + map[string]string{"srv": "its SRV records", "guess": "guessing its name"}[r.Source] + ")"
	}
	if len(ok) > 0 {
		s += ": " + strings.Join(ok, " and ") + " accept connections"
		if len(auth) > 0 {
			var ms []string
			for m := range auth {
				ms = append(ms, m)
			}
			slices.Sort(ms)
			s += "; AUTH " + strings.Join(ms, " ") + " after TLS"
		}
	} else {
		s += ": no port accepts mail"
	}
	if len(closed) > 0 {
		s += "; " + strings.Join(closed, ", ")
	}
	if len(plainAuth) > 0 {
		s += "; AUTH is offered before TLS on " + strings.Join(plainAuth, ", ") + " (a password there would cross the network in clear)"
	}
	return s + "."
}

// identitySummary says what the internet thinks of this machine, the facts
// direct delivery depends on (RFC 5321 receivers check PTR and blocklists).
func identitySummary(id *Identity) string {
	if id.PublicIP == "" {
		return "This machine's public address is unknown: " + strings.Join(id.Unknown, "; ") + "."
	}
	return identityWords(id, identityWording{
		lead:       "This machine's public address is ",
		noMatch:    " (many receivers reject such senders)",
		noPTR:      "many receivers reject mail sent directly from it",
		sayRefused: true,
		end:        ".",
	})
}

// identityWording is what an identity summary says beyond the facts: for
// IPv4 and IPv6 alike it names the reverse name and the blocklists, with
// the consequences that differ.
type identityWording struct {
	lead       string // before the address
	noMatch    string // after "does not point back to it"
	noPTR      string // after "it has no reverse name (PTR): "
	sayRefused bool   // a blocklist that refused the query is said (IPv4: the resolver is to blame)
	end        string
}

// identityWords is an identity's summary in the words w gives.
func identityWords(id *Identity, w identityWording) string {
	s := w.lead + id.PublicIP
	switch {
	case id.ForwardConfirmed:
		s += "; its reverse name " + id.ConfirmedName + " points back to it (forward-confirmed)"
	case len(id.PTR) > 0:
		s += "; its reverse name " + strings.Join(id.PTR, ", ") + " does not point back to it" + w.noMatch
	default:
		s += "; it has no reverse name (PTR): " + w.noPTR
	}
	for _, l := range id.Listings {
		switch {
		case l.Error != "":
			s += "; " + l.Zone + " could not be asked (" + l.Error + ")"
		case l.QueryRefused && w.sayRefused:
			s += "; " + l.Zone + " refused the query (use your own resolver, not a public one)"
		case l.QueryRefused:
		case l.Listed:
			s += "; listed on " + l.Zone + ": " + strings.Join(l.Meaning, ", ")
		default:
			s += "; not listed on " + l.Zone
		}
	}
	return s + w.end
}
