package advisor

import (
	"crypto"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/mailroute/mailroute/internal/auth"
	"github.com/mailroute/mailroute/internal/config"
)

// This file judges a planned mailing as receivers will: SPF (RFC 7208) for
// the addresses it leaves from, the DKIM key (RFC 6376) it signs with, and
// the From domain's DMARC policy (RFC 7489) with the alignment the route
// yields. The facts come from internal/auth (check gathers them); nothing
// here touches the network.

// Verdict is a check's outcome.
type Verdict string

const (
	Pass    Verdict = "pass"    // receivers will accept this part
	Fail    Verdict = "fail"    // receivers will refuse or junk the mail because of it
	Warn    Verdict = "warn"    // accepted today, but weak, or refused by some
	Unknown Verdict = "unknown" // could not be found out (DNS failed, no address known)
)

// CheckFinding is one judgement with its evidence, in the plain words of
// the wizard's explanations.
type CheckFinding struct {
	Check    string   `json:"check"` // "spf", "dkim", "dmarc", "unsubscribe", "bulk:gmail", …
	Name     string   `json:"name"`  // "SPF", "DKIM", "DMARC", "Gmail bulk-sender rules", …
	Verdict  Verdict  `json:"verdict"`
	Title    string   `json:"title"`
	Evidence []string `json:"evidence,omitempty"`
	Meaning  string   `json:"meaning,omitempty"`
	Fix      string   `json:"fix,omitempty"`
	Sources  []string `json:"sources,omitempty"`
}

// AsFinding is the finding in advise's and the wizard's form.
func (c CheckFinding) AsFinding() Finding {
	sev := map[Verdict]Severity{Pass: SevOK, Fail: SevProblem, Warn: SevWarning, Unknown: SevInfo}[c.Verdict]
	meaning := c.Meaning
	if len(c.Evidence) > 0 {
		meaning = strings.TrimSpace(meaning + " (" + strings.Join(c.Evidence, "; ") + ")")
	}
	return Finding{Severity: sev, Topic: "authentication", Title: c.Name + ": " + c.Title, Meaning: meaning, Action: c.Fix}
}

// AuthPlan is what the mailing will do, as far as authentication goes.
type AuthPlan struct {
	Mode      config.Mode
	RelayHost string // relay mode: the first relay
	// Addrs are the addresses the mail will leave from (relay mode: the
	// relay's; direct mode: this machine's public ones), AddrsFrom says
	// how they were found, AddrsErr why there are none.
	Addrs     []netip.Addr
	AddrsFrom string
	AddrsErr  string
	Envelope  string // MAIL FROM address: SPF is checked for its domain
	From      string // the From header's address: DMARC is its domain's
	DKIM      *config.DKIM
	DKIMKey   crypto.PublicKey // the public half of DKIM.KeyFile
	Provider  *Provider        // the relay's catalog entry, if known
}

// AuthFacts are the DNS facts for a plan.
type AuthFacts struct {
	SPF   *auth.SPF
	DKIM  *auth.DKIMKey // nil without [dkim]
	DMARC *auth.DMARC
}

// Outcome is what a receiver will compute.
type Outcome struct {
	SPFPass, SPFAligned   bool
	DKIMPass, DKIMAligned bool
	// SPFUnknown, DKIMUnknown, DMARCUnknown: the check could not find out
	// (a DNS failure, no sending address), so "no pass" is not a fail.
	SPFUnknown, DKIMUnknown, DMARCUnknown bool
}

// DMARCPass is RFC 7489 §4.2: an aligned SPF pass or an aligned DKIM pass.
func (o Outcome) DMARCPass() bool { return o.SPFPass && o.SPFAligned || o.DKIMPass && o.DKIMAligned }

func domainOf(addr string) string { return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:]) }

// JudgeAuth returns the SPF, DKIM and DMARC findings and the outcome they
// predict.
func JudgeAuth(p *AuthPlan, f *AuthFacts) ([]CheckFinding, Outcome) {
	var o Outcome
	spfF := judgeSPF(p, f.SPF)
	o.SPFPass = spfF.Verdict == Pass
	dkimF := judgeDKIM(p, f.DKIM)
	o.DKIMPass = p.DKIM != nil && (dkimF.Verdict == Pass || dkimF.Verdict == Warn && f.DKIM != nil && f.DKIM.Key != nil && !f.DKIM.Key.Testing())
	dm := f.DMARC
	if dm == nil {
		dm = &auth.DMARC{FromDomain: domainOf(p.From)}
	}
	o.SPFAligned = auth.Aligned(domainOf(p.Envelope), dm.FromDomain, dm.SPFAlignment())
	if p.DKIM != nil {
		o.DKIMAligned = auth.Aligned(p.DKIM.Domain, dm.FromDomain, dm.DKIMAlignment())
	}
	dmarcF := judgeDMARC(p, dm, o)
	o.SPFUnknown, o.DKIMUnknown, o.DMARCUnknown = spfF.Verdict == Unknown, dkimF.Verdict == Unknown, dmarcF.Verdict == Unknown
	return []CheckFinding{spfF, dkimF, dmarcF}, o
}

func judgeSPF(p *AuthPlan, s *auth.SPF) CheckFinding {
	c := CheckFinding{Check: "spf", Name: "SPF", Sources: []string{"https://www.rfc-editor.org/rfc/rfc7208#section-2.6"}}
	d := domainOf(p.Envelope)
	if s == nil {
		s = &auth.SPF{Domain: d}
	}
	if s.Record != "" {
		c.Evidence = append(c.Evidence, "SPF record of "+d+": "+s.Record)
	} else if s.RecordErr != "" {
		c.Evidence = append(c.Evidence, s.RecordErr)
	}
	var worst string
	for _, r := range s.Results {
		e := r.Addr + " (" + p.AddrsFrom + "): " + r.Result
		c.Evidence = append(c.Evidence, e)
		if worst == "" || spfRank(r.Result) > spfRank(worst) {
			worst = r.Result
		}
	}
	// A relay's outbound servers are often not its submission host: the
	// provider's documented include is the better prediction.
	if s.Include != "" {
		if s.IncludeFound {
			c.Evidence = append(c.Evidence, "the record reaches "+p.Provider.Name+"'s include "+s.Include+" ("+strings.Join(s.IncludePath, " → ")+")")
		} else if s.Record != "" {
			c.Evidence = append(c.Evidence, "the record does not include "+s.Include+", which "+p.Provider.Name+" documents for its sending servers")
		}
		if p.Provider.SPFSource != "" {
			c.Sources = append(c.Sources, p.Provider.SPFSource)
		}
	}
	fixRecord := func() string {
		mech := ""
		switch {
		case s.Include != "":
			mech = "include:" + s.Include
		case p.Mode == config.ModeRelay && p.RelayHost != "":
			mech = "a:" + p.RelayHost
		case len(p.Addrs) > 0:
			mech = ipMech(p.Addrs[0])
		default:
			mech = "ip4:<your public address>"
		}
		if s.Record == "" {
			return fmt.Sprintf("Publish a TXT record at %s: \"v=spf1 %s ~all\" (one record only; add every other service that sends as %s).", d, mech, d)
		}
		return fmt.Sprintf("Add %s to the SPF record of %s, before its \"all\" term.", mech, d)
	}
	switch {
	case s.Include != "" && s.IncludeFound:
		c.Verdict, c.Title = Pass, fmt.Sprintf("%s authorizes %s's sending servers", d, p.Provider.Name)
		c.Meaning = "Receivers check that the server handing them the mail may send for the envelope sender's domain; your record lists your provider's servers."
	case len(s.Results) == 0:
		c.Verdict, c.Title = Unknown, "the addresses the mail will leave from are not known"
		if p.AddrsErr != "" {
			c.Evidence = append(c.Evidence, p.AddrsErr)
		}
		c.Meaning = "SPF is judged on the sending server's address; without it the result cannot be predicted."
		c.Fix = "Give the address the mail leaves from with --sending-ip, or let check find it: in relay mode it looks the relay up in DNS, in direct mode it asks a DNS echo service (--ip-echo)."
	case worst == "pass":
		c.Verdict, c.Title = Pass, fmt.Sprintf("%s authorizes %s (%s)", d, addrList(p.Addrs), p.AddrsFrom)
		c.Meaning = "Receivers check that the server handing them the mail may send for the envelope sender's domain; it may."
	case worst == "temperror":
		c.Verdict, c.Title = Unknown, "the SPF record of "+d+" could not be read"
		c.Meaning = "A receiver that cannot read it either defers the mail (a temporary error, RFC 7208 §8.6)."
		c.Fix = "Check that the domain's DNS servers answer, then run check again."
	case worst == "fail" || worst == "permerror":
		c.Verdict = Fail
		if worst == "fail" {
			c.Title = fmt.Sprintf("%s does not authorize %s (%s)", d, addrList(p.Addrs), p.AddrsFrom)
			c.Meaning = "The domain's SPF record says mail from this address is forged (\"-all\"). Receivers may refuse it outright (RFC 7208 §8.4) and DMARC counts it as failed."
		} else {
			c.Title = "the SPF record of " + d + " is broken (permerror)"
			c.Meaning = "Receivers cannot evaluate the record (a syntax error, two records, or more than 10 lookups) and treat the mail as unauthenticated (RFC 7208 §8.7)."
		}
		c.Fix = fixRecord()
	default: // softfail, neutral, none
		c.Verdict = Warn
		c.Title = fmt.Sprintf("SPF gives %s for %s (%s)", worst, addrList(p.Addrs), p.AddrsFrom)
		c.Meaning = "Not a pass: the mail is unauthenticated as far as SPF goes. Gmail, Yahoo and Microsoft want SPF to pass for bulk mail, and without an aligned DKIM signature DMARC fails."
		c.Fix = fixRecord()
	}
	// A sending service usually puts its own bounce domain in MAIL FROM
	// (RFC 5321 §4.4: the relay may rewrite the reverse path), which
	// check cannot see from here: say so rather than predict wrongly.
	if p.Mode == config.ModeRelay && p.Provider != nil && p.Provider.Kind == "esp" && c.Verdict != Pass {
		c.Meaning = strings.TrimSpace(c.Meaning + " Note: sending services such as " + p.Provider.Name +
			" usually replace the envelope sender with their own bounce domain unless you set up a custom one (\"custom MAIL FROM\" or \"return path\" in their settings); SPF is then judged for their domain, passes, but is not aligned with your From, and DMARC rests on the DKIM signature they make once your domain is authenticated with them. check judges the envelope sender your config names.")
	}
	return c
}

// spfRank orders results from best to worst, for "the worst address".
func spfRank(r string) int {
	return slices.Index([]string{"pass", "neutral", "none", "softfail", "temperror", "permerror", "fail"}, r)
}

func ipMech(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ip4:" + a.Unmap().String()
	}
	return "ip6:" + a.String()
}

func addrList(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func judgeDKIM(p *AuthPlan, k *auth.DKIMKey) CheckFinding {
	c := CheckFinding{Check: "dkim", Name: "DKIM", Sources: []string{"https://www.rfc-editor.org/rfc/rfc6376#section-3.6.1"}}
	if p.DKIM == nil {
		c.Verdict, c.Title = Warn, "messages will not be signed (no [dkim] in the config)"
		c.Meaning = "Without a DKIM signature DMARC rests on SPF alone: it fails when the envelope sender is not your domain (many relays use their own) and whenever the mail is forwarded. Gmail, Yahoo and Microsoft require DKIM of bulk senders."
		if p.Mode == config.ModeRelay {
			c.Meaning += " Your relay may sign for you; check can't see that, but only a signature for " + domainOf(p.From) + " counts for DMARC."
		}
		c.Fix = "Make a key (openssl genpkey -algorithm ed25519 -out dkim.pem, or RSA 2048 bits), publish its public half at SELECTOR._domainkey." + domainOf(p.From) + ", and add [dkim] with domain, selector and key_file."
		return c
	}
	d := p.DKIM
	name := d.Selector + "._domainkey." + d.Domain
	typ, bits := auth.KeyType(p.DKIMKey), auth.KeyBits(p.DKIMKey)
	keyDesc := typ
	if bits > 0 {
		keyDesc = fmt.Sprintf("%s %d bits", typ, bits)
	}
	c.Evidence = append(c.Evidence, "key_file "+d.KeyFile+": "+keyDesc)
	if k == nil {
		k = &auth.DKIMKey{Name: name, Err: "not looked up"}
	}
	if k.Record != "" {
		c.Evidence = append(c.Evidence, name+": "+k.Record)
	}
	publishFix := fmt.Sprintf("Publish the public half of %s as a TXT record at %s (openssl pkey -in %s -pubout gives it; for Ed25519 the record's p= is the last 32 octets of the DER form, base64).", d.KeyFile, name, d.KeyFile)
	switch {
	case k.Key == nil && k.NotFound:
		c.Verdict, c.Title = Fail, "no DKIM key is published at "+name
		c.Evidence = append(c.Evidence, k.Err)
		c.Meaning = "Receivers look the signature's key up there; finding none, the signature fails (RFC 6376 §6.1.2) and counts for nothing."
		c.Fix = publishFix
		return c
	case k.Key == nil && strings.HasPrefix(k.Err, "no usable key record"):
		c.Verdict, c.Title = Fail, "the key record at "+name+" is broken"
		c.Evidence = append(c.Evidence, k.Err)
		c.Meaning = "Receivers can't read the key, so every signature fails."
		c.Fix = publishFix
		return c
	case k.Key == nil:
		c.Verdict, c.Title = Unknown, "the key record at "+name+" could not be read"
		c.Evidence = append(c.Evidence, k.Err)
		c.Meaning = "A DNS failure; receivers meeting it give a temporary error (RFC 6376 §6.1.2)."
		c.Fix = "Check that the domain's DNS servers answer, then run check again."
		return c
	}
	same, err := auth.SameKey(k.Key, p.DKIMKey)
	switch {
	case k.Key.Revoked():
		c.Verdict, c.Title = Fail, "the key at "+name+" is revoked (empty p=)"
		c.Meaning = "Receivers treat every signature with this selector as failed."
		c.Fix = publishFix + " Or use a selector whose key is published."
		return c
	case err != nil:
		c.Verdict, c.Title = Fail, "the key record at "+name+" is unusable: "+err.Error()
		c.Meaning = "Receivers can't verify signatures with it."
		c.Fix = publishFix
		return c
	case !same:
		c.Verdict, c.Title = Fail, "the key published at "+name+" is not the public half of key_file"
		c.Meaning = "Every signature mailroute makes with key_file will fail verification: receivers see a broken signature, which is worse than none, and DMARC gets no DKIM pass."
		c.Fix = "Publish key_file's public half at " + name + ", or point key_file at the private key whose public half is published there (a key rotated in one place only is the usual cause)."
		return c
	case len(k.Key.Hashes) > 0 && !slices.Contains(k.Key.Hashes, "sha256"):
		c.Verdict, c.Title = Fail, "the key record allows only h="+strings.Join(k.Key.Hashes, ":")+"; mailroute signs with sha256"
		c.Meaning = "Receivers reject a signature whose hash the record does not allow (RFC 6376 §3.6.1 h=)."
		c.Fix = "Remove h= from the record, or set h=sha256."
		return c
	case len(k.Key.Services) > 0 && !slices.Contains(k.Key.Services, "*") && !slices.Contains(k.Key.Services, "email"):
		c.Verdict, c.Title = Fail, "the key record is not for email (s="+strings.Join(k.Key.Services, ":")+")"
		c.Meaning = "Receivers ignore keys not meant for email (RFC 6376 §3.6.1 s=)."
		c.Fix = "Remove s= from the record, or set s=email."
		return c
	case typ == "rsa" && bits < 1024:
		c.Verdict, c.Title = Fail, fmt.Sprintf("the RSA key has %d bits; receivers ignore keys under 1024", bits)
		c.Meaning = "RFC 8301 §3.2: verifiers must not accept signatures from keys under 1024 bits."
		c.Fix = "Make a 2048-bit RSA or an Ed25519 key and publish it."
		return c
	case k.Key.Testing():
		c.Verdict, c.Title = Warn, "the key record says t=y (testing)"
		c.Meaning = "Receivers must treat signed mail as unsigned while t=y is set (RFC 6376 §3.6.1), so DMARC gets no DKIM pass."
		c.Fix = "Remove t=y from the record at " + name + " once signing works."
		return c
	}
	signed := d.Headers
	c.Evidence = append(c.Evidence, "signed header fields: "+strings.Join(signed, ", ")+" (and List-Unsubscribe, List-Unsubscribe-Post, always: RFC 8058 §4)")
	if typ == "rsa" && bits < 2048 {
		c.Verdict, c.Title = Warn, fmt.Sprintf("%s publishes key_file's key, but it has only %d bits", name, bits)
		c.Meaning = "Accepted today; RFC 8301 §3.2 asks for 2048 bits and Google recommends them."
		c.Fix = "Make a 2048-bit RSA (or Ed25519) key under a new selector, publish it, then switch key_file and selector."
		return c
	}
	var missing []string
	for _, h := range []string{"Subject", "Date", "To", "Message-ID"} {
		if !slices.ContainsFunc(signed, func(s string) bool { return strings.EqualFold(s, h) }) {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		c.Verdict, c.Title = Warn, name+" publishes key_file's key, but "+strings.Join(missing, ", ")+" are not signed"
		c.Meaning = "The signature verifies, but fields RFC 6376 §5.4.1 recommends signing could be changed on the way without breaking it."
		c.Fix = "Add them to dkim.headers."
		return c
	}
	c.Verdict, c.Title = Pass, fmt.Sprintf("%s publishes the public half of key_file (%s)", name, keyDesc)
	c.Meaning = "Receivers will find the key and verify mailroute's signatures."
	return c
}

// Likely replies of the large receivers when DMARC fails under p=reject.
const (
	gmailDMARCReply   = "550 5.7.26 Unauthenticated email from %s is not accepted due to domain's DMARC policy"
	outlookDMARCReply = "550 5.7.509 Access denied, sending domain %s does not pass DMARC verification and has a DMARC policy of reject"
)

func judgeDMARC(p *AuthPlan, d *auth.DMARC, o Outcome) CheckFinding {
	c := CheckFinding{Check: "dmarc", Name: "DMARC", Sources: []string{"https://www.rfc-editor.org/rfc/rfc7489#section-6.6.2"}}
	from := d.FromDomain
	if d.Record != "" {
		c.Evidence = append(c.Evidence, "_dmarc."+d.Found+": "+d.Record)
		if d.Found != from {
			c.Evidence = append(c.Evidence, from+" has no record of its own; its organizational domain "+d.OrgDomain+"'s applies (RFC 7489 §6.6.3)")
		}
	} else if d.Err != "" {
		c.Evidence = append(c.Evidence, d.Err)
	}
	c.Evidence = append(c.Evidence, alignmentEvidence(p, d, o)...)
	fix := dmarcFix(p, d, o)
	switch {
	case d.Temporary:
		c.Verdict, c.Title = Unknown, "the DMARC policy of "+from+" could not be read"
		c.Meaning = "Receivers that meet the same DNS failure may defer the mail."
		c.Fix = "Check that the domain's DNS servers answer, then run check again."
	case d.Record == "":
		c.Verdict, c.Title = Warn, from+" publishes no DMARC policy"
		c.Meaning = "Receivers apply their own judgement; Gmail, Yahoo and Microsoft require a DMARC record (p=none is enough) of anyone sending 5,000 or more messages a day to them."
		c.Fix = "Publish a TXT record at _dmarc." + d.OrgDomain + ": \"v=DMARC1; p=none; rua=mailto:dmarc@" + d.OrgDomain + "\" (the reports show who sends as your domain)."
		if !o.DMARCPass() {
			c.Fix = fix + " " + c.Fix
		}
	case o.DMARCPass():
		c.Verdict = Pass
		c.Title = fmt.Sprintf("%s will pass DMARC (p=%s): %s", from, d.Effective, passWords(o))
		c.Meaning = "The From address is what people see; DMARC ties it to an authenticated domain, and this route provides one."
	case d.Effective == dmarc.PolicyReject:
		c.Verdict = Fail
		c.Title = fmt.Sprintf("%s will fail DMARC and its policy is p=reject: receivers will refuse the mail", from)
		c.Meaning = fmt.Sprintf("Neither SPF nor DKIM will pass for a domain aligned with %s, and the domain asks receivers to reject such mail. Gmail answers \"%s\"; Outlook \"%s\".",
			from, fmt.Sprintf(gmailDMARCReply, from), fmt.Sprintf(outlookDMARCReply, from))
		c.Fix = fix
	case d.Effective == dmarc.PolicyQuarantine:
		c.Verdict = Fail
		c.Title = fmt.Sprintf("%s will fail DMARC and its policy is p=quarantine: the mail will go to spam", from)
		c.Meaning = "Neither SPF nor DKIM will pass for a domain aligned with " + from + "; the domain asks receivers to treat such mail as suspicious."
		c.Fix = fix
	default:
		c.Verdict = Warn
		c.Title = fmt.Sprintf("%s will fail DMARC (p=none: delivered, but unauthenticated)", from)
		c.Meaning = "Receivers deliver it under p=none but judge it unauthenticated: Gmail may refuse unauthenticated mail (550 5.7.26), and bulk senders must pass DMARC alignment."
		c.Fix = fix
	}
	if d.Policy != nil && d.Policy.Percent != nil && *d.Policy.Percent < 100 && c.Verdict == Fail {
		c.Evidence = append(c.Evidence, fmt.Sprintf("pct=%d: the policy applies to that share of failing mail", *d.Policy.Percent))
	}
	return c
}

func passWords(o Outcome) string {
	var w []string
	if o.SPFPass && o.SPFAligned {
		w = append(w, "aligned SPF pass")
	}
	if o.DKIMPass && o.DKIMAligned {
		w = append(w, "aligned DKIM pass")
	}
	return strings.Join(w, " and ")
}

func alignmentEvidence(p *AuthPlan, d *auth.DMARC, o Outcome) []string {
	mode := func(m dmarc.AlignmentMode) string {
		if m == dmarc.AlignmentStrict {
			return "strict"
		}
		return "relaxed"
	}
	env := domainOf(p.Envelope)
	spf := fmt.Sprintf("SPF: envelope domain %s, %s alignment with %s: ", env, mode(d.SPFAlignment()), d.FromDomain)
	switch {
	case !o.SPFPass:
		spf += "no SPF pass predicted"
	case o.SPFAligned:
		spf += "pass, aligned"
	default:
		spf += "pass, not aligned"
	}
	dk := "DKIM: not signed"
	if p.DKIM != nil {
		dk = fmt.Sprintf("DKIM: d=%s, %s alignment with %s: ", p.DKIM.Domain, mode(d.DKIMAlignment()), d.FromDomain)
		switch {
		case !o.DKIMPass:
			dk += "no DKIM pass predicted"
		case o.DKIMAligned:
			dk += "pass, aligned"
		default:
			dk += "pass, not aligned"
		}
	}
	return []string{spf, dk}
}

func dmarcFix(p *AuthPlan, d *auth.DMARC, o Outcome) string {
	from := d.FromDomain
	var f []string
	switch {
	case p.DKIM == nil:
		f = append(f, "Sign with DKIM as "+from+" (add [dkim]; the DKIM finding says how).")
	case !o.DKIMPass:
		f = append(f, "Fix DKIM (see the DKIM finding).")
	case !o.DKIMAligned:
		f = append(f, fmt.Sprintf("Sign as %s or a subdomain of %s: dkim.domain is %s.", from, d.OrgDomain, p.DKIM.Domain))
	}
	switch {
	case !o.SPFPass:
		f = append(f, "Or make SPF pass (see the SPF finding).")
	case !o.SPFAligned:
		f = append(f, fmt.Sprintf("Or send with an envelope sender at %s (from in the config).", from))
	}
	return strings.Join(f, " ")
}
