// Package replies says what an SMTP server's refusal means for a bulk
// sender: whose fault it is (this recipient, the sender's domain, the
// credentials, the sending IP's reputation, a quota, the message, or a
// passing problem), whether it is permanent, and what to do about it.
//
// Three layers decide, most specific first:
//
//  1. the catalog (catalog.toml): replies that providers document, such as
//     Gmail's "550 5.7.26" or Yahoo's "[TSS04]", each with the page that
//     documents it;
//  2. the RFC 3463 enhanced status code (class.subject.detail), with the
//     codes RFC 4954, RFC 5248, RFC 7372, RFC 7505 and others registered
//     since, refined by well-known wording when the code is vague (x.7.1
//     says only "not authorized", the words say "Relay access denied");
//  3. the RFC 5321 basic code and the command it answered, when there is no
//     enhanced code or it says nothing useful.
//
// Permanent always follows the basic code (RFC 5321 §4.2.1): a 550 with a
// 4.x.x enhanced code is still permanent, a 450 with 5.x.x still temporary.
package replies

import (
	"regexp"
	"strconv"
	"strings"
)

// Fault says whose problem a refusal is: it decides what the sender does.
type Fault string

const (
	Recipient  Fault = "recipient"  // this address (x.1.x destination mailbox/system, x.2.x mailbox): fail it if permanent, retry it if temporary
	Sender     Fault = "sender"     // the sender's address or domain: SPF, DKIM, DMARC, PTR, null MX, bad sender syntax (x.1.7, x.1.8, x.7.23-27)
	Auth       Fault = "auth"       // login or credentials (535, 534, 530, x.7.8, x.7.9, x.7.11, x.7.139, x.7.30 ...)
	Policy     Fault = "policy"     // the server refuses this client or relaying, not this recipient (e.g. 554 5.7.1 Relay access denied)
	Reputation Fault = "reputation" // blocklists (Spamhaus...), spam reputation, complaint volume (Yahoo TSS04, Gmail 4.7.28, 5.7.1 unsolicited)
	Quota      Fault = "quota"      // sending limits: rate, daily quota (x.4.5 where a provider uses it for quotas, Gmail 5.4.5, Postfix anvil "450 4.7.1 Error: too much mail from")
	Message    Fault = "message"    // the message itself: too big (x.3.4, 552 5.2.3?), content refused (x.6.x)
	Transient  Fault = "transient"  // the server or network; try again later (4.3.x, 4.4.x, 421 without a more specific cause)
	Unknown    Fault = "unknown"
)

// Reply is what a server said. Command is the stage: "connect", "greeting",
// "EHLO", "AUTH", "MAIL", "RCPT", "DATA" (the final reply after the dot is
// also "DATA").
type Reply struct {
	Code     int
	Enhanced string // "5.7.26" or ""
	Text     string // the server's words (multi-line joined with " / ")
	Command  string
}

// Verdict is what a reply means.
type Verdict struct {
	Fault     Fault
	Permanent bool   // 5yz (RFC 5321 §4.2.1: the basic code rules, not the enhanced class)
	Cause     string // short stable key: "mailbox-unknown", "mailbox-full", "dmarc", "spf", "dkim", "ptr", "auth-failed", "app-password", "basic-auth-disabled", "relay-denied", "blocklist", "reputation", "rate", "daily-quota", "too-big", "content", "null-mx", ...
	Provider  string // "Gmail", "Microsoft", "Yahoo", "Spamhaus", "" when no catalog entry matched
	Words     string // plain words for a user, no domain names inserted (the caller adds them), e.g. "DMARC fails for the sender's domain"
	Fix       string // what to do, e.g. "publish SPF and DKIM records for the sender's domain that align with From; see `mailroute check`"
	Source    string // URL of the page that documents the reply (catalog entries); for RFC-only rules, e.g. "RFC 3463 §3.2"
}

// HoldsRecipient reports whether the reply is not the recipient's fault
// (Fault != Recipient && Fault != Transient && Fault != Unknown): the
// recipient must stay pending, never failed, and the target's circuit
// breaker counts it.
func (v Verdict) HoldsRecipient() bool {
	return v.Fault != Recipient && v.Fault != Transient && v.Fault != Unknown
}

// Classify says what r means. Catalog entries (provider replies) win over
// the generic RFC 3463 rules; without an enhanced code the basic code and
// the command decide (550 at RCPT = recipient; 550/553 at MAIL = sender; 554
// at connect/greeting = policy; 535 = auth; 421 = transient; 452 at RCPT =
// transient too-many-recipients).
func Classify(r Reply) Verdict {
	r.Command = normCommand(r.Command)
	if r.Enhanced == "" {
		r.Enhanced = leadingEnhanced(r.Code, r.Text)
	}
	r.Text = flatten(r.Text)
	if len(r.Text) > maxText {
		r.Text = r.Text[:maxText]
	}
	st, ok := parseEnhanced(r.Enhanced)
	if !ok {
		st = status{}
	}
	var v Verdict
	if e := matchCatalog(r, st, ok); e != nil && r.Code >= 400 && r.Code <= 599 {
		v = e.verdict()
	} else {
		v = classifyRFC(r, st, ok)
	}
	// RFC 5321 §4.2.1: "5yz Permanent Negative Completion reply", whatever
	// the enhanced class says (RFC 3463 §2 asks the two to agree, and some
	// servers do not).
	v.Permanent = r.Code >= 500 && r.Code <= 599
	return v
}

// maxText caps the words looked at. RFC 5321 §4.5.3.1.5 limits a reply line
// to 512 octets and real replies are a few lines (Gmail's longest, under
// 1000 octets); a hostile server's megabyte of text must not make every
// classification slow.
const maxText = 2048

// status is a parsed RFC 3463 §2 enhanced status code,
// class "." subject "." detail.
type status struct {
	class, subject, detail int
}

// parseEnhanced parses "5.7.26". RFC 3463 §2: class is 2, 4 or 5; subject
// is 1 to 3 digits, detail 1 to 3 digits, no leading zeros required or
// forbidden. Anything else is not an enhanced code.
func parseEnhanced(s string) (status, bool) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 {
		return status{}, false
	}
	var n [3]int
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return status{}, false
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || strings.ContainsAny(p, "+-") {
			return status{}, false
		}
		n[i] = v
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return status{}, false
	}
	return status{n[0], n[1], n[2]}, true
}

func (s status) String() string {
	return strconv.Itoa(s.class) + "." + strconv.Itoa(s.subject) + "." + strconv.Itoa(s.detail)
}

// leadingEnhanced finds an enhanced code at the start of the text, for
// callers that did not split it off: RFC 2034 puts it first on every
// line of the reply. Its class must agree with the basic code, else it is
// taken for ordinary words (an IP address, a version number).
func leadingEnhanced(code int, text string) string {
	f, _, _ := strings.Cut(strings.TrimSpace(text), " ")
	f = strings.TrimRight(f, ":,;")
	st, ok := parseEnhanced(f)
	if !ok || st.class != code/100 {
		return ""
	}
	return st.String()
}

// lineStart is what servers repeat at the start of each line of a
// multi-line reply: the code with its "-" or " " (RFC 5321 §4.2.1) and the
// enhanced code (RFC 2034).
var lineStart = regexp.MustCompile(`^(\d{3}[ -])?([245]\.\d{1,3}\.\d{1,3}( |$))?`)

// flatten joins the lines of a reply (joined by the caller with " / " or
// left with newlines) into one, without the codes repeated on each line, so
// that a phrase broken across lines still matches.
func flatten(text string) string {
	lines := strings.FieldsFunc(strings.ReplaceAll(text, " / ", "\n"), func(r rune) bool { return r == '\n' || r == '\r' })
	for i, l := range lines {
		l = strings.TrimSpace(l)
		lines[i] = l[len(lineStart.FindString(l)):]
	}
	return strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
}

// normCommand maps the many ways callers name a stage onto the names the
// rules use ("MAIL FROM" is "MAIL", "end of data" is "DATA").
func normCommand(c string) string {
	u := strings.ToUpper(strings.TrimSpace(c))
	switch {
	case u == "CONNECT", u == "BANNER":
		return "connect"
	case u == "GREETING":
		return "greeting"
	case strings.HasPrefix(u, "MAIL"):
		return "MAIL"
	case strings.HasPrefix(u, "RCPT"):
		return "RCPT"
	case strings.HasPrefix(u, "DATA"), u == "BDAT", u == "END OF DATA", u == ".":
		return "DATA"
	case strings.HasPrefix(u, "AUTH"):
		return "AUTH"
	case u == "EHLO", u == "HELO", u == "LHLO":
		return "EHLO"
	}
	return u
}
