package advisor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailroute/mailroute/probe"
)

// This file turns a probe report into findings in plain words, one per
// fact that matters, each saying what was seen, what it means, and what to
// do — as a good help page would, for someone who has never heard of MX
// records. The wizard prints them as it goes; advise prints them too. The
// facts about names and identity are in explain_facts.go.

// Severity says how much a finding matters, for its order and colour.
type Severity string

const (
	SevOK      Severity = "ok"      // good news
	SevInfo    Severity = "info"    // worth knowing; nothing to do
	SevWarning Severity = "warning" // may cause trouble, and there is a way around it
	SevProblem Severity = "problem" // this stops mail on this path
)

// Finding is one fact of a report in plain words.
type Finding struct {
	Severity Severity `json:"severity"`
	// Topic groups findings: "network", "dns", "port 25", "relay", "tls",
	// "identity", "login", "limits".
	Topic   string   `json:"topic"`
	Title   string   `json:"title"`            // what was seen, in one line
	Meaning string   `json:"meaning"`          // what it means, for a newcomer
	Action  string   `json:"action,omitempty"` // what to do; "" when nothing
	Hosts   []string `json:"hosts,omitempty"`  // the servers it is about
}

// Explain describes every fact of rep that matters: offline, DNS answers,
// what happened on port 25 and on each relay port, greetings, certificates,
// this machine's public identity, the login and the measured limits.
// Findings come in that order; each is said once however many endpoints
// share it.
func Explain(rep *probe.Report) []Finding {
	if rep == nil {
		return nil
	}
	if rep.Offline {
		return []Finding{{Severity: SevProblem, Topic: "network", Title: "This machine seems to be offline",
			Meaning: "No DNS server answered (DNS is the internet's address book) and no server could be reached, so nothing else could be tested.",
			Action:  "Check the network connection (cable, Wi-Fi, VPN). If only DNS is blocked, name a DNS server that answers with --resolver IP."}}
	}
	var out []Finding
	out = append(out, explainDomains(rep)...)
	out = append(out, explainPort25(rep)...)
	for _, r := range rep.Relays {
		out = append(out, explainRelay(rep, r)...)
	}
	out = append(out, explainIdentity(rep.Identity)...)
	out = append(out, explainIdentity6(rep.Identity)...)
	if rep.Login != nil {
		out = append(out, ExplainLogin(rep.Login))
	}
	if rep.Measure != nil {
		out = append(out, ExplainMeasure(rep.Measure))
	}
	return out
}

// mxState is what one MX host's best endpoint says, best first: the
// groups of probe.Rank, whose order it keeps.
type mxState int

const (
	mxUsable mxState = iota
	mxIntercepted
	mxTalks // open, but the conversation stopped (Endpoint.Problem)
	mxRefused
	mxUnreachable
	mxFiltered
	mxError
)

func stateOf(e *probe.Endpoint) mxState { return mxState(probe.Rank(e)) }

// explainPort25 says what port 25 did, judging each MX host by its best
// address (no IPv6 route must not hide a working IPv4 one).
func explainPort25(rep *probe.Report) []Finding {
	hosts, best := rep.BestPerMXHost()
	if len(hosts) == 0 {
		return nil
	}
	groups := map[mxState][]*probe.Endpoint{}
	var far []string // blocked where port 25 reaches other MX hosts: their problem, not this network's
	for _, h := range hosts {
		e := best[h]
		if st := stateOf(e); (st == mxFiltered || st == mxRefused || st == mxUnreachable) && rep.FarEnd(h) {
			far = append(far, h)
			continue
		}
		groups[stateOf(e)] = append(groups[stateOf(e)], e)
	}
	// A wall is a problem when nothing gets through, a warning when some does.
	wall := SevProblem
	if len(groups[mxUsable]) > 0 {
		wall = SevWarning
	}
	const relayAdvice = "Use your mail provider's SMTP server on port 465 or 587 with your login: that is what a relay is for, and the wizard sets it up."
	var out []Finding
	for st := mxUsable; st <= mxError; st++ {
		g := groups[st]
		if len(g) == 0 {
			continue
		}
		names := endHosts(g)
		who := whoWords(names, len(hosts))
		f := Finding{Topic: "port 25", Severity: wall, Hosts: names}
		switch st {
		case mxUsable:
			f.Severity, f.Title = SevOK, "Port 25 works: this machine reaches the recipients' mail servers"
			f.Meaning = fmt.Sprintf("Port 25 is where mail servers receive mail. Connections to it reached %s, which greeted as mail servers should. Sending to them directly is possible, if they trust this machine's address.", who)
		case mxIntercepted:
			ev := "they answer with another server's name"
			if len(g[0].Evidence) > 0 {
				ev = g[0].Evidence[0]
			}
			f.Severity, f.Title = SevProblem, "Your ISP intercepts port 25"
			f.Meaning = fmt.Sprintf("Something other than the recipients' mail servers answers on port 25 for %s: %s. Your ISP, or a security box on your network, catches every port-25 connection, so \"direct\" mail would really pass through it and may be dropped or changed.", who, ev)
			f.Action = "Use your ISP's own SMTP relay, or your mail provider's SMTP server on port 465 or 587 with your login."
		case mxTalks:
			out = append(out, greetingFindings("port 25", g, wall)...)
			continue
		case mxRefused:
			f.Title = "Outbound port 25 is refused"
			f.Meaning = fmt.Sprintf("Port 25 is where mail servers receive mail. Connections to it were turned down at once for %s: a firewall on this machine, on your network or at your ISP rejects them.", who)
			f.Action = relayAdvice + " If the firewall is yours, allow outbound TCP port 25."
		case mxUnreachable:
			f.Title = "The network will not route to port 25"
			f.Meaning = fmt.Sprintf("For %s a router answered \"unreachable\" or \"prohibited\": a firewall rule forbids the connection, or there is no route (common for IPv6 on networks without it).", who)
			f.Action = relayAdvice
		case mxFiltered:
			f.Title = "Your network drops outbound port 25"
			f.Meaning = fmt.Sprintf("Port 25 is where mail servers receive mail. Connections to it got no answer within %s from %s: something on the way throws them away. Most ISPs and cloud providers do this to stop spam from infected machines.", time.Duration(rep.Timeout), who)
			f.Action = relayAdvice
		case mxError:
			f.Severity, f.Title = SevWarning, "Port 25 connections failed"
			f.Meaning = fmt.Sprintf("Connecting to port 25 failed for %s: %s.", who, g[0].Error)
			f.Action = "Run mailroute probe for the details; a local firewall or proxy setting may be the cause."
		}
		out = append(out, f)
	}
	if len(far) > 0 {
		out = append(out, Finding{Severity: SevInfo, Topic: "port 25", Hosts: far,
			Title: "Some mail servers do not answer on port 25, but your network is not blocking it",
			Meaning: fmt.Sprintf("Connections to port 25 of %s got no answer or were turned down, while this network reached other mail servers on port 25: the problem is at those servers or their networks. Mail for their domains goes to their other mail servers, or waits until these are back.",
				whoWords(far, len(hosts))),
		})
	}
	out = append(out, certFindings(rep, "port 25", collectEnds(rep.Domains))...)
	return out
}

func collectEnds(ds []*probe.Domain) []*probe.Endpoint {
	var out []*probe.Endpoint
	for _, d := range ds {
		out = append(out, d.Ends...)
	}
	return out
}

// explainRelay says which ports of a relay take mail, which do not and
// why, and what its certificate and login offer mean.
func explainRelay(rep *probe.Report, r *probe.Relay) []Finding {
	how := map[string]string{"srv": " (found in its domain's SRV records, where providers publish their mail server)",
		"guess": " (found by guessing its name from your address)"}[r.Source]
	if r.Error != nil {
		f := dnsFinding(r.Host, r.Error, rep.Resolver)
		f.Topic, f.Hosts = "relay", []string{r.Host}
		if r.Error.Kind == "nxdomain" || r.Error.Kind == "nodata" {
			f.Title = "The relay " + r.Host + " does not exist"
			f.Action = "Check the spelling of the server's name: your provider's help pages list it (search for \"SMTP settings\")."
		}
		return []Finding{f}
	}
	var usable, talks []*probe.Endpoint
	closed := map[probe.Verdict][]string{}
	for _, e := range r.Ends {
		switch {
		case e.Usable():
			usable = append(usable, e)
		case e.Verdict == probe.Open:
			talks = append(talks, e)
		default:
			closed[e.Verdict] = append(closed[e.Verdict], strconv.Itoa(e.Port))
		}
	}
	var out []Finding
	if len(usable) > 0 {
		var ports []string
		for _, e := range usable {
			ports = append(ports, portWords(e))
		}
		out = append(out, Finding{Severity: SevOK, Topic: "relay", Hosts: []string{r.Host},
			Title:   fmt.Sprintf("%s answers on %s", r.Host, list(uniq(ports))),
			Meaning: fmt.Sprintf("The mail server %s%s greets as a mail server should on these ports, which are the ones for sending mail with a login: mail can go through it.", r.Host, how)})
	}
	sev := SevProblem
	if len(usable) > 0 {
		sev = SevInfo
	}
	for _, v := range []probe.Verdict{probe.Refused, probe.Filtered, probe.Unreachable, probe.Failed} {
		ports := uniq(closed[v])
		if len(ports) == 0 {
			continue
		}
		f := Finding{Severity: sev, Topic: "relay", Hosts: []string{r.Host}, Title: fmt.Sprintf("%s: %s %s", r.Host, plural(len(ports), "port"), list(ports))}
		switch v {
		case probe.Refused:
			f.Title += " closed"
			f.Meaning = "Connections were turned down at once: nothing listens there, or a firewall rejects them. Servers rarely offer every port, so this is normal when another port answers."
		case probe.Filtered:
			f.Title += " silent"
			f.Meaning = fmt.Sprintf("Connections got no answer within %s: a firewall (on your network or theirs) drops them.", time.Duration(rep.Timeout))
			if sev == SevInfo {
				f.Severity = SevWarning
			}
		case probe.Unreachable:
			f.Title += " unreachable"
			f.Meaning = "A router answered that the server cannot be reached on these ports: a firewall rule, or no route."
		default:
			f.Title += " failed"
			f.Meaning = "The connection failed in an unusual way; mailroute probe shows the details."
		}
		if sev == SevProblem {
			f.Action = "Check the server's name and ports on your provider's help pages; from another network, test whether it is this network that blocks them."
		}
		out = append(out, f)
	}
	out = append(out, greetingFindings("relay", talks, sev)...)
	out = append(out, certFindings(rep, "tls", r.Ends)...)
	if f, ok := authFinding(r, usable); ok {
		out = append(out, f)
	}
	return out
}

// authFinding notes a relay that offers no login, or one only without
// encryption: the login would fail or expose the password.
func authFinding(r *probe.Relay, usable []*probe.Endpoint) (Finding, bool) {
	if len(usable) == 0 {
		return Finding{}, false
	}
	plain := false
	for _, e := range usable {
		if len(e.AuthTLS) > 0 {
			return Finding{}, false
		}
		plain = plain || len(e.AuthPlain) > 0
	}
	if plain {
		return Finding{Severity: SevWarning, Topic: "tls", Hosts: []string{r.Host}, Title: r.Host + " offers a login only without encryption",
			Meaning: "It accepts a password only before encryption (TLS) is set up, so the password would cross the network readable by anyone on the way.",
			Action:  "Use another port or server. If the network between you is your own, --insecure-auth allows it."}, true
	}
	return Finding{Severity: SevWarning, Topic: "relay", Hosts: []string{r.Host}, Title: r.Host + " offers no login",
		Meaning: "It takes connections but offers no way to log in (no AUTH). Such a server passes on mail only from its own network (your ISP's relay, for its customers) and refuses it from elsewhere.",
		Action:  "If it is your ISP's relay, use it without a login; otherwise use your mail provider's SMTP server."}, true
}

// greetingFindings explains open endpoints whose conversation stopped,
// one finding per kind of stop.
func greetingFindings(topic string, ends []*probe.Endpoint, sev Severity) []Finding {
	byTitle := map[string]*Finding{}
	var order []string
	for _, e := range ends {
		where := fmt.Sprintf("%s port %d", e.Host, e.Port)
		k := greetingKind(e)
		f := byTitle[k.title]
		if f == nil {
			f = &Finding{Severity: sev, Topic: topic, Title: fmt.Sprintf(k.title, where), Meaning: k.meaning, Action: k.action}
			byTitle[k.title] = f
			order = append(order, k.title)
		}
		f.Hosts = append(f.Hosts, where)
	}
	var out []Finding
	for _, t := range order {
		f := byTitle[t]
		if len(f.Hosts) > 1 {
			f.Title = fmt.Sprintf(t, list(f.Hosts))
		}
		out = append(out, *f)
	}
	return out
}

type greeting struct{ title, meaning, action string }

// greetingKind explains Endpoint.ProblemKind, quoting ProblemDetail; %s
// in the title is where it happened.
func greetingKind(e *probe.Endpoint) greeting {
	p, detail := e.Problem, e.ProblemDetail
	switch e.ProblemKind {
	case probe.ProblemGreetingRefused:
		return greeting{"%s says no as soon as it answers",
			fmt.Sprintf("It greeted with %q: it will not talk to this machine. Servers do this to addresses on blocklists, to home connections, or when they are not open to the public.", detail),
			"If this is your relay, ask its operator; otherwise send through your mail provider's SMTP server."}
	case probe.ProblemGreetingBusy:
		return greeting{"%s is busy or limiting connections",
			fmt.Sprintf("It greeted with %q, a temporary refusal: the server is overloaded, or limits how often this address may connect.", detail),
			"Try again in a few minutes; if it lasts, this address is being rate-limited."}
	case probe.ProblemNoGreeting:
		return greeting{"%s accepts connections but says nothing",
			"A mail server says hello (\"220 …\") at once; this one stayed silent. Often a firewall or proxy lets the connection in but not through, or the server is overloaded.",
			"Try another port or server; if the server is yours, check that its mail service runs."}
	case probe.ProblemNotSMTP:
		return greeting{"Something other than a mail server answers at %s",
			fmt.Sprintf("Its first words were %s, not a mail server's greeting: another program listens there, or a captive portal (hotel or airport Wi-Fi) answers everything.", detail),
			"Check the server's name and port; on a public Wi-Fi, log in to it first."}
	case probe.ProblemPlaintextOnTLS:
		return greeting{"%s speaks without encryption where encryption was expected",
			"Port 465 should start encrypted (TLS) from the first byte, but this server greeted in plain text: it expects STARTTLS there (encryption started after the greeting).",
			"Use port 587 on this server, which starts encryption after the greeting."}
	case probe.ProblemTLS:
		return greeting{"The encrypted connection to %s failed",
			fmt.Sprintf("Setting up encryption (TLS) failed: %s. The server may be very old, or something on the network interferes with encrypted connections.", detail),
			"Try the other submission port (465 or 587); if both fail, ask the server's operator."}
	case probe.ProblemEHLO:
		return greeting{"%s stopped answering after the hello",
			fmt.Sprintf("The server greeted, but did not accept mailroute's hello (EHLO): %s.", p),
			"Try another port; if this is your relay, ask its operator."}
	}
	return greeting{"The conversation with %s stopped", "It stopped with: " + p + ".", "Run mailroute probe for the details."}
}

// certFindings explains certificates that did not verify, once per host
// and kind. For port 25 they are information only: direct delivery
// encrypts without checking certificates, as every mail server does.
func certFindings(rep *probe.Report, topic string, ends []*probe.Endpoint) []Finding {
	now := rep.StartedAt
	if now.IsZero() {
		now = time.Now()
	}
	seen := map[string]bool{}
	var out []Finding
	for _, e := range ends {
		t := e.TLS
		if t == nil || t.Verified || e.Verdict == probe.Intercepted {
			continue
		}
		kind, f := certFinding(e, t, now)
		if seen[e.Host+kind] {
			continue
		}
		seen[e.Host+kind] = true
		f.Topic, f.Hosts, f.Severity = topic, []string{e.Host}, SevProblem
		if e.Role == probe.RoleMX {
			f.Topic, f.Severity, f.Action = "tls", SevInfo, ""
			f.Meaning += " For direct delivery this does not stop mail: mailroute encrypts anyway, as mail servers do between themselves."
		}
		out = append(out, f)
	}
	return out
}

func certFinding(e *probe.Endpoint, t *probe.TLSInfo, now time.Time) (string, Finding) {
	names := strings.Join(t.Names, ", ")
	switch {
	case !t.NotAfter.IsZero() && now.After(t.NotAfter):
		return "expired", Finding{Title: fmt.Sprintf("%s's certificate expired on %s", e.Host, t.NotAfter.Format(time.DateOnly)),
			Meaning: "A certificate proves that the server is the one it claims to be, and this one is out of date. mailroute will not send a password to it.",
			Action:  "Tell the server's operator; meanwhile use another server."}
	case !t.NotBefore.IsZero() && now.Before(t.NotBefore):
		return "notyet", Finding{Title: fmt.Sprintf("%s's certificate is not valid until %s", e.Host, t.NotBefore.Format(time.DateOnly)),
			Meaning: "Either the certificate is dated in the future, or this machine's clock is wrong.",
			Action:  "Check this machine's date and time (timedatectl shows them)."}
	case len(t.Names) > 0 && !slices.ContainsFunc(t.Names, func(n string) bool { return nameMatches(n, t.ServerName) }):
		return "name", Finding{Title: fmt.Sprintf("%s's certificate is for another name (%s)", e.Host, names),
			Meaning: fmt.Sprintf("The server showed a certificate for %s, not for %s. You may be using another name of the same server, or something in between answers in its place.", names, t.ServerName),
			Action:  fmt.Sprintf("If %s belongs to the same provider, use that name for the server; otherwise do not send your password there.", t.Names[0])}
	}
	issuer := t.Issuer
	if i := strings.Index(issuer, "CN="); i >= 0 {
		issuer = strings.SplitN(issuer[i+3:], ",", 2)[0]
	}
	return "untrusted", Finding{Title: fmt.Sprintf("%s's certificate is not trusted by this machine", e.Host),
		Meaning: fmt.Sprintf("A certificate proves that the server is the one it claims to be. This one is signed by %q, an authority this machine does not know: self-signed and company-internal certificates look like this, and so does someone intercepting the connection.", issuer),
		Action:  "If you trust this server, give its authority's certificate with --tls-ca FILE; otherwise use another server."}
}

// nameMatches is RFC 6125 matching: exact, or one leftmost wildcard label.
func nameMatches(pattern, host string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if pattern == host {
		return true
	}
	rest, ok := strings.CutPrefix(pattern, "*.")
	_, hostRest, found := strings.Cut(host, ".")
	return ok && found && rest == hostRest
}

// portWords is "465 (encrypted from the start)" or "587 (STARTTLS)".
func portWords(e *probe.Endpoint) string {
	switch {
	case e.TLSMode == "implicit":
		return fmt.Sprintf("%d (encrypted from the start)", e.Port)
	case e.TLS != nil:
		return fmt.Sprintf("%d (encryption after the greeting)", e.Port)
	}
	return fmt.Sprintf("%d (no encryption)", e.Port)
}

// whoWords names the mail servers a finding is about: "the mail server
// X", "all 3 mail servers tried (X, Y and Z)" or "1 of 2 mail servers (Y)".
func whoWords(names []string, total int) string {
	switch {
	case total == 1:
		return "the mail server " + names[0]
	case len(names) == total:
		return fmt.Sprintf("all %d mail servers tried (%s)", total, list(names))
	}
	return fmt.Sprintf("%d of %d mail servers (%s)", len(names), total, list(names))
}

func endHosts(es []*probe.Endpoint) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Host)
	}
	return uniq(out)
}

func uniq(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// list is "a", "a and b", "a, b and c", or "a, b and 3 more" past three.
func list(s []string) string {
	switch {
	case len(s) == 0:
		return ""
	case len(s) == 1:
		return s[0]
	case len(s) > 3:
		return fmt.Sprintf("%s, %s and %d more", s[0], s[1], len(s)-2)
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
