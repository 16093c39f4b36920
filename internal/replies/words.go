package replies

import (
	"regexp"
	"slices"
)

// wordRule recognizes wording that mail servers share (Postfix, Exim,
// Exchange, milters) when the codes alone are vague. Provider wording with
// a documentation page belongs in catalog.toml instead.
type wordRule struct {
	re   *regexp.Regexp
	cmds []string // only at these commands; nil for any
	rule
}

// The source of a word rule is the section that defines the vague code it
// refines, plus where the wording comes from.
const (
	srcWords   = "RFC 3463 §3.8 (X.7.1), refined by the server's words"
	srcPostfix = "https://www.postfix.org/postconf.5.html"
)

// wordRules are tried in order; the first match wins, so the narrow ones
// come first ("Sender address rejected: not logged in" is a login problem
// before it is a sender problem).
var wordRules = []wordRule{
	// Exchange's recipient restrictions ("550 5.7.1 RESOLVER.RST.AuthRequired;
	// authentication required"): about this recipient, not our login.
	{re: re(`resolver\.rst\.`), cmds: []string{"RCPT", "DATA"},
		rule: rule{Recipient, "recipient-restricted", "the recipient accepts mail only from certain senders", "remove the address, or ask the recipient to accept mail from the sender's address", srcWords}},
	{re: re(`not logged in|authentication required|must (first )?authenticate|not authenticated|requires? (smtp )?auth`),
		rule: rule{Auth, "auth-required", "the server requires a login before it takes this mail", "set the relay's user and password in the config", srcWords}},
	{re: re(`relay access denied|relaying (is )?denied|relay(ing)? (is )?not (permitted|allowed)|unable to relay|not permitted to relay|we do not relay`),
		rule: rule{Policy, "relay-denied", "the server will not relay this mail: it is not the recipient's server and did not accept this client as a sender", "send through a relay that knows you (log in), or deliver to the recipient's MX", srcPostfix + "#smtpd_relay_restrictions"}},
	{re: re(`gr[ae]ylist`),
		rule: rule{Transient, "greylisted", "the server asks unknown senders to come back later (greylisting)", fixRetryLater, "RFC 5321 §4.5.4.1 (retry), refined by the server's words"}},
	{re: re(`blocked using|listed (at|in|on|by) |black ?list|block ?list|dnsbl|\brbl\b|barracuda|spamcop|sorbs|uceprotect`),
		rule: rule{Reputation, "blocklist", "the sending IP or domain is on a blocklist", "look the sending IP and domain up on the list named in the reply and ask for removal once the cause is fixed", srcWords}},
	{re: re(`daily (sending |user sending |message )?(quota|limit)|per day|(quota|limit)[^.]{0,30}(day|24 ?h)`),
		rule: rule{Quota, "daily-quota", "the daily sending limit is used up", "wait until the limit resets (usually 24 hours) or spread the mailing over more days", srcWords}},
	{re: re(`(due to|because of|poor|low|bad) [^.]{0,20}reputation`),
		rule: rule{Reputation, "reputation", "the server distrusts the sending IP or domain (poor reputation) and limits or refuses its mail", fixReputation, srcWords}},
	{re: re(`too much mail from|too many (concurrent |simultaneous |smtp )*(messages|mails|connections|sessions|errors)|rate.?limit|sending rate|throttl|slow down|exceeded the (rate|number)`),
		rule: rule{Quota, "rate", "the sender is sending faster than the server allows", fixSlowDown, srcPostfix + "#smtpd_client_message_rate_limit"}},
	{re: re(`sender address rejected`), cmds: []string{"MAIL", "RCPT", "DATA"},
		rule: rule{Sender, "sender-rejected", "the server refused the sender's address", "use a sender address whose domain exists and that the server accepts; see `mailroute check`", srcPostfix + "#smtpd_sender_restrictions"}},
	{re: re(`over ?quota|quota exceeded|mailbox (is )?full|mailbox[^.]{0,20}(full|exceeded)|insufficient (storage|space)|out of storage`), cmds: []string{"RCPT", "DATA"},
		rule: rule{Recipient, "mailbox-full", "the recipient's mailbox is full", "nothing to change; if it stays full, remove the address", "RFC 3463 §3.3 (X.2.2), from the server's words"}},
	{re: re(`(account|mailbox|user)[^.]{0,30}(disabled|inactive|suspended|deactivated)`), cmds: []string{"RCPT"},
		rule: rule{Recipient, "mailbox-disabled", "the recipient's mailbox is disabled", fixRecipientGone, "RFC 3463 §3.3 (X.2.1), from the server's words"}},
	{re: re(`(user|recipient|mailbox|address|account)[^.]{0,40}(unknown|not found|does not exist|doesn't exist|no such)|no such (user|mailbox|recipient|address)|unknown (user|recipient|mailbox)|invalid (recipient|mailbox)`), cmds: []string{"RCPT", "DATA"},
		rule: rule{Recipient, "mailbox-unknown", "the recipient's mailbox does not exist", fixRecipientGone, "RFC 3463 §3.2 (X.1.1), from the server's words"}},
	{re: re(`\bdmarc\b`),
		rule: rule{Sender, "dmarc", "DMARC fails for the sender's domain", fixAuthDNS, "RFC 7372 §3 (X.7.26), from the server's words"}},
	{re: re(`\bspf\b`),
		rule: rule{Sender, "spf", "SPF fails for the sender's domain", "add the sending IP or relay to the SPF record of the envelope sender's domain; see `mailroute check`", "RFC 7372 §3 (X.7.23), from the server's words"}},
	{re: re(`\bdkim\b`),
		rule: rule{Sender, "dkim", "the message has no DKIM signature the server accepts", "sign mail with DKIM for the sender's domain (d= aligned with From); see `mailroute check`", "RFC 7372 §3 (X.7.20), from the server's words"}},
	{re: re(`reverse dns|\bptr\b|\brdns\b|reverse (lookup|hostname)|cannot find your (reverse )?hostname`),
		rule: rule{Sender, "ptr", "the sending IP has no matching reverse DNS (PTR) name", "set a PTR record for the sending IP whose name resolves back to it (ask the IP's owner)", srcPostfix + "#reject_unknown_client_hostname"}},
	{re: re(`(helo|ehlo)[^.]{0,30}(rejected|invalid|fully.qualified|not valid)`),
		rule: rule{Policy, "helo", "the server refused the name this client gave in EHLO", "set a fully-qualified host name that resolves (the helo setting)", srcPostfix + "#reject_invalid_helo_hostname"}},
	{re: re(`(tls|starttls|encryption)[^.]{0,30}(required|first|needed)|must issue a starttls`),
		rule: rule{Policy, "tls-required", "the server needs TLS before it takes mail", "connect with TLS (STARTTLS or port 465)", "RFC 3207 §4, from the server's words"}},
	{re: re(`(message|mail) (size|is too (big|large))|too (big|large)|size limit|exceeds[^.]{0,30}size|message length`),
		rule: rule{Message, "too-big", "the message is bigger than the server accepts", fixTooBig, "RFC 3463 §3.4 (X.3.4), from the server's words"}},
	{re: re(`virus|malware|infected|(attachment|file type)[^.]{0,30}(not allowed|blocked|prohibited|banned)`),
		rule: rule{Message, "content", "the server refused the message's content (attachment or virus check)", "check the attachments and links; send without executables or archives", "RFC 3463 §3.7, from the server's words"}},
	{re: re(`spam|unsolicited|junk|reputation|suspicious`),
		rule: rule{Reputation, "reputation", "the server takes this mail for spam or distrusts the sender", fixReputation, srcWords}},
}

// re compiles a case-insensitive pattern.
func re(p string) *regexp.Regexp { return regexp.MustCompile(`(?i)` + p) }

// byWords finds the first word rule that matches r's text at r's command.
func byWords(r Reply) (rule, bool) {
	if r.Text == "" {
		return rule{}, false
	}
	for _, w := range wordRules {
		if w.cmds != nil && !slices.Contains(w.cmds, r.Command) {
			continue
		}
		if w.re.MatchString(r.Text) {
			return w.rule, true
		}
	}
	return rule{}, false
}

var quotaOrLimit = re(`quota|limit`)

// quotaWords finds a sending quota in the words of a code that RFC 3463
// gives another meaning: X.4.5, "mail system congestion" (§3.5), which
// providers use for quotas, and X.5.3, "too many recipients" (§3.6), which
// some relays use for their daily limit. With loose, any "quota" or "limit"
// will do.
func quotaWords(text string, loose bool) (rule, bool) {
	for _, w := range wordRules {
		if w.fault == Quota && w.re.MatchString(text) {
			ru := w.rule
			ru.source = "RFC 3463 §3.5 (X.4.5), refined by the server's words"
			return ru, true
		}
	}
	if loose && quotaOrLimit.MatchString(text) {
		return rule{Quota, "rate", "the sender has reached a sending limit", fixSlowDown, "RFC 3463 §3.5 (X.4.5), refined by the server's words"}, true
	}
	return rule{}, false
}
