// Package config is a mailing's configuration: the Config type, its TOML
// form (decoding with every error at once, defaults, validation, writing a
// commented file, `config describe`) and the values it is written in
// (rates, durations). It is separate from package send so that what only
// reads or writes a config (the advisor, the wizard, `config check`) does
// not pull in the delivery engine, its journal database and DKIM signing.
package config

import "time"

// Mode is how mail leaves this machine.
type Mode string

const (
	// ModeDirect is the built-in engine: straight to each recipient domain's MX on port 25.
	ModeDirect Mode = "direct"
	// ModeRelay hands every message to an external SMTP server (smarthost).
	ModeRelay Mode = "relay"
)

// TLSMode is how a session is protected; the whole delivery path consumes it.
type TLSMode string

const (
	TLSImplicit      TLSMode = "implicit"      // TLS from the first byte (port 465, RFC 8314)
	TLSStartTLS      TLSMode = "starttls"      // STARTTLS required; fail if not offered
	TLSOpportunistic TLSMode = "opportunistic" // STARTTLS when offered; plaintext when not offered, refused (454), or the handshake fails (retried)
	TLSNone          TLSMode = "none"          // never TLS
)

// Config is a mailing's configuration. Every field is described once, in its
// `doc` tag (and `default` tag where it has one); `config describe` and the
// comments of a generated file are made from these tags.
type Config struct {
	Mode     Mode     `toml:"mode" doc:"how mail leaves: \"direct\" (to each recipient's MX on port 25) or \"relay\" (through the [[relay]] servers)" default:"relay"`
	Threads  int      `toml:"threads" doc:"concurrent SMTP sessions in all; ISP relays usually allow 1-5" default:"2"`
	Rate     Rates    `toml:"rate" doc:"at most this many messages in any window of this length for the whole mailing: \"30/m\", \"500/d\", or several at once, [\"30/m\", \"300/h\", \"500/d\"]; each window is kept 1 s longer for counters that keep whole seconds, and what earlier runs sent still counts (see the quota ledger in send --help); empty: no global limit"`
	Helo     string   `toml:"helo" doc:"name sent in EHLO; direct mode wants this machine's forward-confirmed PTR name" default:"this machine's host name"`
	From     string   `toml:"from" doc:"envelope sender (MAIL FROM); default: the address in the message's From header"`
	Resolver string   `toml:"resolver" doc:"DNS server IP[:PORT] for MX look-ups in direct mode; default: /etc/resolv.conf"`
	Relay    []Relay  `toml:"relay" doc:"relay servers; several [[relay]] tables share the work, each with its own threads and rate"`
	Direct   Direct   `toml:"direct" doc:"direct-to-MX delivery settings"`
	Retry    Retry    `toml:"retry" doc:"what to do with temporary (4xx) failures"`
	DKIM     *DKIM    `toml:"dkim" doc:"DKIM signing (RFC 6376); absent: messages are not signed"`
	Evidence Evidence `toml:"evidence" doc:"what the advisor measured to choose these numbers (informational)"`
	// Unsubscribe (unsubscribe.go): one-click unsubscription, which Gmail
	// and Yahoo require of bulk senders.
	Unsubscribe *Unsubscribe `toml:"unsubscribe" doc:"List-Unsubscribe (RFC 2369) and one-click unsubscribe (RFC 8058) header fields; absent: none"`
}

// Relay is one external SMTP server.
type Relay struct {
	Host         string  `toml:"host" doc:"relay host name (must match its TLS certificate)"`
	Port         int     `toml:"port" doc:"relay port: 465 implicit TLS, 587 STARTTLS submission" default:"587"`
	TLS          TLSMode `toml:"tls" doc:"\"implicit\", \"starttls\" or \"none\" (none only with insecure_auth or no auth)" default:"starttls, or implicit on port 465"`
	Auth         string  `toml:"auth" doc:"SASL mechanism: \"plain\", \"login\", \"cram-md5\", \"xoauth2\" or \"none\"" default:"plain when username is set, else none"`
	Username     string  `toml:"username" doc:"login name for AUTH"`
	PasswordEnv  string  `toml:"password_env" doc:"name of the environment variable holding the password (or OAuth token)"`
	PasswordCmd  string  `toml:"password_cmd" doc:"command whose first line of output is the password, run with sh -c"`
	Password     string  `toml:"password" doc:"the password itself; discouraged: accepted with a warning, and only if the file is not readable by others"`
	CAFile       string  `toml:"ca_file" doc:"extra CA certificates (PEM) to trust for this relay, besides the system roots"`
	InsecureAuth bool    `toml:"insecure_auth" doc:"allow AUTH without TLS (the password crosses the network in clear)" default:"false"`
	Threads      int     `toml:"threads" doc:"sessions to this relay; 0: share of the global threads"`
	Rate         Rates   `toml:"rate" doc:"this relay account's own limits, e.g. \"30/m\" or [\"30/m\", \"500/d\"]; kept across runs for the account (host, port, username); empty: only the global rate applies"`
	// MessagesPerSession is for providers that cap the messages one
	// connection may carry (Yahoo 20, SendGrid 5,000): past the cap they
	// refuse, and each refusal would cost a retry.
	MessagesPerSession int `toml:"messages_per_session" doc:"messages one session carries before mailroute opens a new one; set it when the relay caps messages per connection" default:"0: no cap (a new session every 1,000 messages, as MTAs do)"`
}

// Direct holds direct-to-MX settings.
type Direct struct {
	PerDomainThreads int     `toml:"per_domain_threads" doc:"concurrent sessions to one recipient domain; large providers throttle more" default:"2"`
	TLS              TLSMode `toml:"tls" doc:"\"opportunistic\", \"starttls\" (refuse plaintext) or \"none\"" default:"opportunistic"`
	Port             int     `toml:"port" doc:"MX port; 25 everywhere on the internet, other values only for tests" default:"25"`
	MaxMXHosts       int     `toml:"max_mx_hosts" doc:"MX hosts tried per domain before deferring" default:"5"`
	// Networks often block port 25 over one address family and not the
	// other (the probe's port25_by_family): the advisor writes the family
	// that works, so no session waits out the other's timeouts.
	AddressFamily string `toml:"address_family" doc:"which addresses of the MX hosts to connect to: \"any\" (IPv4 first, then IPv6), \"ipv4\" or \"ipv6\"; the advisor sets it when port 25 works over one family only" default:"any"`
	// MTA-STS (RFC 8461) is honoured unless this is set: a domain that
	// publishes an enforce policy gets its mail only over verified TLS to
	// the MX hosts it names.
	IgnoreMTASTS bool   `toml:"ignore_mta_sts" doc:"do not honour recipient domains' MTA-STS policies (RFC 8461); honoured, a domain with an enforce policy gets mail only over verified TLS to the MX hosts it names" default:"false"`
	CAFile       string `toml:"ca_file" doc:"extra CA certificates (PEM) to trust, besides the system roots, for MTA-STS: the policy's HTTPS server and the MX certificates it requires"`
	MTASTSCache  string `toml:"mta_sts_cache" doc:"directory that keeps MTA-STS policies between runs (RFC 8461 §5.1), so that a policy once seen cannot be stripped by an attacker" default:"~/.cache/mailroute/mta-sts ($XDG_CACHE_HOME if set)"`
}

// Address families for direct.address_family.
const (
	FamilyAny  = "any"
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// Retry is the schedule for temporary failures.
type Retry struct {
	Attempts   int      `toml:"attempts" doc:"tries per recipient before it stays deferred" default:"5"`
	Backoff    Duration `toml:"backoff" doc:"wait after the first temporary failure; doubles each time, with jitter" default:"30s"`
	MaxBackoff Duration `toml:"max_backoff" doc:"longest wait between two tries" default:"10m"`
	Within     Duration `toml:"within" doc:"give up retrying within this run after this long; deferred recipients are retried by a re-run" default:"30m"`
	// Unreachable bounds the silence of a run that cannot reach its
	// relay (or, in direct mode, its DNS resolver): the first failure is
	// said at once, and the run ends after this long without a session.
	Unreachable Duration `toml:"unreachable" doc:"how long a relay (in direct mode: the DNS resolver) may stay unreachable before the run ends, every recipient not sent still pending; a relay name that does not exist ends it at once" default:"2m"`
}

// DKIM signs outgoing messages.
type DKIM struct {
	Domain   string   `toml:"domain" doc:"signing domain (d=)"`
	Selector string   `toml:"selector" doc:"selector (s=); the public key is at SELECTOR._domainkey.DOMAIN"`
	KeyFile  string   `toml:"key_file" doc:"PEM private key (RSA or Ed25519), readable only by you"`
	Headers  []string `toml:"headers" doc:"header fields to sign" default:"From, To, Subject, Date, Message-ID, MIME-Version, Content-Type"`
}

// Evidence records what the advisor measured; send does not act on it.
type Evidence struct {
	MeasuredAt     time.Time `toml:"measured_at" doc:"when the numbers below were measured"`
	Source         string    `toml:"source" doc:"what was probed, e.g. \"smtp.relay.example:465\""`
	SessionLimit   int       `toml:"session_limit" doc:"concurrent sessions the relay accepted before refusing"`
	BurstLimit     int       `toml:"burst_limit" doc:"transactions the relay accepted in a burst"`
	Window         Duration  `toml:"window" doc:"length of the relay's rate window, if one was found"`
	LatencyMedian  Duration  `toml:"latency_median" doc:"median command round trip"`
	PublishedLimit string    `toml:"published_limit" doc:"the provider's published limit and its source"`
	Notes          []string  `toml:"notes" doc:"the advisor's reasons, in words"`
}

// Rate is a message count per window, written "30/m", "1/s", "500/d" or "10/5m".
// The zero Rate means no limit.
type Rate struct {
	N      int
	Window time.Duration
}

// Duration is a time.Duration written as a Go duration string ("30s", "10m").
type Duration time.Duration
