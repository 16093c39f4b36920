// Package advisor decides how this machine should send: direct to the
// recipients' MX hosts or through a relay, with how many sessions at once
// and at what rate. It never touches the network itself: Run (run.go)
// calls probe for the report, the login check and the limit measurement,
// in one order for every command, and Decide reads the Report.
// Every choice comes with its reason in plain words, and every number with
// where it came from: measured, the provider catalog (with the URL of the
// published limit), the list size, or a default.
package advisor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/probe"
)

// Input is what the advisor decides from: the probe's report (with the
// identity, login and measurement filled in when they were run) and what the
// user told us.
type Input struct {
	Report *probe.Report
	// ListSize is the number of recipients; 0 when unknown.
	ListSize int
	// FromDomain is the sender's domain (from --from or the login name);
	// it helps match the provider catalog.
	FromDomain string
	// FromMX are the sender domain's MX host names, looked up by the
	// caller when the report does not have them (the advisor does no DNS):
	// MX *.google.com says Google, whatever the domain.
	FromMX []string
	// Login details for the config. The secret itself never comes here:
	// only where it is kept (an environment variable or a command).
	User         string
	PasswordEnv  string
	PasswordCmd  string
	InsecureAuth bool
	// CAFile is extra CA certificates the relay's certificate needs.
	CAFile string
	// Now stamps the evidence; zero means time.Now.
	Now time.Time
}

// Recommendation is the advisor's answer.
type Recommendation struct {
	// OK is false when nothing found can send; Todo then says what to do.
	OK   bool        `json:"ok"`
	Mode config.Mode `json:"mode,omitempty"`
	// Summary is the recommendation in one sentence.
	Summary string `json:"summary"`
	// Steps are the decisions in order, each with its reason.
	Steps []Step `json:"steps"`
	// Unknown says what was not found out and what that means.
	Unknown []string `json:"unknown,omitempty"`
	Todo    []string `json:"todo,omitempty"`

	Relay    *RelayChoice `json:"relay,omitempty"`
	Provider *Match       `json:"provider,omitempty"`
	Threads  Number       `json:"threads"`
	Rate     RateChoice   `json:"rate"`
	// PerSession is the relay's cap on messages per session (0: none known).
	PerSession Number `json:"messages_per_session"`

	// Config is the configuration to write; nil when !OK.
	Config *config.Config `json:"-"`
}

// Step is one decision and why it was made.
type Step struct {
	Topic    string `json:"topic"` // "port 25", "identity", "mode", "relay", "login", "threads", "rate", …
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
}

// Number is a chosen number and where it came from.
type Number struct {
	Value int `json:"value"`
	// Source is "measured", "catalog: URL", "list size" or "default".
	Source string `json:"source"`
	Reason string `json:"reason"`
}

// RateChoice is the chosen rate (zero: no limit) and where it came from.
type RateChoice struct {
	Rate   config.Rate `json:"rate"`
	Source string      `json:"source"`
	Reason string      `json:"reason"`
}

// RelayChoice is the relay endpoint chosen.
type RelayChoice struct {
	Host    string         `json:"host"`
	Addr    string         `json:"addr"`
	Port    int            `json:"port"`
	TLS     config.TLSMode `json:"tls"`
	Auth    string         `json:"auth,omitempty"` // SASL mechanism, lower case; "" without a login
	Offered []string       `json:"auth_offered,omitempty"`
}

// Decide turns a report into a recommendation. It reads only in; the
// report is not changed.
func Decide(in Input) *Recommendation {
	rep := in.Report
	if rep == nil {
		rep = &probe.Report{}
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	rec := &Recommendation{}
	add := func(topic, decision, reason string) {
		rec.Steps = append(rec.Steps, Step{topic, decision, reason})
	}

	p25, p25why := port25(rep)
	// Where port 25 works over IPv6 only, direct mail leaves from this
	// machine's IPv6 address: that is the identity receivers judge.
	ident := rep.Identity
	if p25 && ipv6Only(rep) {
		p25why += "; over IPv6 only (IPv4 is blocked), so receivers judge this machine's IPv6 address"
		switch {
		case rep.Identity == nil:
		case rep.Identity.IPv6 != nil:
			ident = rep.Identity.IPv6
		default:
			ident = &probe.Identity{Unknown: []string{"this machine's IPv6 address was not found (no echo service answered over IPv6)"}}
		}
	}
	add("port 25", map[bool]string{true: "open", false: "not usable"}[p25], p25why)
	id := judgeIdentity(ident)
	add("identity", id.decision(), id.reason)
	rec.Unknown = append(rec.Unknown, id.unknown...)

	end, relayWhy := ChooseRelay(rep, in.User != "", in.InsecureAuth)
	relayHost := ""
	if end != nil {
		relayHost = end.Host
	}
	rec.Provider = Find(relayHost, in.FromDomain, senderMX(rep, in))

	switch {
	case rep.Offline:
		rec.Todo = append(rec.Todo, "this machine seems to be offline (no DNS answer, nothing reached): check the network, or name a resolver with --resolver")
	case p25 && id.state == good:
		rec.Mode = config.ModeDirect
		add("mode", "direct", "port 25 reaches the recipients' MX hosts and this address can send direct ("+id.short+")")
	case end != nil:
		rec.Mode = config.ModeRelay
		why := "port 25 is not usable from here"
		switch {
		case p25 && id.state == bad:
			why = "port 25 works, but this address should not send direct: " + id.short
		case p25:
			why = "port 25 works, but whether receivers accept direct mail from this address is unknown (" + id.short + "): a relay is safer"
		}
		add("mode", "relay", why)
		add("relay", fmt.Sprintf("%s:%d", end.Host, end.Port), relayWhy)
	case p25 && id.state == unknown:
		rec.Mode = config.ModeDirect
		add("mode", "direct", "port 25 reaches the recipients' MX hosts and no relay answered; whether receivers accept mail from this address is unknown ("+id.short+")")
	default:
		add("relay", "none usable", relayWhy)
		rec.Todo = todo(rep, in, p25, id)
	}
	if rec.Mode == "" {
		rec.Summary = "Nothing reachable from here can take the mail; see what to do below."
		return rec
	}

	if rec.Mode == config.ModeRelay {
		rec.Relay = relayChoice(end, rep.Login, in.User)
		if l := rep.Login; in.User != "" && l != nil && !l.OK {
			words := l.Reply
			if words == "" {
				words = l.Error
			}
			add("login", "refused", fmt.Sprintf("%s:%d said %q", l.Host, l.Port, words))
			rec.Todo = append(rec.Todo, "check the user name and password (or app password) for "+l.Host+", then run advise again")
			rec.Mode, rec.Relay = "", nil
			rec.Summary = "The relay refused the login; nothing was written."
			return rec
		}
		rec.Steps = append(rec.Steps, loginStep(rep.Login, in.User)...)
		rec.Unknown = append(rec.Unknown, relayUnknowns(rep, in)...)
	}
	if in.ListSize <= 0 {
		rec.Unknown = append(rec.Unknown, "the list size was not given (--list-size): threads are not sized to the list")
	}

	rec.Threads, rec.Rate = numbers(rec.Mode, in, rec.Provider, rep.Measure)
	add("threads", fmt.Sprint(rec.Threads.Value), rec.Threads.Reason)
	rate := "no limit"
	if !rec.Rate.Rate.IsZero() {
		rate = rec.Rate.Rate.String()
	}
	add("rate", rate, rec.Rate.Reason)
	if rec.Mode == config.ModeRelay {
		if rec.PerSession = sessionCap(rec.Provider, rep.Measure); rec.PerSession.Value > 0 {
			add("messages per session", fmt.Sprint(rec.PerSession.Value), rec.PerSession.Reason+"; send opens a new session after that many")
		}
	}
	if rec.Mode == config.ModeDirect {
		rec.Steps = append(rec.Steps, inboundSteps(rep)...)
	}

	cfg, err := buildConfig(rec, in, rep, id, now)
	if err != nil {
		// A config the advisor made and send refuses is a bug here; say it
		// rather than write a file that won't load.
		rec.Todo = append(rec.Todo, "internal error: the recommended config does not validate: "+err.Error())
		rec.Summary = "The advisor made an invalid config; nothing was written."
		return rec
	}
	rec.Config, rec.OK = cfg, true
	rec.Summary = summary(rec)
	return rec
}

func summary(rec *Recommendation) string {
	rate := "no rate limit"
	if !rec.Rate.Rate.IsZero() {
		rate = "at most " + rec.Rate.Rate.String()
	}
	if rec.Mode == config.ModeDirect {
		return fmt.Sprintf("Send direct to the recipients' MX hosts on port 25, %s at once, %s.", count(rec.Threads.Value, "session"), rate)
	}
	r := rec.Relay
	mode := map[config.TLSMode]string{config.TLSImplicit: "implicit TLS", config.TLSStartTLS: "STARTTLS", config.TLSNone: "no TLS"}[r.TLS]
	login := ""
	if r.Auth != "" {
		login = ", with a login"
	}
	return fmt.Sprintf("Send through the relay %s:%d (%s%s), %s at once, %s.", r.Host, r.Port, mode, login, count(rec.Threads.Value, "session"), rate)
}

// port25 says whether port 25 reaches the recipients' MX hosts without
// interception: every domain with MX endpoints has a usable one, and no MX
// host is intercepted (README "Design: interception").
func port25(rep *probe.Report) (bool, string) {
	var hosts, usable, intercepted []string
	verdicts := map[probe.Verdict]int{}
	var blocked []string // domains with endpoints but none usable
	evidence := ""
	for _, d := range rep.Domains {
		ok := false
		seen := map[string]bool{}
		for _, e := range d.Ends {
			if e.Role != probe.RoleMX {
				continue
			}
			if !seen[e.Host] {
				seen[e.Host] = true
				hosts = append(hosts, e.Host)
			}
			switch {
			case e.Verdict == probe.Intercepted:
				if !slices.Contains(intercepted, e.Host) {
					intercepted = append(intercepted, e.Host)
				}
				if evidence == "" && len(e.Evidence) > 0 {
					evidence = e.Evidence[0]
				}
			case e.Usable():
				ok = true
				if !slices.Contains(usable, e.Host) {
					usable = append(usable, e.Host)
				}
			default:
				verdicts[e.Verdict]++
			}
		}
		if len(d.Ends) > 0 && !ok {
			blocked = append(blocked, d.Name)
		}
	}
	switch {
	case len(hosts) == 0:
		return false, "no recipient MX host was probed (no --to domain with MX hosts that resolve)"
	case len(intercepted) > 0:
		why := fmt.Sprintf("port 25 is intercepted on %d of %s: your ISP answers port 25 itself instead of the recipients' servers", len(intercepted), count(len(hosts), "MX host"))
		if evidence != "" {
			why += " (" + evidence + ")"
		}
		return false, why
	case len(usable) == 0:
		var parts []string
		for _, v := range []probe.Verdict{probe.Filtered, probe.Refused, probe.Unreachable, probe.Failed, probe.Open} {
			if n := verdicts[v]; n > 0 {
				word := string(v)
				if v == probe.Open {
					word = "open but not talking SMTP properly"
				}
				parts = append(parts, fmt.Sprintf("%s on %d", word, n))
			}
		}
		what := "reaches none of the " + count(len(hosts), "MX host")
		if len(hosts) == 1 {
			what = "does not reach the MX host"
		}
		return false, fmt.Sprintf("port 25 %s (%s %s): most ISPs block outbound port 25",
			what, strings.Join(parts, ", "), plural(verdictTotal(verdicts), "endpoint"))
	case len(blocked) > 0:
		return false, fmt.Sprintf("port 25 reaches %d of %s, but none of %s: a partial block makes direct delivery unreliable", len(usable), count(len(hosts), "MX host"), strings.Join(blocked, ", "))
	}
	return true, fmt.Sprintf("port 25 reaches %d of %s directly, with no sign of interception", len(usable), count(len(hosts), "MX host"))
}

func verdictTotal(m map[probe.Verdict]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// count is "1 MX host" or "3 MX hosts".
func count(n int, what string) string { return fmt.Sprintf("%d %s", n, plural(n, what)) }

func plural(n int, what string) string {
	if n == 1 {
		return what
	}
	return what + "s"
}

// senderMX is the MX hosts of the sender's domain: from the report when
// the domain was also a --to target, else as the caller looked them up.
func senderMX(rep *probe.Report, in Input) []string {
	out := slices.Clone(in.FromMX)
	for _, d := range rep.Domains {
		if in.FromDomain != "" && strings.EqualFold(d.Name, in.FromDomain) {
			for _, mx := range d.MX {
				out = append(out, mx.Host)
			}
		}
	}
	return out
}

// tlsRank orders relay endpoints by RFC 8314 §3.3: implicit TLS first, then
// STARTTLS, then none; within each, the submission ports before 25.
func tlsRank(e *probe.Endpoint) (int, int) {
	tls := 2
	switch {
	case e.TLSMode == "implicit" && e.TLS != nil:
		tls = 0
	case e.TLS != nil:
		tls = 1
	}
	port := map[int]int{465: 0, 587: 1, 2525: 2, 25: 3}[e.Port]
	if port == 0 && e.Port != 465 {
		port = 4
	}
	return tls, port
}

// ChooseRelay picks the relay endpoint to use, or nil, and says why. An
// endpoint qualifies when it is usable (a 220 greeting, EHLO accepted) and,
// when a login is needed, offers AUTH after TLS (or before it, only with
// insecureAuth). Among those: a verified certificate first, then implicit
// TLS over STARTTLS over none, then port 465, 587, 2525, 25.
func ChooseRelay(rep *probe.Report, needAuth, insecureAuth bool) (*probe.Endpoint, string) {
	var cands []*probe.Endpoint
	var why []string
	total := 0
	for _, r := range rep.Relays {
		for _, e := range r.Ends {
			total++
			switch {
			case !e.Usable():
				w := string(e.Verdict)
				if e.Problem != "" {
					w = e.Problem
				}
				why = append(why, fmt.Sprintf(":%d %s", e.Port, w))
			case needAuth && len(e.AuthTLS) == 0 && !(insecureAuth && len(e.AuthPlain) > 0):
				w := "offers no AUTH after TLS"
				if len(e.AuthPlain) > 0 {
					w = "offers AUTH only without TLS (--insecure-auth allows that)"
				}
				why = append(why, fmt.Sprintf(":%d %s", e.Port, w))
			default:
				cands = append(cands, e)
			}
		}
	}
	if total == 0 {
		return nil, "no relay was given (--relay HOST) or found for the sender's domain (--from)"
	}
	if len(cands) == 0 {
		return nil, "no relay port can take the mail: " + strings.Join(why, "; ")
	}
	unverified := func(e *probe.Endpoint) int {
		if e.TLS != nil && !e.TLS.Verified {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(cands, func(a, b *probe.Endpoint) int {
		if d := unverified(a) - unverified(b); d != 0 {
			return d
		}
		at, ap := tlsRank(a)
		bt, bp := tlsRank(b)
		if at != bt {
			return at - bt
		}
		return ap - bp
	})
	best := cands[0]
	mode := map[int]string{0: "implicit TLS", 1: "STARTTLS", 2: "no TLS"}
	t, _ := tlsRank(best)
	reason := fmt.Sprintf("port %d (%s)", best.Port, mode[t])
	switch t {
	case 0:
		reason += " is preferred: RFC 8314 §3.3 recommends implicit TLS for submission"
	case 1:
		reason += " is the best that answers: STARTTLS, then AUTH inside TLS"
	default:
		reason += " answers without TLS: the mail (and any password) crosses the network in clear"
	}
	var others []string
	for _, e := range cands[1:] {
		others = append(others, fmt.Sprint(e.Port))
	}
	if len(others) > 0 {
		reason += "; also usable: " + strings.Join(slices.Compact(others), ", ")
	}
	if len(why) > 0 {
		reason += "; not usable: " + strings.Join(why, "; ")
	}
	if unverified(best) == 1 {
		reason += fmt.Sprintf("; its certificate is not trusted (%s): give the CA with --tls-ca, or sending will fail", best.TLS.VerifyError)
	}
	return best, reason
}

func relayChoice(e *probe.Endpoint, login *probe.Login, user string) *RelayChoice {
	rc := &RelayChoice{Host: e.Host, Addr: e.Addr, Port: e.Port, TLS: config.TLSNone, Offered: e.AuthTLS}
	switch {
	case e.TLSMode == "implicit":
		rc.TLS = config.TLSImplicit
	case e.TLS != nil:
		rc.TLS = config.TLSStartTLS
	}
	if len(rc.Offered) == 0 {
		rc.Offered = e.AuthPlain
	}
	if user == "" {
		return rc
	}
	if login != nil && login.OK && login.Mechanism != "" {
		rc.Auth = strings.ToLower(login.Mechanism)
		return rc
	}
	rc.Auth = "plain"
	for _, m := range []string{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"} {
		if slices.Contains(rc.Offered, m) {
			rc.Auth = strings.ToLower(m)
			break
		}
	}
	return rc
}

func loginStep(l *probe.Login, user string) []Step {
	switch {
	case user == "":
		return nil
	case l == nil:
		return []Step{{"login", "not checked", "the login was not tried; the first send will find out"}}
	}
	return []Step{{"login", "accepted", fmt.Sprintf("%s:%d accepted the login (AUTH %s) in %s", l.Host, l.Port, l.Mechanism, l.Elapsed)}}
}

func relayUnknowns(rep *probe.Report, in Input) []string {
	var out []string
	if in.User == "" {
		out = append(out, "no login was given (--user): most relays refuse to relay without AUTH; the config has no username")
	} else if rep.Login == nil {
		out = append(out, "the login was not checked: a wrong password shows up only when sending")
	}
	switch m := rep.Measure; {
	case m != nil && m.Error == "" && m.Transactions > 0 && !m.TransactionsCapped && !m.PerSession && m.Window <= 0:
		out = append(out, fmt.Sprintf("the relay's rate window was not found: it refused after %d messages and had not accepted again when the measurement stopped; the mailing will meet that limit and wait on 4xx replies (a longer --measure-time finds the window, or set rate yourself)", m.Transactions))
	case m == nil:
		out = append(out, "the relay's limits were not measured (--measure): threads and rate come from the catalog or defaults, so the mailing may meet the relay's limits as 4xx replies (send retries them)")
	case m.Error != "":
		out = append(out, "measuring the relay's limits failed ("+m.Error+"): threads and rate come from the catalog or defaults")
	}
	return out
}

// todo is what to do when nothing here can send.
func todo(rep *probe.Report, in Input, p25 bool, id identity) []string {
	var out []string
	if p25 && id.state == bad {
		out = append(out, "port 25 works, but receivers will refuse mail from this address ("+id.short+"): send through a relay, or ask your provider for a static address with a PTR name")
	}
	if m := Find("", in.FromDomain, senderMX(rep, in)); m != nil && len(m.Provider.Submission) > 0 {
		s := m.Provider.Submission[0]
		out = append(out, fmt.Sprintf("your mail provider looks like %s: try mailroute advise --relay %s:%d --user YOU@%s", m.Provider.Name, s.Host, s.Port, in.FromDomain))
	} else {
		out = append(out, "name your mail provider's submission server: mailroute advise --relay HOST --user YOU (or --from YOU@DOMAIN to look it up)")
	}
	out = append(out,
		"ask your ISP for its relay (smarthost) host, or to open outbound port 25",
		"or use a sending service; several also listen on port 2525 for networks that block the usual ports (SendGrid, Mailgun, Brevo, Postmark)")
	return out
}

// inboundSteps notes published limits of recipient providers that matter
// when delivering direct (Yahoo's 20 messages per connection, …).
func inboundSteps(rep *probe.Report) []Step {
	var out []Step
	seen := map[string]bool{}
	for _, d := range rep.Domains {
		for _, mx := range d.MX {
			p := FindMX(mx.Host)
			if p == nil || seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			for _, l := range p.Limits {
				if l.Inbound() {
					out = append(out, Step{"recipients", p.Name, fmt.Sprintf("%s publishes %s for senders (%s)", p.Name, l, l.Source)})
				}
			}
		}
	}
	return out
}
