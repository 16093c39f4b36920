package advisor

import (
	_ "embed"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
)

// catalogTOML is the provider catalog, kept as a readable, commented TOML
// file beside this one so a person can check every number against its source.
//
//go:embed catalog.toml
var catalogTOML []byte

// Provider is one mail provider from the catalog: how to submit mail to it
// and the limits it publishes.
type Provider struct {
	ID   string `toml:"id" json:"id"`
	Name string `toml:"name" json:"name"`
	// Kind is "mailbox" (personal mail), "business", "esp" (a sending
	// service) or "isp"; it sets how careful the default threads are.
	Kind string `toml:"kind" json:"kind"`
	// Domains are sender domains whose mailboxes this provider hosts.
	Domains []string `toml:"domains" json:"domains,omitempty"`
	// Relay are glob patterns of the provider's submission host names.
	Relay []string `toml:"relay" json:"relay,omitempty"`
	// MX are glob patterns of the provider's MX host names.
	MX         []string     `toml:"mx" json:"mx,omitempty"`
	Auth       string       `toml:"auth" json:"auth,omitempty"`
	Submission []Submission `toml:"submission" json:"submission,omitempty"`
	Limits     []Limit      `toml:"limit" json:"limits,omitempty"`
	Notes      []string     `toml:"notes" json:"notes,omitempty"`
	// SPFInclude is the domain the provider documents for customers' SPF
	// records (include:SPFInclude); its sending servers are not its
	// submission hosts, so check looks for this include instead of
	// evaluating the submission host's address. SPFSource is the page.
	SPFInclude string `toml:"spf_include" json:"spf_include,omitempty"`
	SPFSource  string `toml:"spf_source" json:"spf_source,omitempty"`
}

// Submission is a published submission endpoint.
type Submission struct {
	Host   string `toml:"host" json:"host"`
	Port   int    `toml:"port" json:"port"`
	TLS    string `toml:"tls" json:"tls,omitempty"` // "implicit", "starttls", or "" when unpublished
	Source string `toml:"source" json:"source"`
}

// Limit kinds.
const (
	LimitSessions             = "sessions"               // concurrent connections
	LimitMessages             = "messages"               // messages per Per
	LimitRecipients           = "recipients"             // recipients per Per, each counted every time
	LimitRecipientsPerMessage = "recipients_per_message" // addresses in one message
	LimitMessagesPerSession   = "messages_per_session"   // messages in one connection
)

// Limit is one published number with the page it was read on.
type Limit struct {
	Kind string `toml:"kind" json:"kind"`
	N    int    `toml:"n" json:"n"`
	// Per is the window for messages and recipients ("1m", "24h").
	Per string `toml:"per" json:"per,omitempty"`
	// Applies is "submission" (through the provider; the default) or
	// "inbound" (delivering to its MX hosts in direct mode).
	Applies string `toml:"applies" json:"applies,omitempty"`
	Source  string `toml:"source" json:"source"`
	Note    string `toml:"note" json:"note,omitempty"`
}

// Window is Per as a duration; 0 for limits that are not per time.
func (l Limit) Window() time.Duration {
	d, _ := time.ParseDuration(l.Per)
	return d
}

// Inbound reports whether the limit is about delivering to the provider.
func (l Limit) Inbound() bool { return l.Applies == "inbound" }

// String is the limit in words, e.g. "30 messages per 1m0s".
func (l Limit) String() string {
	what := strings.ReplaceAll(l.Kind, "_", " ")
	switch l.Kind {
	case LimitSessions:
		return fmt.Sprintf("%d concurrent sessions", l.N)
	case LimitMessages, LimitRecipients:
		return fmt.Sprintf("%d %s per %s", l.N, what, perWords(l.Window()))
	}
	return fmt.Sprintf("%d %s", l.N, what)
}

func perWords(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	}
	return d.String()
}

var loadCatalog = sync.OnceValues(func() ([]Provider, error) {
	var c struct {
		Provider []Provider `toml:"provider"`
	}
	md, err := toml.Decode(string(catalogTOML), &c)
	if err != nil {
		return nil, fmt.Errorf("advisor: catalog.toml: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("advisor: catalog.toml: unknown keys %v", und)
	}
	return c.Provider, checkCatalog(c.Provider)
})

// checkCatalog enforces the catalog's rules: every number has a source and
// a valid shape, so a bad edit fails the tests instead of advising wrong.
func checkCatalog(ps []Provider) error {
	ids := map[string]bool{}
	for _, p := range ps {
		if p.ID == "" || p.Name == "" || ids[p.ID] {
			return fmt.Errorf("advisor: catalog.toml: provider %q: missing or duplicate id or name", p.ID)
		}
		ids[p.ID] = true
		for _, l := range p.Limits {
			timed := l.Kind == LimitMessages || l.Kind == LimitRecipients
			switch {
			case l.N <= 0 || !strings.HasPrefix(l.Source, "http"):
				return fmt.Errorf("advisor: catalog.toml: %s: limit %s needs a number and its source URL", p.ID, l.Kind)
			case timed && l.Window() <= 0, !timed && l.Per != "":
				return fmt.Errorf("advisor: catalog.toml: %s: limit %s: bad per %q", p.ID, l.Kind, l.Per)
			case !slices.Contains([]string{LimitSessions, LimitMessages, LimitRecipients, LimitRecipientsPerMessage, LimitMessagesPerSession}, l.Kind):
				return fmt.Errorf("advisor: catalog.toml: %s: unknown limit kind %q", p.ID, l.Kind)
			case l.Applies != "" && l.Applies != "submission" && l.Applies != "inbound":
				return fmt.Errorf("advisor: catalog.toml: %s: applies %q", p.ID, l.Applies)
			}
		}
		if (p.SPFInclude == "") != (p.SPFSource == "") || p.SPFSource != "" && !strings.HasPrefix(p.SPFSource, "http") {
			return fmt.Errorf("advisor: catalog.toml: %s: spf_include needs its source URL (spf_source)", p.ID)
		}
		for _, s := range p.Submission {
			if s.Port <= 0 || !strings.HasPrefix(s.Source, "http") {
				return fmt.Errorf("advisor: catalog.toml: %s: submission %s needs a port and its source", p.ID, s.Host)
			}
		}
		for _, pat := range append(slices.Clone(p.Relay), p.MX...) {
			if _, err := path.Match(pat, ""); err != nil {
				return fmt.Errorf("advisor: catalog.toml: %s: bad pattern %q", p.ID, pat)
			}
		}
	}
	return nil
}

// Catalog returns the embedded provider catalog, shared: callers must not
// modify it. It panics if the embedded file is malformed, which TestCatalog
// rules out.
func Catalog() []Provider {
	ps, err := loadCatalog()
	if err != nil {
		panic(err)
	}
	return ps
}

// Lookup returns the provider with the given id (shared, not to be
// modified), or nil.
func Lookup(id string) *Provider {
	for i, p := range Catalog() {
		if p.ID == id {
			return &Catalog()[i]
		}
	}
	return nil
}

// Match is a catalog match and how it was made.
type Match struct {
	Provider *Provider `json:"provider"`
	// By is "relay host", "sender domain" or "MX host", with the name matched.
	By string `json:"by"`
}

// MatchHost reports whether host matches the glob pattern; names compare
// without case and without a trailing dot.
func MatchHost(pattern, host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	ok, _ := path.Match(strings.ToLower(pattern), host)
	return ok
}

// Find matches what is known about the sending setup against the catalog:
// the relay host first (it is who will count the messages), then the sender
// domain, then the sender domain's MX hosts. Several providers can share a
// host (smtp.gmail.com serves Gmail and Google Workspace): the one that
// lists the sender domain wins, else the one that lists no domains (the
// business offer, where any domain is the customer's own). Nil when nothing
// matches.
func Find(relayHost, fromDomain string, mxHosts []string) *Match {
	ps := Catalog()
	fromDomain = strings.TrimSuffix(strings.ToLower(fromDomain), ".")
	pick := func(cands []int) *Provider {
		best := cands[0]
		for _, i := range cands {
			if fromDomain != "" && slices.Contains(ps[i].Domains, fromDomain) {
				return &ps[i]
			}
			if len(ps[i].Domains) == 0 && len(ps[best].Domains) > 0 {
				best = i
			}
		}
		return &ps[best]
	}
	if relayHost != "" {
		var cands []int
		for i, p := range ps {
			if slices.ContainsFunc(p.Relay, func(pat string) bool { return MatchHost(pat, relayHost) }) {
				cands = append(cands, i)
			}
		}
		if len(cands) > 0 {
			return &Match{Provider: pick(cands), By: "relay host " + relayHost}
		}
	}
	if fromDomain != "" {
		for i, p := range ps {
			if slices.Contains(p.Domains, fromDomain) {
				return &Match{Provider: &ps[i], By: "sender domain " + fromDomain}
			}
		}
	}
	for _, mx := range mxHosts {
		var cands []int
		for i, p := range ps {
			if slices.ContainsFunc(p.MX, func(pat string) bool { return MatchHost(pat, mx) }) {
				cands = append(cands, i)
			}
		}
		if len(cands) > 0 {
			return &Match{Provider: pick(cands), By: "MX host " + mx}
		}
	}
	return nil
}

// FindMX matches one recipient MX host, for limits that apply when
// delivering direct (Applies "inbound").
func FindMX(mxHost string) *Provider {
	ps := Catalog()
	for i, p := range ps {
		if slices.ContainsFunc(p.MX, func(pat string) bool { return MatchHost(pat, mxHost) }) {
			return &ps[i]
		}
	}
	return nil
}

// limits returns the provider's submission (or inbound) limits of a kind.
func (p *Provider) limits(kind string, inbound bool) []Limit {
	if p == nil {
		return nil
	}
	var out []Limit
	for _, l := range p.Limits {
		if l.Kind == kind && l.Inbound() == inbound {
			out = append(out, l)
		}
	}
	return out
}
