package advisor

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailroute/mailroute/probe"
)

// The findings about names (DNS), this machine's identity, the login and
// the measured limits. See explain.go.

// explainDomains says what DNS answered about each recipient domain, when
// that answer matters (an ordinary MX record says nothing new).
func explainDomains(rep *probe.Report) []Finding {
	var out []Finding
	liar := -1 // the one finding about a lying resolver, whatever the domains it denied
	for _, d := range rep.Domains {
		switch {
		case d.DNSError != nil && d.DNSError.Kind == probe.KindLyingResolver && liar >= 0:
			out[liar].Hosts = append(out[liar].Hosts, d.Name)
		case d.DNSError != nil:
			f := dnsFinding(d.Name, d.DNSError, rep.Resolver)
			f.Hosts = []string{d.Name}
			if d.DNSError.Kind == probe.KindLyingResolver {
				liar = len(out)
				if rep.ResolverLies != nil {
					f.Meaning = rep.ResolverLies.Text
				}
			}
			out = append(out, f)
		case d.NullMX:
			out = append(out, Finding{Severity: SevWarning, Topic: "dns", Hosts: []string{d.Name}, Title: d.Name + " accepts no mail",
				Meaning: "Its owner published a \"null MX\" record (RFC 7505): a statement that this domain never receives mail.",
				Action:  "Take its addresses off your list."})
		case d.Implicit:
			out = append(out, Finding{Severity: SevInfo, Topic: "dns", Hosts: []string{d.Name}, Title: d.Name + " names no mail server",
				Meaning: "It has no MX record (the DNS entry that names a domain's mail servers), so mail goes to the domain's own address. That works, but is unusual."})
		}
		if d.MTASTS != nil {
			out = append(out, explainMTASTS(d))
		}
		for _, mx := range d.MX {
			if mx.AddrError != "" && len(mx.Addrs) == 0 {
				out = append(out, Finding{Severity: SevWarning, Topic: "dns", Hosts: []string{mx.Host},
					Title:   fmt.Sprintf("%s's mail server %s has no address", d.Name, mx.Host),
					Meaning: fmt.Sprintf("The domain names %s as a mail server, but looking up its address failed: %s.", mx.Host, mx.AddrError),
					Action:  "Nothing to do here: mail to this domain goes to its other mail servers, if it has any, or waits until its owner fixes it."})
			}
		}
	}
	return out
}

// explainMTASTS says what d's MTA-STS policy (RFC 8461) means for direct
// delivery from here: under "enforce" only an MX host the policy names,
// reached on port 25 with a certificate that verifies for its name, may
// receive the mail; send defers the rest rather than send in plaintext.
func explainMTASTS(d *probe.Domain) Finding {
	m := d.MTASTS
	f := Finding{Severity: SevInfo, Topic: "dns", Hosts: []string{d.Name}}
	switch {
	case m.Error != "":
		f.Title = d.Name + " announces MTA-STS, but its policy could not be read"
		f.Meaning = "MTA-STS is how a domain asks senders to use verified encryption (RFC 8461). Its policy could not be fetched (" +
			m.Error + "), and senders then deliver as if there were none; mailroute does too."
		return f
	case m.Mode != "enforce":
		f.Title = fmt.Sprintf("%s's MTA-STS policy is in %s mode", d.Name, m.Mode)
		f.Meaning = "The domain asks senders for verified encryption (RFC 8461) but not to hold mail back when that fails: delivery goes on as usual."
		return f
	}
	var good, bad []string
	for _, mx := range d.MX {
		why := mtaSTSMiss(d, mx.Host)
		if why == "" {
			good = append(good, mx.Host)
		} else {
			bad = append(bad, mx.Host+": "+why)
		}
	}
	policy := fmt.Sprintf("Its MTA-STS policy (RFC 8461, enforce; mx: %s) allows delivery only to the mail servers it names, encrypted, with a certificate that verifies.", strings.Join(m.MX, " "))
	if len(good) > 0 {
		f.Severity = SevOK
		f.Title = fmt.Sprintf("%s requires verified encryption, and %s qualifies", d.Name, strings.Join(good, ", "))
		f.Meaning = policy + " Direct delivery from here meets it."
		return f
	}
	f.Severity = SevWarning
	f.Title = "Direct mail to " + d.Name + " would wait: its MTA-STS policy cannot be met from here"
	f.Meaning = policy + " None qualifies from here: " + strings.Join(bad, "; ") + ". mailroute defers such mail rather than send it unprotected."
	f.Action = "Send to this domain through a relay; a port-25 problem found above may be the cause."
	return f
}

// mtaSTSMiss says why the MX host cannot take d's mail under its enforced
// policy; "" when one of its addresses can (named by the policy, open,
// STARTTLS with a certificate that verifies for its name).
func mtaSTSMiss(d *probe.Domain, host string) string {
	if !d.MTASTS.Matches[host] {
		return "the policy does not name it"
	}
	why := "it was not probed"
	for _, e := range d.Ends {
		if e.Host != host {
			continue
		}
		var w string
		switch {
		case e.Verdict == probe.Intercepted:
			w = "something on the way answers in its place (intercepted)"
		case !e.Usable():
			w = "port 25 is " + string(e.Verdict)
		case e.TLS == nil:
			w = "it offers no STARTTLS"
		case !e.TLS.Verified:
			w = "its certificate does not verify (" + e.TLS.VerifyError + ")"
		default:
			return ""
		}
		if why == "it was not probed" {
			why = w
		}
	}
	return why
}

// dnsFinding explains a failed look-up of name.
func dnsFinding(name string, e *probe.DNSError, resolvers []string) Finding {
	f := Finding{Severity: SevWarning, Topic: "dns"}
	res := strings.Join(resolvers, ", ")
	switch e.Kind {
	case "nxdomain":
		f.Title = name + " does not exist"
		f.Meaning = fmt.Sprintf("The DNS (the internet's address book) has no domain %s (NXDOMAIN), so nobody can receive mail there.", name)
		f.Action = "Check the spelling."
	case "nodata":
		f.Title = name + " cannot receive mail"
		f.Meaning = fmt.Sprintf("%s exists, but has neither a mail server (MX record) nor an address.", name)
		f.Action = "Check the spelling; otherwise the domain's owner has to set up mail."
	case "servfail":
		f.Title = "The DNS for " + name + " is broken right now"
		f.Meaning = fmt.Sprintf("The DNS server could not get an answer about %s (SERVFAIL): the domain's own name servers are down or misconfigured.", name)
		f.Action = "Try again later; if it lasts, the domain's owner has to fix it."
	case "refused":
		f.Title = "The DNS server refused to look up " + name
		f.Meaning = fmt.Sprintf("The DNS server this machine asks (%s) declined the question (REFUSED): it answers only some clients or some names.", res)
		f.Action = "Name a DNS server that answers with --resolver IP, for example your router's address."
	case probe.KindLyingResolver:
		// The probe found the resolver denying names that certainly exist
		// (probe.ResolverDoubt): its answers are no evidence about name.
		f.Severity = SevProblem
		f.Title = fmt.Sprintf("The DNS server (%s) is lying or filtering", res)
		f.Meaning = strings.ToUpper(e.Message[:1]) + e.Message[1:] + "."
		f.Action = "Log in to the network if it has a portal (hotel or café Wi-Fi), or name a DNS server that answers truthfully with --resolver IP, for example your router's address."
	case "timeout", "network":
		f.Title = "No DNS answer for " + name
		f.Meaning = fmt.Sprintf("The DNS server (%s) did not answer: %s.", res, e.Message)
		f.Action = "Check the network, or name another DNS server with --resolver IP."
	default:
		f.Title = "The DNS look-up of " + name + " failed"
		f.Meaning = e.Message + "."
		f.Action = "Try again; if it lasts, name another DNS server with --resolver IP."
	}
	return f
}

// explainIdentity says what the internet thinks of this machine: what
// receivers check before they accept mail sent to them directly.
func explainIdentity(id *probe.Identity) []Finding {
	if id == nil {
		return nil
	}
	const relay = "Send through a relay (your mail provider's SMTP server): then receivers judge the relay, not this machine."
	if id.PublicIP == "" {
		why := "no reason given"
		if len(id.Unknown) > 0 {
			why = strings.TrimPrefix(id.Unknown[0], "public address unknown: ")
		}
		return []Finding{{Severity: SevWarning, Topic: "identity", Title: "This machine's public address is unknown",
			Meaning: fmt.Sprintf("The services that tell a machine the address the internet sees did not answer (%s), so its name and blocklist entries were not checked. Receivers check both before they accept mail sent to them directly.", why),
			Action:  relay}}
	}
	ip := id.PublicIP
	var out []Finding
	switch {
	case id.ForwardConfirmed:
		out = append(out, Finding{Severity: SevOK, Topic: "identity", Title: "This machine's address has a proper name",
			Meaning: fmt.Sprintf("The internet sees this machine as %s, whose reverse name (PTR) %s points back to it: what receivers expect of a mail server.", ip, id.ConfirmedName)})
	case len(id.PTR) > 0:
		out = append(out, Finding{Severity: SevWarning, Topic: "identity", Title: "This machine's reverse name does not point back to it",
			Meaning: fmt.Sprintf("The internet sees this machine as %s, named %s in reverse DNS (PTR), but that name does not lead back to %s. Receivers check both directions and treat a mismatch like no name at all.", ip, strings.Join(id.PTR, ", "), ip),
			Action:  relay + " Or make the name point to " + ip + "."})
	default:
		out = append(out, Finding{Severity: SevWarning, Topic: "identity", Title: "This machine's address has no name",
			Meaning: fmt.Sprintf("Receivers look up the name of the address mail comes from (reverse DNS, \"PTR\"). The internet sees this machine as %s, which has none, as usual for home and office connections; Gmail, Outlook and most large providers refuse mail sent directly from such addresses.", ip),
			Action:  relay + " Or ask your ISP for a static address with a reverse name."})
	}
	for _, l := range id.Listings {
		out = append(out, listingFinding(ip, l))
	}
	return out
}

func listingFinding(ip string, l probe.Listing) Finding {
	f := Finding{Topic: "identity", Hosts: []string{l.Zone}}
	spamhaus := strings.Contains(l.Zone, "spamhaus") || strings.HasPrefix(l.Zone, "zen.")
	switch {
	case l.Error != "":
		f.Severity, f.Title = SevInfo, l.Zone+" could not be asked"
		f.Meaning = fmt.Sprintf("The blocklist look-up failed (%s), so whether %s is listed there is unknown.", l.Error, ip)
	case l.QueryRefused:
		f.Severity, f.Title = SevInfo, l.Zone+" would not answer"
		f.Meaning = fmt.Sprintf("The blocklist refused the question (%s): Spamhaus does not answer through large public DNS servers (Google, Cloudflare, Quad9) or above its free quota, so whether %s is listed is unknown.", strings.Join(l.Meaning, "; "), ip)
		f.Action = "To know, ask through your own or your ISP's DNS server (--resolver IP)."
	case l.Listed && l.PolicyBlock:
		f.Severity, f.Title = SevWarning, "This address is listed as a home connection ("+l.Zone+", PBL)"
		f.Meaning = fmt.Sprintf("%s is in the Policy Block List: address ranges whose ISP says they should not send mail directly (home, mobile and dynamic addresses). It is not a spam accusation, but receivers that use it refuse mail sent directly from here.", ip)
		f.Action = "Send through your mail provider's SMTP server: that is what the listing expects, and it works."
	case l.Listed:
		f.Severity, f.Title = SevWarning, "This address is on a spam blocklist ("+l.Zone+")"
		what := strings.Join(l.Codes, ", ")
		if len(l.Meaning) > 0 {
			what = strings.Join(l.Meaning, "; ")
		}
		f.Meaning = fmt.Sprintf("%s lists %s: %s. Receivers that use it refuse mail from this address, so direct delivery would mostly fail.", l.Zone, ip, what)
		f.Action = "Meanwhile send through a relay. To get off the list, look the address up on the list's web site for the reason and the removal steps"
		if spamhaus {
			f.Action += " (https://check.spamhaus.org/)"
		}
		f.Action += "; an infected machine on your network is a common cause."
	default:
		f.Severity, f.Title = SevOK, "This address is not on "+l.Zone
		f.Meaning = fmt.Sprintf("%s, a blocklist many receivers consult, does not list %s.", l.Zone, ip)
	}
	return f
}

// ExplainLogin explains a login check.
func ExplainLogin(l *probe.Login) Finding {
	where := fmt.Sprintf("%s:%d", l.Host, l.Port)
	f := Finding{Topic: "login", Hosts: []string{where}, Severity: SevProblem}
	switch {
	case l.OK:
		f.Severity, f.Title = SevOK, "The login to "+where+" works"
		f.Meaning = fmt.Sprintf("The server accepted the user name and password (AUTH %s, inside an encrypted connection) in %s. Nothing was sent.", l.Mechanism, time.Duration(l.Elapsed).Round(time.Millisecond))
		if l.TLSMode == "none" {
			f.Meaning = fmt.Sprintf("The server accepted the user name and password (AUTH %s, without encryption) in %s. Nothing was sent.", l.Mechanism, time.Duration(l.Elapsed).Round(time.Millisecond))
		}
	case l.Reply != "":
		f.Title = where + " refused the login"
		f.Meaning = fmt.Sprintf("The server said %q. The user name or the password is wrong, or the account needs an app password (Gmail, Outlook, iCloud and Yahoo do when 2-step verification is on).", l.Reply)
		f.Action = "Check the user name (usually your full address) and the password; if your provider uses app passwords, create one in your account's security settings."
	case strings.Contains(l.Error, "certificate not accepted"):
		f.Title = "The login was not tried: " + where + "'s certificate is not trusted"
		f.Meaning = "mailroute sends a password only to a server whose certificate proves who it is: " + strings.TrimPrefix(l.Error, "TLS certificate not accepted: ") + "."
		f.Action = "If you trust the server, give its authority's certificate with --tls-ca FILE; otherwise use another server."
	case strings.Contains(l.Error, "in clear"):
		f.Title = "The login was not tried: the connection is not encrypted"
		f.Meaning = "The password would cross the network readable by anyone on the way: " + l.Error + "."
		f.Action = "Use port 465 or 587, which encrypt; --insecure-auth allows it when the network between you is your own."
	case strings.Contains(l.Error, "AUTH"):
		f.Title = where + " does not take this login"
		f.Meaning = l.Error + "."
		f.Action = "Try the server's other submission port (465 or 587), or check your provider's SMTP settings page."
	default:
		f.Title = "The login could not be tried"
		f.Meaning = fmt.Sprintf("Talking to %s failed: %s.", where, l.Error)
		f.Action = "Try again; if it lasts, the server may be limiting connections from this address."
	}
	return f
}

// ExplainMeasure explains a relay measurement: the limits, with the
// server's words, or why measuring failed.
func ExplainMeasure(m *probe.Measurement) Finding {
	where := fmt.Sprintf("%s:%d", m.Host, m.Port)
	if m.Error != "" && m.SessionLimit == 0 && m.Transactions == 0 {
		return Finding{Severity: SevWarning, Topic: "limits", Hosts: []string{where}, Title: "Measuring " + where + "'s limits failed",
			Meaning: m.Error + ". The config falls back to careful numbers from the provider catalog or defaults.",
			Action:  "Measure again later with mailroute advise --measure."}
	}
	var parts []string
	switch {
	case m.SessionCapped:
		parts = append(parts, fmt.Sprintf("at least %d sessions at once", m.SessionLimit))
	case m.SessionLimit > 0:
		parts = append(parts, fmt.Sprintf("%d %s at once", m.SessionLimit, plural(m.SessionLimit, "session")))
	}
	msgs := plural(m.Transactions, "message")
	switch {
	case m.TransactionsCapped:
		parts = append(parts, fmt.Sprintf("at least %d messages in a row", m.Transactions))
	case m.PerSession:
		parts = append(parts, fmt.Sprintf("%d %s per session", m.Transactions, msgs))
	case m.Window > 0:
		parts = append(parts, fmt.Sprintf("%d %s per %s", m.Transactions, msgs, time.Duration(m.Window).Round(time.Second)))
	case m.Transactions > 0:
		parts = append(parts, fmt.Sprintf("%d %s, then a pause of unknown length", m.Transactions, msgs))
	}
	f := Finding{Severity: SevInfo, Topic: "limits", Hosts: []string{where}, Title: where + " allows " + strings.Join(parts, " and ")}
	f.Meaning = "Measured without sending anything (mailroute opened sessions and started messages, then cancelled them)."
	var said []string
	for _, r := range []string{m.SessionReply, m.TransactionReply} {
		if r != "" {
			said = append(said, fmt.Sprintf("%q", r))
		}
	}
	if len(said) > 0 {
		f.Meaning += " Past the limits the server said " + strings.Join(said, " and ") + "."
	}
	f.Meaning += " The recommended threads and rate stay within these limits."
	return f
}
