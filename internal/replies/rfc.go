package replies

import "strconv"

// rule is one generic classification: what the RFCs (or well-known wording)
// say a reply means, without a provider.
type rule struct {
	fault  Fault
	cause  string
	words  string
	fix    string
	source string
}

func (r rule) verdict() Verdict {
	return Verdict{Fault: r.fault, Cause: r.cause, Words: r.words, Fix: r.fix, Source: r.source}
}

// Words and fixes shared by several rules.
const (
	fixRecipientGone = "remove the address from the list; it will not accept mail"
	fixRetryLater    = "nothing to change; mailroute tries again later"
	fixAuthDNS       = "publish SPF and DKIM records for the sender's domain that align with From, and a DMARC record; see `mailroute check`"
	fixLogin         = "check the user name and password for the relay (an app password where the provider asks for one)"
	fixSlowDown      = "send more slowly or in smaller batches; lower the rate and threads in the config"
	fixReputation    = "stop the mailing; check the sending IP and domain on blocklists and with the provider's postmaster tools, send only to people who asked, then resume slowly"
	fixTooBig        = "make the message smaller: link to large files instead of attaching them"
)

// classifyRFC is what the standards say about r when no catalog entry
// matched. Wording is consulted first when the enhanced code is vague
// (absent, x.0.0, x.7.0, x.7.1 ...): "554 5.7.1 Relay access denied" is a
// relay refusal, which 5.7.1 alone ("delivery not authorized") cannot say;
// and after the enhanced code when no RFC registered it.
func classifyRFC(r Reply, st status, ok bool) Verdict {
	if r.Code < 400 || r.Code > 599 {
		// RFC 5321 §4.2.1: 2yz and 3yz are not refusals; anything else is
		// not a reply code at all.
		if r.Code >= 200 && r.Code < 400 {
			return Verdict{Fault: Unknown, Cause: "not-refused", Words: "the server did not refuse", Source: "RFC 5321 §4.2.1"}
		}
		return Verdict{Fault: Unknown, Cause: "bad-code", Words: "the server's reply code is not valid SMTP", Fix: "look at the server's words", Source: "RFC 5321 §4.2"}
	}
	if !ok || vague(st) {
		if ru, hit := byWords(r); hit {
			return ru.verdict()
		}
	}
	if ok {
		if ru, hit := byEnhanced(r, st); hit {
			return ru.verdict()
		}
		// A code no RFC registered (Exchange's 4.7.650): the words before
		// the bare three digits.
		if ru, hit := byWords(r); hit && !vague(st) {
			return ru.verdict()
		}
	}
	return byBasic(r).verdict()
}

// vague reports whether an enhanced code is too general to say whose fault
// a refusal is, so that the words must decide: the "other or undefined"
// details of RFC 3463 §3.1-§3.8, and x.7.1 "delivery not authorized, message
// refused", which servers use for relaying, blocklists, spam and sender
// checks alike.
func vague(st status) bool {
	if st.detail == 0 {
		return true
	}
	return st.subject == 7 && st.detail == 1
}

// byEnhanced applies the RFC 3463 §3 meaning of the subject and detail
// (class 4 or 5 alike: the basic code says permanent or not).
func byEnhanced(r Reply, st status) (rule, bool) {
	src := func(sec string) string { return "RFC 3463 " + sec }
	switch st.subject {
	case 0: // §3.1 other or undefined status
		return rule{}, false
	case 1: // §3.2 address status
		if r.Command == "MAIL" || st.detail == 7 || st.detail == 8 {
			return senderAddress(st, src("§3.2")), true
		}
		switch st.detail {
		case 1:
			return rule{Recipient, "mailbox-unknown", "the recipient's mailbox does not exist", fixRecipientGone, src("§3.2 (X.1.1)")}, true
		case 2:
			return rule{Recipient, "domain-unknown", "the recipient's domain does not exist or does not receive mail", fixRecipientGone, src("§3.2 (X.1.2)")}, true
		case 3, 4:
			return rule{Recipient, "bad-address", "the recipient's address is not valid", "correct or remove the address", src("§3.2")}, true
		case 6:
			return rule{Recipient, "mailbox-moved", "the recipient's mailbox has moved, with no forwarding address", "ask the recipient for their new address", src("§3.2 (X.1.6)")}, true
		case 10:
			// Exchange Online sends "550 5.1.10 RESOLVER.ADR.RecipientNotFound"
			// for an unknown mailbox, not for a null MX.
			if unknownWords.MatchString(r.Text) {
				return rule{Recipient, "mailbox-unknown", "the recipient's mailbox does not exist", fixRecipientGone, src("§3.2, from the server's words")}, true
			}
			// RFC 7505 (and its IANA registration): the recipient's
			// domain publishes a null MX, it receives no mail at all.
			return rule{Recipient, "null-mx", "the recipient's domain receives no mail (null MX)", fixRecipientGone, "RFC 7505"}, true
		}
		return rule{Recipient, "bad-address", "the server refused the recipient's address", "check the address", src("§3.2")}, true
	case 2: // §3.3 mailbox status
		switch st.detail {
		case 1:
			return rule{Recipient, "mailbox-disabled", "the recipient's mailbox is disabled", fixRecipientGone, src("§3.3 (X.2.1)")}, true
		case 2:
			return rule{Recipient, "mailbox-full", "the recipient's mailbox is full", "nothing to change; if it stays full, remove the address", src("§3.3 (X.2.2)")}, true
		case 3:
			// A per-mailbox size limit, but the message is what is too big.
			return rule{Message, "too-big", "the message is bigger than the recipient's server allows", fixTooBig, src("§3.3 (X.2.3)")}, true
		}
		return rule{Recipient, "mailbox", "the recipient's mailbox refused the message", "check the address", src("§3.3")}, true
	case 3: // §3.4 mail system status
		switch st.detail {
		case 3:
			return rule{Message, "unsupported-feature", "the server cannot handle a feature the message needs (8-bit, UTF-8 addresses ...)", "send the message as 7-bit MIME with ASCII addresses", src("§3.4 (X.3.3)")}, true
		case 4:
			return rule{Message, "too-big", "the message is bigger than the server accepts", fixTooBig, src("§3.4 (X.3.4)")}, true
		}
		return rule{Transient, "server", "the receiving mail system has a problem", fixRetryLater, src("§3.4")}, true
	case 4: // §3.5 network and routing status
		if st.detail == 5 {
			if ru, hit := quotaWords(r.Text, true); hit {
				return ru, true
			}
			return rule{Transient, "congestion", "the receiving mail system is congested", fixRetryLater, src("§3.5 (X.4.5)")}, true
		}
		if r.Code >= 500 && (st.detail == 4 || r.Command == "RCPT") {
			// A permanent routing failure for this address: X.4.4 "unable to
			// route", or any X.4.x given to RCPT (Exchange Online's "550
			// 5.4.1 Recipient address rejected: Access denied" when the
			// address is not in its directory).
			return rule{Recipient, "unroutable", "the recipient's address or domain cannot be routed to", fixRecipientGone, src("§3.5")}, true
		}
		return rule{Transient, "network", "a network or routing problem on the way to the recipient", fixRetryLater, src("§3.5")}, true
	case 5: // §3.6 mail delivery protocol status
		switch st.detail {
		case 3:
			// Some relays send their daily limit as X.5.3.
			if ru, hit := quotaWords(r.Text, false); hit {
				return ru, true
			}
			// RFC 5321 §4.5.3.1.10: too many recipients is 452, retry the
			// rest in another transaction.
			return rule{Transient, "too-many-recipients", "the server takes fewer recipients per message", "nothing to change; mailroute sends the rest in another transaction", src("§3.6 (X.5.3)")}, true
		case 6:
			return rule{Auth, "auth-protocol", "the login exchange was too long for the server", "use another login mechanism", "RFC 4954 §6"}, true
		}
		return rule{Unknown, "protocol", "the server did not understand a command", "report this to the mailroute developers with the server's words", src("§3.6")}, true
	case 6: // §3.7 message content or media status
		if st.detail >= 7 && st.detail <= 10 {
			// RFC 6531 / RFC 6533 (X.6.7-X.6.10): internationalized mail.
			return rule{Message, "utf8", "the server cannot take UTF-8 addresses or headers", "use ASCII addresses and headers for this recipient", "RFC 6531"}, true
		}
		return rule{Message, "content", "the server refused the message's content or format", "check the message's format and attachments", src("§3.7")}, true
	case 7: // §3.8 security or policy status
		return securityPolicy(r, st)
	}
	return rule{}, false
}

// senderAddress is an X.1.x code about the sender: X.1.7 and X.1.8 always
// (RFC 3463 §3.2), any X.1.x when it answers MAIL.
func senderAddress(st status, src string) rule {
	switch st.detail {
	case 7, 3:
		return rule{Sender, "sender-syntax", "the sender's address is not valid", "correct the From/envelope sender address in the config", src}
	case 8, 2:
		return rule{Sender, "sender-domain", "the sender's domain does not exist or cannot receive replies", "use a sender domain with MX or A records; see `mailroute check`", src}
	}
	return rule{Sender, "sender-rejected", "the server refused the sender's address", "use a sender address the server accepts", src}
}

// securityPolicy is RFC 3463 §3.8 and the X.7.x codes registered since.
func securityPolicy(r Reply, st status) (rule, bool) {
	s := "RFC 3463 §3.8 (X.7." + strconv.Itoa(st.detail) + ")"
	authCode := st.detail >= 8 && st.detail <= 14 || st.detail == 30
	if (r.Command == "AUTH" || r.Code == 535) && !authCode {
		// An answer to AUTH is about the login whatever the detail says:
		// Exchange sends "535 5.7.3 Authentication unsuccessful".
		return authRefusal(r), true
	}
	switch st.detail {
	case 0, 1: // vague; the words did not decide
		if r.Code == 421 {
			return rule{}, false // RFC 5321 §3.8: closing for now
		}
		if r.Command == "RCPT" || r.Command == "DATA" || r.Command == "MAIL" || r.Command == "connect" || r.Command == "greeting" || r.Command == "EHLO" {
			return rule{Policy, "refused", "the server refuses mail from this client", "read the server's words; the receiving site's postmaster can say why", s}, true
		}
		return rule{Policy, "refused", "the server refused by policy", "read the server's words", s}, true
	case 2:
		return rule{Policy, "list-expansion", "the server does not allow mail to this mailing list", "remove the address", s}, true
	case 3, 4, 5, 6, 7:
		return rule{Message, "security", "the message's signing or encryption was refused", "send the message without the security feature the server refused", s}, true
	case 8: // RFC 4954 §6
		return rule{Auth, "auth-failed", "the relay refused the user name or password", fixLogin, "RFC 4954 §6 (X.7.8)"}, true
	case 9:
		return rule{Auth, "auth-mechanism", "the relay refuses this login mechanism as too weak", "use TLS and a mechanism the relay offers (PLAIN or LOGIN over TLS, XOAUTH2)", "RFC 4954 §6 (X.7.9)"}, true
	case 10, 11: // RFC 5248 X.7.10, RFC 4954 §6 X.7.11
		return rule{Auth, "tls-required", "the relay needs TLS before the login", "connect with TLS (port 465, or STARTTLS on 587)", "RFC 4954 §6 (X.7.11)"}, true
	case 12:
		return rule{Auth, "password-transition", "the account needs a password change before it can log in", "sign in to the account once and change the password as asked", "RFC 4954 §6 (X.7.12)"}, true
	case 13:
		return rule{Auth, "account-disabled", "the sending account is disabled", "contact the relay's administrator to enable the account", "RFC 5248 (X.7.13)"}, true
	case 14:
		return rule{Auth, "trust-required", "the relay needs a trust relationship with this client", "contact the relay's administrator", "RFC 5248 (X.7.14)"}, true
	case 15:
		return rule{Policy, "priority", "the message's priority is too low for the server", "send without a priority", "RFC 6710"}, true
	case 16:
		return rule{Message, "too-big", "the message is too big for its priority", fixTooBig, "RFC 6710"}, true
	case 17, 18, 19: // RFC 7293: Require-Recipient-Valid-Since
		return rule{Recipient, "owner-changed", "the recipient's mailbox or domain has a new owner", fixRecipientGone, "RFC 7293"}, true
	case 20, 21, 22: // RFC 7372 §3: DKIM
		return rule{Sender, "dkim", "the message has no DKIM signature the server accepts", "sign mail with DKIM for the sender's domain (d= aligned with From); see `mailroute check`", "RFC 7372 §3 (X.7.20-X.7.22)"}, true
	case 23, 24: // RFC 7372 §3: SPF
		return rule{Sender, "spf", "SPF fails for the sender's domain", "add the sending IP or relay to the SPF record of the envelope sender's domain; see `mailroute check`", "RFC 7372 §3 (X.7.23, X.7.24)"}, true
	case 25: // RFC 7372 §3: reverse DNS
		return rule{Sender, "ptr", "the sending IP has no matching reverse DNS (PTR) name", "set a PTR record for the sending IP whose name resolves back to it (ask the IP's owner)", "RFC 7372 §3 (X.7.25)"}, true
	case 26: // RFC 7372 §3: which checks failed is not said; in practice DMARC.
		return rule{Sender, "dmarc", "the message fails the server's authentication checks (SPF, DKIM, DMARC)", fixAuthDNS, "RFC 7372 §3 (X.7.26)"}, true
	case 27: // RFC 7505: the sender's domain receives no mail
		return rule{Sender, "null-mx", "the sender's domain publishes a null MX, so it cannot receive replies", "use a sender domain that receives mail", "RFC 7505"}, true
	case 28: // IANA registry: "mail flood detected"
		return rule{Reputation, "reputation", "the server sees an unusual rate of unwanted mail from this sender", fixReputation, "IANA SMTP Enhanced Status Codes (X.7.28)"}, true
	case 29: // RFC 8617: ARC
		return rule{Sender, "arc", "ARC validation failed for the message", fixAuthDNS, "RFC 8617 (X.7.29)"}, true
	case 30:
		// RFC 8689 registers X.7.30 as "REQUIRETLS support required";
		// Microsoft uses it for "basic authentication is not supported"
		// (the catalog has that wording). At AUTH it can only be the login.
		if r.Command == "AUTH" {
			return rule{Auth, "basic-auth-disabled", "the relay no longer takes a plain password", "log in with OAuth 2.0 or use another relay", "RFC 8689 (X.7.30)"}, true
		}
		return rule{Policy, "requiretls", "the server needs REQUIRETLS support on the way to the recipient", "send without REQUIRETLS", "RFC 8689"}, true
	}
	return rule{}, false
}

var (
	unknownWords     = re(`not found|unknown|does not exist|no such`)
	basicAuthOff     = re(`basic auth(entication)? (is )?(disabled|not supported)|smtpclientauthentication is disabled`)
	securityDefaults = re(`security defaults`)
)

// authRefusal is a refused login whose X.7.x code is not one of RFC 4954's
// or RFC 5248's, such as Exchange Online's "535 5.7.139 Authentication
// unsuccessful, ..." (no Microsoft page documenting 5.7.139 was found, so
// this is a generic rule on RFC 4954 §6 and the server's words, not a
// catalog entry).
func authRefusal(r Reply) rule {
	const s = "RFC 4954 §6, refined by the server's words"
	text := r.Text
	switch {
	case r.Code == 454:
		return rule{Auth, "auth-temporary", "the relay could not check the login for now", fixRetryLater, s}
	case basicAuthOff.MatchString(text):
		return rule{Auth, "basic-auth-disabled", "the relay no longer takes a plain password for SMTP login", "log in with OAuth 2.0, or ask the relay's administrator to allow SMTP AUTH for the account", s}
	case securityDefaults.MatchString(text):
		return rule{Auth, "security-defaults", "the organization's security settings block SMTP login with a password", "ask the administrator to allow SMTP AUTH for the account, or log in with OAuth 2.0", s}
	}
	return rule{Auth, "auth-failed", "the relay refused the login", fixLogin, s}
}

// byBasic is the RFC 5321 §4.2.2/§4.2.3 meaning of the three digits and the
// command they answered: the last word when nothing more specific decided.
func byBasic(r Reply) rule {
	const s = "RFC 5321 §4.2.3"
	c := r.Command
	switch r.Code {
	case 421:
		return rule{Transient, "service-unavailable", "the server is closing the connection for now", fixRetryLater, "RFC 5321 §3.8"}
	case 450:
		if c == "RCPT" {
			return rule{Recipient, "mailbox-unavailable", "the recipient's mailbox is unavailable for now", fixRetryLater, s}
		}
	case 452:
		if c == "RCPT" {
			return rule{Transient, "too-many-recipients", "the server takes fewer recipients per message", "nothing to change; mailroute sends the rest in another transaction", "RFC 5321 §4.5.3.1.10"}
		}
		return rule{Transient, "storage", "the server is short of storage", fixRetryLater, s}
	case 454:
		if c == "AUTH" {
			return rule{Auth, "auth-temporary", "the relay could not check the login for now", fixRetryLater, "RFC 4954 §6"}
		}
	case 432:
		return rule{Auth, "password-transition", "the account needs a password change before it can log in", "sign in to the account once and change the password as asked", "RFC 4954 §6"}
	case 530:
		return rule{Auth, "auth-required", "the relay requires a login", "set the relay's user and password in the config", "RFC 4954 §6"}
	case 534:
		return rule{Auth, "auth-mechanism", "the relay refuses this login mechanism as too weak", "use TLS and a mechanism the relay offers", "RFC 4954 §6"}
	case 535:
		return rule{Auth, "auth-failed", "the relay refused the user name or password", fixLogin, "RFC 4954 §6"}
	case 538:
		return rule{Auth, "tls-required", "the relay needs TLS before the login", "connect with TLS (port 465, or STARTTLS on 587)", "RFC 4954 §6"}
	case 500, 502, 503, 504, 555:
		return rule{Unknown, "protocol", "the server did not accept a command", "report this to the mailroute developers with the server's words", s}
	case 501:
		switch c {
		case "MAIL":
			return rule{Sender, "sender-syntax", "the server refused the sender's address as malformed", "correct the envelope sender address", s}
		case "RCPT":
			return rule{Recipient, "bad-address", "the recipient's address is not valid", "correct or remove the address", s}
		}
		return rule{Unknown, "protocol", "the server did not accept a command's arguments", "report this to the mailroute developers with the server's words", s}
	case 521, 556:
		// RFC 7504: the host or domain does not accept mail at all.
		return rule{Recipient, "null-mx", "the recipient's domain does not accept mail", fixRecipientGone, "RFC 7504"}
	case 550:
		switch c {
		case "RCPT":
			return rule{Recipient, "mailbox-unavailable", "the recipient's mailbox is unavailable", fixRecipientGone, s}
		case "MAIL":
			return rule{Sender, "sender-rejected", "the server refused the sender's address", "use a sender address the server accepts", s}
		case "DATA":
			return rule{Message, "content", "the server refused the message", "read the server's words; check the content and the sender's authentication", s}
		}
		return rule{Policy, "refused", "the server refuses mail from this client", "read the server's words", s}
	case 551:
		return rule{Recipient, "mailbox-moved", "the recipient is not local to this server", "ask the recipient for their current address", s}
	case 552:
		if c == "RCPT" {
			return rule{Recipient, "mailbox-full", "the recipient's mailbox is full", "nothing to change; if it stays full, remove the address", s}
		}
		return rule{Message, "too-big", "the message is bigger than the server accepts", fixTooBig, s}
	case 553:
		if c == "RCPT" {
			return rule{Recipient, "bad-address", "the recipient's address is not allowed", "correct or remove the address", s}
		}
		return rule{Sender, "sender-rejected", "the server refused the sender's address", "use a sender address the server accepts", s}
	case 554:
		if c == "DATA" {
			return rule{Message, "content", "the server refused the message", "read the server's words; check the content and the sender's authentication", s}
		}
		return rule{Policy, "refused", "the server refuses mail from this client", "read the server's words; the receiving site's postmaster can say why", s}
	}
	if r.Code < 500 {
		// RFC 5321 §4.2.1: 4yz, "the action may be requested again".
		return rule{Transient, "temporary", "the server refused for now", fixRetryLater, "RFC 5321 §4.2.1"}
	}
	return rule{Unknown, "refused", "the server refused", "read the server's words", "RFC 5321 §4.2.1"}
}
