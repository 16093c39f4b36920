// Package probe observes, and never decides: it looks up the DNS facts of
// the recipients' domains and a relay, connects to every endpoint, talks SMTP
// as far as it can without sending mail, and reports what happened on each,
// with the raw evidence. The advisor turns a Report into a recommendation.
package probe

import (
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// Verdict is what happened when connecting to an endpoint (README
// "Design: words").
type Verdict string

const (
	Open        Verdict = "open"        // the target answered
	Refused     Verdict = "refused"     // TCP reset: nothing listens, or a firewall rejects
	Filtered    Verdict = "filtered"    // no answer before the connect timeout: packets dropped
	Unreachable Verdict = "unreachable" // ICMP unreachable / prohibited, or no route
	Intercepted Verdict = "intercepted" // something other than the target answered
	Failed      Verdict = "error"       // anything else; Endpoint.Error has the text
)

// Role says why an endpoint was probed.
type Role string

const (
	RoleMX    Role = "mx"    // a recipient domain's mail exchanger, port 25
	RoleRelay Role = "relay" // a submission server, ports 587/465/2525/25
)

// Report is everything one probe run saw. It is plain data: JSON-serialisable,
// with timings and raw evidence, so the advisor and humans see the same facts.
type Report struct {
	StartedAt time.Time `json:"started_at"`
	Elapsed   Duration  `json:"elapsed"`
	Resolver  []string  `json:"resolver"`
	Helo      string    `json:"helo"`
	Timeout   Duration  `json:"timeout"`
	Domains   []*Domain `json:"domains,omitempty"`
	Relays    []*Relay  `json:"relays,omitempty"`
	// Identity, Login and Measure are filled by the advisor's checks
	// (Request.Identity, Prober.Login, Prober.Measure).
	Identity *Identity    `json:"identity,omitempty"`
	Login    *Login       `json:"login,omitempty"`
	Measure  *Measurement `json:"measure,omitempty"`
	// ResolverLies is set when the DNS server answered falsely about names
	// that certainly exist (checkResolver): its answers are not evidence.
	ResolverLies *ResolverDoubt `json:"resolver_lies,omitempty"`
	// Port25ByFamily counts the MX endpoints' verdicts over IPv4 and over
	// IPv6 apart: networks often block one family and not the other.
	Port25ByFamily []FamilyPort25 `json:"port25_by_family,omitempty"`
	// Offline is set when no DNS server answered and no endpoint could be
	// reached at all: the machine has no working network.
	Offline bool     `json:"offline"`
	Notes   []string `json:"notes,omitempty"`
	Summary []string `json:"summary"`
}

// Domain is a recipient domain: its MX facts and its port-25 endpoints.
type Domain struct {
	Name     string      `json:"name"`
	Builtin  bool        `json:"builtin,omitempty"` // one of the built-in targets (no --to given)
	MX       []MXHost    `json:"mx,omitempty"`
	Implicit bool        `json:"implicit_mx,omitempty"` // no MX record: the domain's own address (RFC 5321 §5.1)
	NullMX   bool        `json:"null_mx,omitempty"`     // RFC 7505: the domain accepts no mail
	DNSError *DNSError   `json:"dns_error,omitempty"`
	Lookup   Duration    `json:"lookup"`
	Ends     []*Endpoint `json:"endpoints,omitempty"`
	// MTASTS is the domain's MTA-STS policy (RFC 8461), when it publishes
	// one: under "enforce", direct delivery must use STARTTLS with a
	// certificate valid for the MX name, to the MX hosts it names.
	MTASTS *MTASTS `json:"mta_sts,omitempty"`
}

// MTASTS is a domain's MTA-STS policy as found, or why it could not be had.
type MTASTS struct {
	ID    string   `json:"id,omitempty"`
	Mode  string   `json:"mode,omitempty"` // enforce, testing or none
	MX    []string `json:"mx,omitempty"`   // the policy's MX patterns
	Error string   `json:"error,omitempty"`
	// Matches reports, per MX host of the domain, whether the policy names it.
	Matches map[string]bool `json:"matches,omitempty"`
}

// MXHost is one MX record with its addresses.
type MXHost struct {
	Host      string   `json:"host"`
	Pref      uint16   `json:"pref"`
	Addrs     []string `json:"addrs,omitempty"`
	AddrError string   `json:"addr_error,omitempty"`
}

// DNSError is a failed lookup in words and in kind.
type DNSError struct {
	Kind    string `json:"kind"` // nxdomain, nodata, servfail, refused, timeout, network, malformed, lying_resolver
	Message string `json:"message"`
	// Seen is, for lying_resolver, what the resolver answered (nxdomain,
	// nodata, or private for addresses no such host has).
	Seen string `json:"seen,omitempty"`
}

// Relay is a submission server and its endpoints.
type Relay struct {
	Host string `json:"host"`
	// Source says how the relay was found: "--relay", "srv", "guess".
	Source string      `json:"source"`
	Addrs  []string    `json:"addrs,omitempty"`
	Error  *DNSError   `json:"dns_error,omitempty"`
	Ends   []*Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is one host + address + port probed, and everything seen there.
type Endpoint struct {
	Role    Role   `json:"role"`
	Host    string `json:"host"`
	Addr    string `json:"addr"`
	Port    int    `json:"port"`
	Pref    uint16 `json:"pref,omitempty"`
	TLSMode string `json:"tls_mode"` // "starttls" (tried when offered) or "implicit"

	Verdict Verdict `json:"verdict"`
	// Error is the connect or conversation error in words.
	Error string `json:"error,omitempty"`
	// Problem is what stopped the SMTP conversation on an open endpoint:
	// a 4xx/5xx greeting, no greeting before the timeout, not SMTP at all,
	// a TLS handshake failure.
	Problem string `json:"problem,omitempty"`
	// ProblemKind classifies Problem for code (the advisor's explanations);
	// ProblemDetail is its evidence: the server's words, or its first line.
	ProblemKind   ProblemKind `json:"problem_kind,omitempty"`
	ProblemDetail string      `json:"problem_detail,omitempty"`
	// Evidence lists the observations behind an intercepted verdict,
	// strongest first: the texts of its Signals that weigh for interception.
	Evidence []string `json:"evidence,omitempty"`
	Notes    []string `json:"notes,omitempty"`
	// Signals are every observation for or against interception on this
	// endpoint, each with its weight, so the verdict can be audited
	// (README "Design: interception"; intercept.go has the rule).
	Signals []Signal `json:"signals,omitempty"`
	// Path is where port 25 stops on the way, for a filtered MX endpoint
	// (trace.go).
	Path *PathTrace `json:"path,omitempty"`

	Banner     *smtpclient.Reply `json:"banner,omitempty"`
	BannerHost string            `json:"banner_host,omitempty"`
	EHLO       map[string]string `json:"ehlo,omitempty"`     // capabilities before TLS, every EHLO line
	EHLOTLS    map[string]string `json:"ehlo_tls,omitempty"` // capabilities after STARTTLS or on implicit TLS, every EHLO line
	AuthPlain  []string          `json:"auth_plain,omitempty"`
	AuthTLS    []string          `json:"auth_tls,omitempty"`
	TLS        *TLSInfo          `json:"tls,omitempty"`

	Timings Timings `json:"timings"`
}

// ProblemKind is what stopped the SMTP conversation on an open endpoint.
type ProblemKind string

const (
	ProblemGreetingRefused ProblemKind = "greeting_refused" // 5xx greeting
	ProblemGreetingBusy    ProblemKind = "greeting_busy"    // 4xx greeting
	ProblemNoGreeting      ProblemKind = "no_greeting"      // silence, or closed before a greeting
	ProblemNotSMTP         ProblemKind = "not_smtp"         // something else answered
	ProblemPlaintextOnTLS  ProblemKind = "plaintext_on_tls" // a plaintext greeting where TLS was expected
	ProblemTLS             ProblemKind = "tls"              // the TLS handshake failed
	ProblemEHLO            ProblemKind = "ehlo"             // EHLO refused or unanswered
	ProblemOther           ProblemKind = "other"
)

// Usable reports whether a message could be handed to this endpoint: it
// answered with a 220 greeting, accepted EHLO, and is not an interceptor.
func (e *Endpoint) Usable() bool {
	return e.Verdict == Open && e.Problem == "" && e.Banner != nil && e.Banner.Code == 220
}

// TLSInfo are the facts of a TLS session and its certificate.
type TLSInfo struct {
	Version     string    `json:"version"`
	Cipher      string    `json:"cipher"`
	ServerName  string    `json:"server_name"` // the name we verified against
	Names       []string  `json:"names"`       // certificate DNS names (SAN; CN when there are none)
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Verified    bool      `json:"verified"`
	VerifyError string    `json:"verify_error,omitempty"`
	// SHA256 is the leaf certificate's fingerprint (hex): the identity that
	// ties one server's endpoints together across addresses and names.
	SHA256 string `json:"sha256,omitempty"`
}

// Signal is one observation for or against interception.
type Signal struct {
	Kind   SignalKind `json:"kind"`
	Weight Weight     `json:"weight"`
	Text   string     `json:"text"`
}

// SignalKind names what was observed.
type SignalKind string

const (
	SignalForeignCert      SignalKind = "foreign_certificate"  // the certificate names another host
	SignalForeignBanner    SignalKind = "foreign_banner"       // the greeting names another host
	SignalVerified         SignalKind = "verified_certificate" // a trusted certificate for the MX name
	SignalConfirmed        SignalKind = "forward_confirmed"    // the foreign name resolves to the address that answered
	SignalSameCert         SignalKind = "same_certificate"     // the certificate of a confirmed server
	SignalSharedIdentity   SignalKind = "shared_identity"      // one unconfirmed identity answers for unrelated domains
	SignalProviderMismatch SignalKind = "provider_identity"    // a known provider's MX answers as someone else
	SignalTiming           SignalKind = "timing"               // port 25's handshake against another port's (timing.go)
)

// Weight is how much a Signal counts. The rule (README "Design: interception"):
// an endpoint is intercepted when it has a Corroborating signal and no
// Genuine one; Note signals never decide alone.
type Weight string

const (
	WeightNote          Weight = "note"          // worth saying, decides nothing alone
	WeightCorroborating Weight = "corroborating" // enough for intercepted, unless ruled out
	WeightGenuine       Weight = "genuine"       // the real server answered: never intercepted
	WeightNone          Weight = "none"          // measured, and says nothing either way
)

// Timings of one endpoint, from the start of its connect.
type Timings struct {
	Connect  Duration `json:"connect"`
	Greeting Duration `json:"greeting,omitempty"`
	TLS      Duration `json:"tls,omitempty"`
	Total    Duration `json:"total"`
}

// Duration marshals as a Go duration string and milliseconds are what people
// compare, so it prints rounded to 0.1 ms.
type Duration time.Duration

func (d Duration) String() string {
	return time.Duration(d).Round(100 * time.Microsecond).String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Endpoints returns every endpoint of the report, domains first.
func (r *Report) Endpoints() []*Endpoint {
	var out []*Endpoint
	for _, d := range r.Domains {
		out = append(out, d.Ends...)
	}
	for _, rl := range r.Relays {
		out = append(out, rl.Ends...)
	}
	return out
}
