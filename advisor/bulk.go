package advisor

import (
	"fmt"
	"slices"
	"strings"
)

// The large mailbox providers' rules for bulk senders: Gmail and Yahoo from
// February 2024, Microsoft (Outlook.com, Hotmail, Live) from May 2025. Each
// rule here is one their pages state; the spam-rate limits they also set
// can't be predicted before sending and are only mentioned.

// BulkReceiver is one provider whose rules a list may fall under.
type BulkReceiver struct {
	ID   string
	Name string
	// Domains are its personal-account domains; MX are glob patterns of its
	// MX hosts, for other domains whose mail it receives.
	Domains []string
	MX      []string
	// Threshold is the daily count that makes a bulk sender, 0 when the
	// provider publishes none.
	Threshold int
	// MXCounts: recipients found by MX count toward Threshold. Gmail's
	// rules are for personal accounts only, not Google Workspace domains.
	MXCounts bool
	// Unsubscribe is required (not only recommended) of bulk senders.
	Unsubscribe bool
	// Reply is what the provider answers mail that breaks its rules.
	Reply   string
	Sources []string
}

// BulkReceivers are the providers with published bulk-sender rules.
var BulkReceivers = []BulkReceiver{
	{
		ID: "gmail", Name: "Gmail", Domains: []string{"gmail.com", "googlemail.com"}, MX: []string{"*.google.com", "*.googlemail.com"},
		Threshold: 5000, Unsubscribe: true,
		Reply:   "550 5.7.26 (unauthenticated), 421 4.7.32 / 550 5.7.32 (From not aligned), 421 4.7.28 (rate)",
		Sources: []string{"https://support.google.com/a/answer/81126", "https://support.google.com/a/answer/14229414"},
	},
	{
		ID: "yahoo", Name: "Yahoo", Domains: []string{"yahoo.com", "ymail.com", "rocketmail.com", "aol.com"}, MX: []string{"*.yahoodns.net"},
		MXCounts: true, Unsubscribe: true,
		Reply:   "554 5.7.9 Message not accepted for policy reasons",
		Sources: []string{"https://senders.yahooinc.com/best-practices/"},
	},
	{
		ID: "microsoft", Name: "Outlook.com (Hotmail, Live, MSN)", Domains: []string{"outlook.com", "hotmail.com", "live.com", "msn.com"}, MX: []string{"*.olc.protection.outlook.com"},
		Threshold: 5000, MXCounts: true,
		Reply:   "550 5.7.515 Access denied, sending domain does not meet the required authentication level",
		Sources: []string{"https://techcommunity.microsoft.com/blog/microsoftdefenderforoffice365blog/strengthening-email-ecosystem-outlook%E2%80%99s-new-requirements-for-high%E2%80%90volume-senders/4399730"},
	},
}

// BulkReceiverByDomain returns the provider whose personal accounts are at
// domain, or nil.
func BulkReceiverByDomain(domain string) *BulkReceiver {
	for i, r := range BulkReceivers {
		if slices.Contains(r.Domains, strings.ToLower(domain)) {
			return &BulkReceivers[i]
		}
	}
	return nil
}

// BulkReceiverByMX returns the provider whose MX hosts include host, or nil.
func BulkReceiverByMX(host string) *BulkReceiver {
	for i, r := range BulkReceivers {
		if slices.ContainsFunc(r.MX, func(p string) bool { return MatchHost(p, host) }) {
			return &BulkReceivers[i]
		}
	}
	return nil
}

// BulkCount is a list's recipients at one provider.
type BulkCount struct {
	ByDomain  int // at its personal-account domains
	ByMX      int // at other domains whose MX is the provider's
	MXDomains []string
}

// BulkPlan is what the bulk rules look at besides authentication.
type BulkPlan struct {
	OneClick bool   // List-Unsubscribe with https and List-Unsubscribe-Post (RFC 8058)
	Direct   bool   // direct mode: the PTR of this machine is the receivers' business
	FCrDNS   string // direct mode: "" not checked, else "yes: NAME" or "no: why"
	TLS      string // how the hop to the receiver is protected, in words
	TLSOK    bool
	// Unclassified is how many recipient domains were not looked up (MX
	// look-ups are capped), UnclassifiedRcpts their recipients.
	Unclassified, UnclassifiedRcpts int
}

// JudgeBulk applies each provider's rules to the list's counts.
func JudgeBulk(counts map[string]BulkCount, p BulkPlan, facts *AuthFacts, o Outcome) []CheckFinding {
	var out []CheckFinding
	for _, r := range BulkReceivers {
		n, ok := counts[r.ID]
		if !ok || n.ByDomain+n.ByMX == 0 {
			continue
		}
		counted := n.ByDomain
		if r.MXCounts {
			counted += n.ByMX
		}
		c := CheckFinding{Check: "bulk:" + r.ID, Name: r.Name + " bulk-sender rules", Sources: r.Sources}
		if n.ByDomain > 0 {
			c.Evidence = append(c.Evidence, fmt.Sprintf("%d recipients at %s", n.ByDomain, strings.Join(r.Domains, ", ")))
		}
		if n.ByMX > 0 {
			e := fmt.Sprintf("%d at domains whose MX is %s's (%s)", n.ByMX, r.Name, strings.Join(firstN(n.MXDomains, 5), ", "))
			if !r.MXCounts {
				e += "; Google Workspace domains: the bulk rules are for personal Gmail accounts"
			}
			c.Evidence = append(c.Evidence, e)
		}
		bulk := r.Threshold > 0 && counted >= r.Threshold || r.Threshold == 0 && counted >= 5000
		if !bulk {
			c.Verdict = Pass
			c.Title = fmt.Sprintf("%d recipients: below the bulk-sender line", counted)
			if r.Threshold > 0 {
				c.Title = fmt.Sprintf("%d recipients: below %s's bulk-sender line of %d a day", counted, r.Name, r.Threshold)
			}
			c.Meaning = "The rules for all senders apply: SPF or DKIM, a PTR record for the sending address, TLS. The findings above cover them."
			out = append(out, c)
			continue
		}
		if r.Threshold > 0 {
			c.Title = fmt.Sprintf("%d recipients: %s's rules for senders of %d or more a day apply", counted, r.Name, r.Threshold)
		} else {
			c.Title = fmt.Sprintf("%d recipients: %s's bulk-sender rules apply (it publishes no number; 5,000 a day is the line the others use)", counted, r.Name)
		}
		type rule struct {
			what     string
			met      bool
			unknown  bool // not found out: neither met nor broken
			required bool
			fix      string
		}
		rules := []rule{
			{"SPF passes", o.SPFPass, o.SPFUnknown, true, "see the SPF finding"},
			{"DKIM passes", o.DKIMPass, o.DKIMUnknown, true, "see the DKIM finding"},
			{"a DMARC record is published (p=none is enough)", facts.DMARC != nil && facts.DMARC.Record != "", o.DMARCUnknown, true, "publish _dmarc." + orgOf(facts) + " (see the DMARC finding)"},
			{"the From domain is aligned with SPF or DKIM", o.DMARCPass(), o.SPFUnknown || o.DKIMUnknown, true, "see the DMARC finding"},
			{"one-click unsubscribe (List-Unsubscribe and List-Unsubscribe-Post, RFC 8058)", p.OneClick, false, r.Unsubscribe,
				"add [unsubscribe] with url = \"https://…?id={{.id}}\" (a page that unsubscribes on POST) to the config; send then adds both header fields and signs them"},
			{"TLS on the way to the receiver: " + p.TLS, p.TLSOK, false, true, "use a relay with TLS, or direct.tls \"opportunistic\" or \"starttls\""},
		}
		if p.Direct {
			rules = append(rules, rule{"the sending address has a forward-confirmed PTR (" + p.FCrDNS + ")", strings.HasPrefix(p.FCrDNS, "yes"),
				strings.HasPrefix(p.FCrDNS, "unknown"), true,
				"ask whoever gives you the address (ISP, hosting) for a PTR record naming a host whose A record is that address"})
		}
		var unmet, unknown, fixes []string
		for _, x := range rules {
			mark := "met"
			switch {
			case x.met:
			case x.unknown:
				mark = "unknown"
				unknown = append(unknown, x.what)
			case !x.required:
				mark = "not met (recommended)"
			default:
				mark = "NOT met"
				unmet = append(unmet, x.what)
				if !slices.Contains(fixes, x.fix) {
					fixes = append(fixes, x.fix)
				}
			}
			c.Evidence = append(c.Evidence, mark+": "+x.what)
		}
		if p.Unclassified > 0 {
			c.Evidence = append(c.Evidence, fmt.Sprintf("%d more recipients at %d domains whose MX was not looked up", p.UnclassifiedRcpts, p.Unclassified))
		}
		switch {
		case len(unmet) > 0:
			c.Verdict = Fail
			c.Meaning = fmt.Sprintf("%s refuses or junks bulk mail that breaks these rules (its replies: %s). Not met: %s.", r.Name, r.Reply, strings.Join(unmet, "; "))
			c.Fix = strings.Join(fixes, "; ") + "."
		case len(unknown) > 0:
			c.Verdict = Unknown
			c.Meaning = "Not found out: " + strings.Join(unknown, "; ") + ". The findings above say why."
		default:
			c.Verdict = Pass
			c.Meaning = "Every rule check can see is met; the spam-complaint rate (under 0.3%) is yours to keep."
		}
		out = append(out, c)
	}
	return out
}

func orgOf(f *AuthFacts) string {
	if f.DMARC != nil && f.DMARC.OrgDomain != "" {
		return f.DMARC.OrgDomain
	}
	return "your domain"
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), "…")
	}
	return s
}
