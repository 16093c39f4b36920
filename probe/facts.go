package probe

import "time"

// This file holds the report types of the advisor's facts: who this machine
// is on the internet (Identity), whether a login works (Login), and what a
// relay allows (Measurement). The code that fills them is in identity.go,
// login.go and measure.go.

// Identity is this machine as the internet sees it: its public address, the
// name that address has in DNS, and whether blocklists list it. Direct
// delivery needs a forward-confirmed PTR and no listing.
type Identity struct {
	// PublicIP is the address seen by the echo service, "" when unknown.
	PublicIP string `json:"public_ip,omitempty"`
	// Source says which service told us (e.g. "myip.opendns.com A @resolver1.opendns.com").
	Source string `json:"source,omitempty"`
	// PTR are the reverse names of PublicIP.
	PTR []string `json:"ptr,omitempty"`
	// ForwardConfirmed: one PTR name resolves back to PublicIP (FCrDNS).
	ForwardConfirmed bool `json:"forward_confirmed"`
	// ConfirmedName is the PTR name that resolves back, "" if none.
	ConfirmedName string    `json:"confirmed_name,omitempty"`
	Listings      []Listing `json:"dnsbl,omitempty"`
	// Unknown says, in words, what could not be found out and why
	// (offline, echo service unreachable, …); the advisor reports it.
	Unknown []string `json:"unknown,omitempty"`
	// IPv6 is the same over IPv6, when this machine reaches an echo
	// service over IPv6 and its address there differs (identity6.go).
	IPv6 *Identity `json:"ipv6,omitempty"`
}

// Listing is one DNSBL answer for PublicIP.
type Listing struct {
	Zone   string   `json:"zone"`
	Listed bool     `json:"listed"`
	Codes  []string `json:"codes,omitempty"` // the A records returned, e.g. 127.0.0.10
	// Meaning of each code in words, e.g. "PBL: end-user range, must not send direct".
	Meaning []string `json:"meaning,omitempty"`
	// PolicyBlock: listed as an end-user (dynamic) range (Spamhaus PBL).
	PolicyBlock bool `json:"policy_block,omitempty"`
	// QueryRefused: the list refused to answer (Spamhaus 127.255.255.x:
	// public resolver or over quota) — not a listing, but unknown.
	QueryRefused bool   `json:"query_refused,omitempty"`
	Error        string `json:"error,omitempty"`
}

// Login is the result of a login check (AUTH without sending).
type Login struct {
	Host      string   `json:"host"`
	Addr      string   `json:"addr"`
	Port      int      `json:"port"`
	TLSMode   string   `json:"tls_mode"`
	Mechanism string   `json:"mechanism,omitempty"` // the SASL mechanism used
	Offered   []string `json:"offered,omitempty"`   // AUTH mechanisms the server offered
	OK        bool     `json:"ok"`
	// Reply is the server's words on failure, e.g. "535 5.7.8 authentication failed".
	Reply   string   `json:"reply,omitempty"`
	Error   string   `json:"error,omitempty"`
	Elapsed Duration `json:"elapsed"`
}

// Measurement is what a relay allows, measured without sending a message
// (never DATA): every number with the evidence behind it.
type Measurement struct {
	Host    string `json:"host"`
	Addr    string `json:"addr"`
	Port    int    `json:"port"`
	TLSMode string `json:"tls_mode"`

	// SessionLimit is how many sessions were held at once before a
	// refusal; SessionCapped means the cap was reached without one.
	SessionLimit  int    `json:"session_limit"`
	SessionCapped bool   `json:"session_capped"`
	SessionReply  string `json:"session_reply,omitempty"` // the refusal, in the server's words

	// Transactions accepted in one burst (MAIL/RCPT/RSET) before a refusal.
	Transactions       int    `json:"transactions"`
	TransactionsCapped bool   `json:"transactions_capped"`
	TransactionReply   string `json:"transaction_reply,omitempty"`
	// TransactionCommand is the command that was refused: "MAIL" for a
	// message-rate limit (Postfix counts MAIL FROM), "RCPT" for a recipient
	// limit or a relay refusal, "connect" when the session itself failed.
	TransactionCommand string `json:"transaction_command,omitempty"`
	// PerSession is true when a new session was allowed more transactions
	// right after the refusal: the cap is per session, not per time.
	PerSession bool `json:"per_session,omitempty"`

	// Window is how long the relay counts transactions before it accepts
	// again: the time from a cycle's first accepted transaction to the first
	// acceptance after its refusal, so the relay sustains Transactions per
	// Window. It is measured over a second cycle when the budget allows,
	// because the first cycle's count may have begun before our first
	// transaction (Postfix's anvil starts it at the first connection).
	// 0: not found within the budget (see WindowNote).
	Window Duration `json:"window,omitempty"`
	// WindowPrecision: the true window is Window ± WindowPrecision (half
	// the gap between the last refused and the first accepted retry).
	WindowPrecision Duration `json:"window_precision,omitempty"`
	WindowNote      string   `json:"window_note,omitempty"`

	// Latency of command round trips (MAIL, RCPT, RSET), and session setup.
	LatencyMedian Duration `json:"latency_median"`
	LatencyP90    Duration `json:"latency_p90"`
	SetupTLS      Duration `json:"setup_tls,omitempty"`
	SetupAuth     Duration `json:"setup_auth,omitempty"`

	MeasuredAt time.Time `json:"measured_at"`
	Elapsed    Duration  `json:"elapsed"`
	// Evidence: the conversation facts behind the numbers, in order.
	Evidence []string `json:"evidence,omitempty"`
	Error    string   `json:"error,omitempty"`
}
