package replies

import (
	"strings"
	"testing"
)

// want is what a case checks: Fault, Permanent and Cause always, Provider
// always too ("" means no catalog entry may match).
type want struct {
	fault     Fault
	permanent bool
	cause     string
	provider  string
}

type replyCase struct {
	name string
	r    Reply
	want want
}

func checkCases(t *testing.T, cases []replyCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Classify(c.r)
			got := want{v.Fault, v.Permanent, v.Cause, v.Provider}
			if got != c.want {
				t.Errorf("Classify(%+v)\n got %+v\nwant %+v", c.r, got, c.want)
			}
			if v.Words == "" || v.Source == "" {
				t.Errorf("verdict without words or source: %+v", v)
			}
			if v.Fault != Unknown && v.Fix == "" {
				t.Errorf("verdict without a fix: %+v", v)
			}
		})
	}
}

// Postfix replies, worded as Postfix 3.x sends them.
func TestClassifyPostfix(t *testing.T) {
	checkCases(t, []replyCase{
		{"virtual user unknown", Reply{550, "5.1.1", "<u@x.invalid>: Recipient address rejected: User unknown in virtual mailbox table", "RCPT"},
			want{Recipient, true, "mailbox-unknown", ""}},
		{"local user unknown", Reply{550, "5.1.1", "<u@x.invalid>: Recipient address rejected: User unknown in local recipient table", "RCPT"},
			want{Recipient, true, "mailbox-unknown", ""}},
		{"anvil rate", Reply{450, "4.7.1", "Error: too much mail from 127.0.0.1", "MAIL"},
			want{Quota, false, "rate", ""}},
		{"anvil rate at RCPT", Reply{450, "4.7.1", "Error: too many recipients from 127.0.0.1", "RCPT"},
			want{Policy, false, "refused", ""}},
		{"relay denied", Reply{554, "5.7.1", "<x@y.invalid>: Relay access denied", "RCPT"},
			want{Policy, true, "relay-denied", ""}},
		{"check_sender_access 5.7.26", Reply{550, "5.7.26", "<s@sender.invalid>: Sender address rejected: unauthenticated mail from this domain is refused", "MAIL"},
			want{Sender, true, "dmarc", ""}},
		{"auth failed", Reply{535, "5.7.8", "Error: authentication failed: authentication failure", "AUTH"},
			want{Auth, true, "auth-failed", ""}},
		{"auth failed, no enhanced", Reply{535, "", "Error: authentication failed: UGFzc3dvcmQ6", "AUTH"},
			want{Auth, true, "auth-failed", ""}},
		{"sender domain not found", Reply{553, "5.1.8", "<s@nowhere.invalid>: Sender address rejected: Domain not found", "MAIL"},
			want{Sender, true, "sender-domain", ""}},
		{"sender domain not found, temporary", Reply{450, "4.1.8", "<s@nowhere.invalid>: Sender address rejected: Domain not found", "RCPT"},
			want{Sender, false, "sender-domain", ""}},
		{"sender login mismatch", Reply{553, "5.7.1", "<s@x.invalid>: Sender address rejected: not logged in", "MAIL"},
			want{Auth, true, "auth-required", ""}},
		{"sender not owned", Reply{553, "5.7.1", "<s@x.invalid>: Sender address rejected: not owned by user u", "RCPT"},
			want{Sender, true, "sender-rejected", ""}},
		{"unknown client hostname", Reply{450, "4.7.25", "Client host rejected: cannot find your hostname, [192.0.2.1]", "RCPT"},
			want{Sender, false, "ptr", ""}},
		{"unknown client hostname, old", Reply{450, "4.7.1", "Client host rejected: cannot find your reverse hostname, [192.0.2.1]", "RCPT"},
			want{Sender, false, "ptr", ""}},
		{"helo", Reply{504, "5.5.2", "<localhost>: Helo command rejected: need fully-qualified hostname", "RCPT"},
			want{Unknown, true, "protocol", ""}},
		{"helo 550 5.7.1", Reply{550, "5.7.1", "<localhost>: Helo command rejected: Host not found", "RCPT"},
			want{Policy, true, "helo", ""}},
		{"greylisted", Reply{450, "4.2.0", "<u@x.invalid>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/x.invalid.html", "RCPT"},
			want{Transient, false, "greylisted", ""}},
		{"rbl", Reply{554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using bl.spamcop.net; Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.1", "RCPT"},
			want{Reputation, true, "blocklist", ""}},
		{"message size", Reply{552, "5.3.4", "Message size exceeds fixed limit", "DATA"},
			want{Message, true, "too-big", ""}},
		{"size at MAIL", Reply{552, "5.3.4", "Message size exceeds fixed limit", "MAIL FROM"},
			want{Message, true, "too-big", ""}},
		{"mailbox full", Reply{452, "4.2.2", "<u@x.invalid>: Recipient address rejected: Mailbox full", "RCPT"},
			want{Recipient, false, "mailbox-full", ""}},
		{"too many recipients", Reply{452, "4.5.3", "Error: too many recipients", "RCPT"},
			want{Transient, false, "too-many-recipients", ""}},
		{"starttls first", Reply{530, "5.7.0", "Must issue a STARTTLS command first", "MAIL"},
			want{Policy, true, "tls-required", ""}},
		{"auth required", Reply{530, "5.7.0", "Authentication required", "MAIL"},
			want{Auth, true, "auth-required", ""}},
		{"null MX sender", Reply{556, "5.7.27", "<s@null.invalid>: Sender address rejected: Domain null.invalid does not accept mail (nullMX)", "MAIL"},
			want{Sender, true, "null-mx", ""}},
		{"null MX recipient", Reply{556, "5.1.10", "<u@null.invalid>: Recipient address rejected: Domain null.invalid does not accept mail (nullMX)", "RCPT"},
			want{Recipient, true, "null-mx", ""}},
	})
}

// Replies with no enhanced code: the basic code and the command decide
// (RFC 5321 §4.2.2, §4.2.3).
func TestClassifyBasicCode(t *testing.T) {
	checkCases(t, []replyCase{
		{"550 at RCPT", Reply{550, "", "Requested action not taken: mailbox unavailable", "RCPT"}, want{Recipient, true, "mailbox-unavailable", ""}},
		{"550 at RCPT, no such user", Reply{550, "", "No such user here", "RCPT"}, want{Recipient, true, "mailbox-unknown", ""}},
		{"550 at MAIL", Reply{550, "", "Sender refused", "MAIL"}, want{Sender, true, "sender-rejected", ""}},
		{"553 at MAIL", Reply{553, "", "Requested action not taken: mailbox name not allowed", "MAIL FROM"}, want{Sender, true, "sender-rejected", ""}},
		{"553 at RCPT", Reply{553, "", "Requested action not taken: mailbox name not allowed", "RCPT TO"}, want{Recipient, true, "bad-address", ""}},
		{"554 at connect", Reply{554, "", "No SMTP service here", "connect"}, want{Policy, true, "refused", ""}},
		{"554 at greeting", Reply{554, "", "mx.example.invalid ESMTP not accepting messages", "greeting"}, want{Policy, true, "refused", ""}},
		{"554 after the dot", Reply{554, "", "Transaction failed", "DATA"}, want{Message, true, "content", ""}},
		{"535", Reply{535, "", "Authentication credentials invalid", "AUTH"}, want{Auth, true, "auth-failed", ""}},
		{"535 no words", Reply{535, "", "", "AUTH"}, want{Auth, true, "auth-failed", ""}},
		{"534", Reply{534, "", "", "AUTH"}, want{Auth, true, "auth-mechanism", ""}},
		{"530", Reply{530, "", "", "MAIL"}, want{Auth, true, "auth-required", ""}},
		{"454 at AUTH", Reply{454, "", "Temporary authentication failure", "AUTH"}, want{Auth, false, "auth-temporary", ""}},
		{"421", Reply{421, "", "mx.example.invalid Service not available, closing transmission channel", "RCPT"}, want{Transient, false, "service-unavailable", ""}},
		{"421 at greeting", Reply{421, "", "Too busy", "greeting"}, want{Transient, false, "service-unavailable", ""}},
		{"421 too many connections", Reply{421, "", "Too many connections from your IP, try again later", "connect"}, want{Quota, false, "rate", ""}},
		{"452 at RCPT", Reply{452, "", "Too many recipients", "RCPT"}, want{Transient, false, "too-many-recipients", ""}},
		{"452 at MAIL", Reply{452, "", "Insufficient system storage", "MAIL"}, want{Transient, false, "storage", ""}},
		{"450 at RCPT", Reply{450, "", "Requested mail action not taken: mailbox unavailable", "RCPT"}, want{Recipient, false, "mailbox-unavailable", ""}},
		{"451", Reply{451, "", "Requested action aborted: local error in processing", "DATA"}, want{Transient, false, "temporary", ""}},
		{"552 at RCPT", Reply{552, "", "Requested mail action aborted: exceeded storage allocation", "RCPT"}, want{Recipient, true, "mailbox-full", ""}},
		{"552 at DATA", Reply{552, "", "Requested mail action aborted: exceeded storage allocation", "DATA"}, want{Message, true, "too-big", ""}},
		{"551", Reply{551, "", "User not local; please try <u@elsewhere.invalid>", "RCPT"}, want{Recipient, true, "mailbox-moved", ""}},
		{"500", Reply{500, "", "Syntax error, command unrecognized", "EHLO"}, want{Unknown, true, "protocol", ""}},
		{"501 at MAIL", Reply{501, "", "Syntax error in parameters or arguments", "MAIL"}, want{Sender, true, "sender-syntax", ""}},
		{"521", Reply{521, "", "mx.example.invalid does not accept mail", "connect"}, want{Recipient, true, "null-mx", ""}},
		{"599", Reply{599, "", "", "DATA"}, want{Unknown, true, "refused", ""}},
		{"499", Reply{499, "", "", "DATA"}, want{Transient, false, "temporary", ""}},
		{"250", Reply{250, "", "OK", "DATA"}, want{Unknown, false, "not-refused", ""}},
		{"250 naming spamhaus", Reply{250, "", "OK, not listed at zen.spamhaus.org", "RCPT"}, want{Unknown, false, "not-refused", ""}},
		{"0", Reply{0, "", "", ""}, want{Unknown, false, "bad-code", ""}},
		{"enhanced code in the text", Reply{550, "", "5.1.1 <u@x.invalid>: Recipient address rejected: User unknown", "RCPT"}, want{Recipient, true, "mailbox-unknown", ""}},
		{"enhanced of another class in the text", Reply{550, "", "4.2.0 later", "MAIL"}, want{Sender, true, "sender-rejected", ""}},
	})
}

// RFC 3463 §3.2-§3.8 and the codes registered since, one case per rule.
func TestClassifyEnhanced(t *testing.T) {
	at := func(code int, enh, cmd string) Reply { return Reply{code, enh, "", cmd} }
	checkCases(t, []replyCase{
		// §3.1 other or undefined: the basic code decides
		{"5.0.0 at RCPT", at(550, "5.0.0", "RCPT"), want{Recipient, true, "mailbox-unavailable", ""}},
		{"4.0.0", at(451, "4.0.0", "DATA"), want{Transient, false, "temporary", ""}},
		// §3.2 address status
		{"5.1.1", at(550, "5.1.1", "RCPT"), want{Recipient, true, "mailbox-unknown", ""}},
		{"5.1.2", at(550, "5.1.2", "RCPT"), want{Recipient, true, "domain-unknown", ""}},
		{"5.1.3", at(501, "5.1.3", "RCPT"), want{Recipient, true, "bad-address", ""}},
		{"5.1.6", at(550, "5.1.6", "RCPT"), want{Recipient, true, "mailbox-moved", ""}},
		{"5.1.7", at(553, "5.1.7", "MAIL"), want{Sender, true, "sender-syntax", ""}},
		{"5.1.8", at(553, "5.1.8", "RCPT"), want{Sender, true, "sender-domain", ""}},
		{"5.1.0 at MAIL", at(550, "5.1.0", "MAIL"), want{Sender, true, "sender-rejected", ""}},
		{"5.1.10", at(556, "5.1.10", "RCPT"), want{Recipient, true, "null-mx", ""}},
		{"5.1.10 from Exchange", Reply{550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "RCPT"}, want{Recipient, true, "mailbox-unknown", ""}},
		{"4.1.1 stays temporary", at(450, "4.1.1", "RCPT"), want{Recipient, false, "mailbox-unknown", ""}},
		// §3.3 mailbox status
		{"5.2.1", at(550, "5.2.1", "RCPT"), want{Recipient, true, "mailbox-disabled", ""}},
		{"4.2.2", at(452, "4.2.2", "RCPT"), want{Recipient, false, "mailbox-full", ""}},
		{"5.2.2", at(552, "5.2.2", "DATA"), want{Recipient, true, "mailbox-full", ""}},
		{"5.2.3", at(552, "5.2.3", "DATA"), want{Message, true, "too-big", ""}},
		// §3.4 mail system status
		{"4.3.0", at(451, "4.3.0", "DATA"), want{Transient, false, "server", ""}},
		{"5.3.4", at(552, "5.3.4", "DATA"), want{Message, true, "too-big", ""}},
		{"4.3.1", at(452, "4.3.1", "MAIL"), want{Transient, false, "server", ""}},
		// §3.5 network and routing status
		{"4.4.2", at(421, "4.4.2", "DATA"), want{Transient, false, "network", ""}},
		{"4.4.5", at(421, "4.4.5", "MAIL"), want{Transient, false, "congestion", ""}},
		{"5.4.4", at(550, "5.4.4", "RCPT"), want{Recipient, true, "unroutable", ""}},
		{"4.4.7", at(451, "4.4.7", "DATA"), want{Transient, false, "network", ""}},
		{"5.4.1 at RCPT", Reply{550, "5.4.1", "Recipient address rejected: Access denied. AS(201806281) [DB5EUR03FT003.eop-EUR03.prod.protection.outlook.com]", "RCPT"}, want{Recipient, true, "unroutable", ""}},
		{"restricted recipient", Reply{550, "5.7.1", "RESOLVER.RST.AuthRequired; authentication required [Stage: CreateMessage]", "RCPT"}, want{Recipient, true, "recipient-restricted", ""}},
		// §3.6 protocol status
		{"4.5.3", at(452, "4.5.3", "RCPT"), want{Transient, false, "too-many-recipients", ""}},
		{"5.5.2", at(501, "5.5.2", "MAIL"), want{Unknown, true, "protocol", ""}},
		// §3.7 content
		{"5.6.0", at(554, "5.6.0", "DATA"), want{Message, true, "content", ""}},
		{"5.6.7", at(553, "5.6.7", "RCPT"), want{Message, true, "utf8", ""}},
		// §3.8 security or policy, RFC 4954, RFC 5248, RFC 7372, RFC 7505
		{"5.7.1 no words", at(550, "5.7.1", "RCPT"), want{Policy, true, "refused", ""}},
		{"5.7.8", at(535, "5.7.8", "AUTH"), want{Auth, true, "auth-failed", ""}},
		{"5.7.9", at(534, "5.7.9", "AUTH"), want{Auth, true, "auth-mechanism", ""}},
		{"5.7.11", at(538, "5.7.11", "AUTH"), want{Auth, true, "tls-required", ""}},
		{"4.7.12", at(432, "4.7.12", "AUTH"), want{Auth, false, "password-transition", ""}},
		{"5.7.13", at(525, "5.7.13", "AUTH"), want{Auth, true, "account-disabled", ""}},
		{"5.7.20", at(550, "5.7.20", "DATA"), want{Sender, true, "dkim", ""}},
		{"5.7.23", at(550, "5.7.23", "MAIL"), want{Sender, true, "spf", ""}},
		{"4.7.24", at(451, "4.7.24", "MAIL"), want{Sender, false, "spf", ""}},
		{"5.7.25", at(550, "5.7.25", "connect"), want{Sender, true, "ptr", ""}},
		{"5.7.26", at(550, "5.7.26", "DATA"), want{Sender, true, "dmarc", ""}},
		{"5.7.27", at(550, "5.7.27", "MAIL"), want{Sender, true, "null-mx", ""}},
		{"4.7.28", at(421, "4.7.28", "DATA"), want{Reputation, false, "reputation", ""}},
		{"5.7.30 at AUTH", at(550, "5.7.30", "AUTH"), want{Auth, true, "basic-auth-disabled", ""}},
		{"5.7.30 at DATA", at(550, "5.7.30", "DATA"), want{Policy, true, "requiretls", ""}},
		// RFC 5321 §4.2.1: the basic code decides permanence, not the class.
		{"550 with 4.x.x", at(550, "4.7.1", "RCPT"), want{Policy, true, "refused", ""}},
		{"450 with 5.x.x", at(450, "5.1.1", "RCPT"), want{Recipient, false, "mailbox-unknown", ""}},
		// Not enhanced codes: the basic code decides.
		{"bad enhanced", at(550, "5.7", "RCPT"), want{Recipient, true, "mailbox-unavailable", ""}},
		{"enhanced class 3", at(550, "3.1.1", "RCPT"), want{Recipient, true, "mailbox-unavailable", ""}},
		{"unregistered subject", at(550, "5.9.9", "MAIL"), want{Sender, true, "sender-rejected", ""}},
		{"unregistered x.7 detail", at(554, "5.7.999", "connect"), want{Policy, true, "refused", ""}},
	})
}

// Unregistered X.7.x codes at AUTH, as Exchange Online sends them (no
// Microsoft page documents 5.7.139; the generic rule reads the words).
func TestClassifyAuthUnregistered(t *testing.T) {
	checkCases(t, []replyCase{
		{"5.7.139 basic auth disabled", Reply{535, "5.7.139", "Authentication unsuccessful, basic authentication is disabled. [BN9PR03CA0000.namprd03.prod.outlook.com]", "AUTH"},
			want{Auth, true, "basic-auth-disabled", ""}},
		{"5.7.139 tenant", Reply{535, "5.7.139", "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.", "AUTH"},
			want{Auth, true, "basic-auth-disabled", ""}},
		{"5.7.139 security defaults", Reply{535, "5.7.139", "Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator.", "AUTH"},
			want{Auth, true, "security-defaults", ""}},
		{"5.7.139 criteria", Reply{535, "5.7.139", "Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.", "AUTH"},
			want{Auth, true, "auth-failed", ""}},
		{"5.7.3", Reply{535, "5.7.3", "Authentication unsuccessful", "AUTH"},
			want{Auth, true, "auth-failed", ""}},
		{"unregistered 4.7.650, reputation words", Reply{451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", "DATA"},
			want{Reputation, false, "reputation", ""}},
		{"unregistered 4.7.999, no words", Reply{451, "4.7.999", "Try again", "DATA"},
			want{Transient, false, "temporary", ""}},
		{"5.7.57 at MAIL", Reply{530, "5.7.57", "Client not authenticated to send mail. Error: 535 5.7.139 Authentication unsuccessful", "MAIL"},
			want{Auth, true, "auth-required", ""}},
	})
}

// Sending quotas under codes RFC 3463 gives other meanings.
func TestClassifyQuotaWords(t *testing.T) {
	checkCases(t, []replyCase{
		{"4.4.5 per second", Reply{452, "4.4.5", "Messages per second limit exceeded", "MAIL"}, want{Quota, false, "rate", ""}},
		{"5.4.5 daily", Reply{550, "5.4.5", "Daily sending quota exceeded", "MAIL"}, want{Quota, true, "daily-quota", ""}},
		{"4.4.5 busy", Reply{421, "4.4.5", "Server busy, try again later.", "MAIL"}, want{Transient, false, "congestion", ""}},
		{"4.5.3 daily", Reply{452, "4.5.3", "Daily message limit exceeded", "MAIL"}, want{Quota, false, "daily-quota", ""}},
		{"4.5.3 recipients", Reply{452, "4.5.3", "Too many recipients, limit is 100", "RCPT"}, want{Transient, false, "too-many-recipients", ""}},
		{"421 4.7.0 connections", Reply{421, "4.7.0", "Too many concurrent SMTP connections; please try again later.", "connect"}, want{Quota, false, "rate", ""}},
		{"421 4.7.0 later", Reply{421, "4.7.0", "Try again later, closing connection.", "EHLO"}, want{Transient, false, "service-unavailable", ""}},
		{"454 4.7.0 at AUTH", Reply{454, "4.7.0", "Temporary authentication failure", "AUTH"}, want{Auth, false, "auth-temporary", ""}},
	})
}

// Provider replies as the providers document them.
func TestClassifyProviders(t *testing.T) {
	gmail := func(code int, enh, text, cmd string) Reply {
		return Reply{code, enh, text + " a1si2.3 - gsmtp", cmd}
	}
	checkCases(t, []replyCase{
		{"gmail dmarc", gmail(550, "5.7.26", "Unauthenticated email from example.com is not accepted due to domain's DMARC policy. Contact the administrator of example.com domain if this was legitimate email.", "DATA"),
			want{Sender, true, "dmarc", "Gmail"}},
		{"gmail unauthenticated", gmail(550, "5.7.26", "This email has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.", "DATA"),
			want{Sender, true, "unauthenticated", "Gmail"}},
		{"gmail unauthenticated, rate limited", gmail(421, "4.7.26", "This email has been rate limited because it is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.", "DATA"),
			want{Sender, false, "unauthenticated", "Gmail"}},
		{"gmail ptr", gmail(550, "5.7.25", "This message was blocked because the sending IP address doesn't have a PTR record, or the forwarding DNS entry doesn't reference the sending IP address.", "DATA"),
			want{Sender, true, "ptr", "Gmail"}},
		{"gmail ptr, old 5.7.1", gmail(550, "5.7.1", "[192.0.2.1] The IP address sending this message does not have a PTR record setup. As a policy, Gmail does not accept messages from IPs with missing PTR records.", "DATA"),
			want{Sender, true, "ptr", "Gmail"}},
		{"gmail ipv6", gmail(550, "5.7.1", "[2001:db8::1] Our system has detected that this message does not meet IPv6 sending guidelines regarding PTR records and authentication.", "DATA"),
			want{Sender, true, "ptr", "Gmail"}},
		{"gmail 4.7.28", gmail(421, "4.7.28", "Gmail has detected an unusual rate of unsolicited email originating from your IP address 192.0.2.1. To protect our users from spam, email sent from your IP address has been temporarily rate limited.", "DATA"),
			want{Reputation, false, "reputation", "Gmail"}},
		{"gmail 451 4.7.28 multi-line, old wording", Reply{451, "4.7.28", "[192.0.2.1      15] Our system has detected an unusual rate of / 4.7.28 unsolicited mail originating from your IP address. To protect our / 4.7.28 users from spam, mail sent from your IP address has been temporarily / 4.7.28 rate limited. - gsmtp", "DATA"},
			want{Reputation, false, "reputation", "Gmail"}},
		{"gmail 421 4.7.0 multi-line with raw prefixes", Reply{421, "", "4.7.0 [192.0.2.1 15] Our system has detected an unusual rate of\n421-4.7.0 unsolicited mail originating from your IP address.\n421 4.7.0 to review our Bulk Email Senders Guidelines. p4si3522070uam.9 - gsmtp", "DATA"},
			want{Reputation, false, "reputation", "Gmail"}},
		{"gmail likely unsolicited", gmail(550, "5.7.1", "This message is likely unsolicited email. To reduce the amount of spam sent to Gmail, this message has been blocked.", "DATA"),
			want{Reputation, true, "spam", "Gmail"}},
		{"gmail app password", gmail(534, "5.7.9", "Application-specific password required. Learn more at / 5.7.9 https://support.google.com/mail/?p=InvalidSecondFactor", "AUTH"),
			want{Auth, true, "app-password", "Gmail"}},
		{"gmail bad credentials", gmail(535, "5.7.8", "Username and Password not accepted. Learn more at / 5.7.8 https://support.google.com/mail/?p=BadCredentials", "AUTH"),
			want{Auth, true, "auth-failed", "Gmail"}},
		{"gmail daily quota", gmail(550, "5.4.5", "Daily user sending limit exceeded. For more information on Gmail sending limits, go to Gmail sending limits.", "DATA"),
			want{Quota, true, "daily-quota", "Gmail"}},
		{"gmail daily quota, old wording", gmail(550, "5.4.5", "Daily sending quota exceeded.", "MAIL"),
			want{Quota, true, "daily-quota", "Gmail"}},
		{"gmail no such user", gmail(550, "5.1.1", "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.", "RCPT"),
			want{Recipient, true, "mailbox-unknown", "Gmail"}},
		{"gmail over quota", gmail(452, "4.2.2", "The email account that you tried to reach is over quota. Please direct the recipient to", "RCPT"),
			want{Recipient, false, "mailbox-full", "Gmail"}},
		{"gmail recipient rate", gmail(450, "4.2.1", "The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time.", "RCPT"),
			want{Recipient, false, "recipient-rate", "Gmail"}},
		{"gmail dkim 5.7.30", gmail(550, "5.7.30", "This message was blocked because it didn't pass DKIM authentication.", "DATA"),
			want{Sender, true, "dkim", "Gmail"}},
		{"gmail starttls", gmail(530, "5.7.0", "Must issue a STARTTLS command first.", "MAIL"),
			want{Policy, true, "tls-required", ""}},
		{"microsoft 5.7.515", Reply{550, "5.7.515", "Access denied, sending domain example.com does not meet the required authentication level.", "DATA"},
			want{Sender, true, "dmarc", "Microsoft"}},
		{"yahoo TSS04", Reply{421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", "MAIL"},
			want{Reputation, false, "complaints", "Yahoo"}},
		{"yahoo 554 5.7.9", Reply{554, "5.7.9", "Message not accepted for policy reasons.  See https://help.yahoo.com/kb/postmaster/SLN7253.html", "DATA"},
			want{Sender, true, "dmarc", "Yahoo"}},
		{"spamhaus", Reply{550, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", "RCPT"},
			want{Reputation, true, "blocklist", "Spamhaus"}},
		{"spamhaus at connect, no enhanced", Reply{554, "", "mx.example.invalid: 192.0.2.1 listed at zen.spamhaus.org", "connect"},
			want{Reputation, true, "blocklist", "Spamhaus"}},
		{"microsoft 5.7.30", Reply{550, "5.7.30", "Basic authentication is not supported for Client Submission.", "AUTH"},
			want{Auth, true, "basic-auth-disabled", "Microsoft"}},
		{"outlook RP-001", Reply{421, "", "RP-001 (BAY004-MC1F24) Unfortunately, some messages from 192.0.2.1 weren't sent. Please try again.", "MAIL"},
			want{Reputation, false, "reputation", "Microsoft"}},
		{"outlook SC-004", Reply{550, "", "SC-004 Mail rejected by Outlook.com for policy reasons. A block has been placed against your IP address because we have received complaints concerning mail coming from that IP address.", "RCPT"},
			want{Reputation, true, "complaints", "Microsoft"}},
		{"outlook OU-001 names Spamhaus", Reply{550, "", "OU-001 Mail rejected by Outlook.com for policy reasons. For more information about this block and to request removal please go to: Spamhaus.", "RCPT"},
			want{Reputation, true, "blocklist", "Microsoft"}},
		{"outlook DY-001", Reply{550, "", "DY-001 Mail rejected by Outlook.com for policy reasons. We generally do not accept email from dynamic IP's", "connect"},
			want{Policy, true, "direct-refused", "Microsoft"}},
		{"yahoo no such user", Reply{554, "", "delivery error: dd This user doesn't have a yahoo.com account (u@yahoo.com) [-5] - mta123.mail.mud.yahoo.com", "DATA"},
			want{Recipient, true, "mailbox-unknown", "Yahoo"}},
		{"yahoo BL21 spamhaus", Reply{553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes", "connect"},
			want{Reputation, true, "blocklist", "Spamhaus"}},
		{"exchange online spamhaus", Reply{550, "5.7.1", "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To request removal from this list see http://www.spamhaus.org/lookup.lasso (AS16012611)", "RCPT"},
			want{Reputation, true, "blocklist", "Spamhaus"}},
		{"exchange online spamhaus DBL", Reply{550, "5.7.1", "Service unavailable, MailFrom domain listed in Spamhaus (S8002)", "MAIL"},
			want{Reputation, true, "blocklist", "Spamhaus"}},
		// Gmail's wording needs Gmail's signature: another server's 5.7.26
		// is classified by the RFC.
		{"5.7.26 elsewhere", Reply{550, "5.7.26", "Unauthenticated email is not accepted due to domain's DMARC policy", "DATA"},
			want{Sender, true, "dmarc", ""}},
	})
}

func TestHoldsRecipient(t *testing.T) {
	for f, holds := range map[Fault]bool{
		Recipient: false, Transient: false, Unknown: false,
		Sender: true, Auth: true, Policy: true, Reputation: true, Quota: true, Message: true,
	} {
		if got := (Verdict{Fault: f}).HoldsRecipient(); got != holds {
			t.Errorf("%s: HoldsRecipient = %v, want %v", f, got, holds)
		}
	}
	if Classify(Reply{550, "5.7.26", "", "DATA"}).HoldsRecipient() != true {
		t.Error("a DMARC refusal must hold the recipient")
	}
	if Classify(Reply{550, "5.1.1", "", "RCPT"}).HoldsRecipient() != false {
		t.Error("an unknown mailbox must not hold the recipient")
	}
}

// Words are for users: no domain names, no trailing period, short.
func TestWordsAreGeneric(t *testing.T) {
	check := func(where, s string) {
		if strings.Contains(s, ".com") || strings.Contains(s, ".invalid") || strings.HasSuffix(s, ".") {
			t.Errorf("%s: %q", where, s)
		}
	}
	for _, e := range Catalog() {
		check(e.ID+" words", e.Words)
		check(e.ID+" fix", e.Fix)
	}
	for _, w := range wordRules {
		check(w.re.String()+" words", w.words)
		check(w.re.String()+" fix", w.fix)
	}
}

func TestParseEnhanced(t *testing.T) {
	for in, ok := range map[string]bool{
		"5.7.26": true, "4.4.5": true, "2.0.0": true, "5.7.515": true, " 5.1.1 ": true,
		"": false, "5.7": false, "5.7.1.1": false, "6.1.1": false, "5.x.1": false, "5.1.1234": false, "5.-1.1": false, "5..1": false, "5.+1.1": false,
	} {
		if _, got := parseEnhanced(in); got != ok {
			t.Errorf("parseEnhanced(%q) ok = %v, want %v", in, got, ok)
		}
	}
}

func TestFlatten(t *testing.T) {
	for in, want := range map[string]string{
		"one line":                                  "one line",
		"first half of / 4.7.28 the sentence":       "first half of the sentence",
		"a\n550-5.7.1 b\n550 5.7.1 c":               "a b c",
		"5.7.1 leading code":                        "leading code",
		"SPF / DKIM":                                "SPF DKIM",
		"  spaced   out / 550-5.7.1   more  words ": "spaced out more words",
		"a\r\n250 b":                                "a b",
		"":                                          "",
	} {
		if got := flatten(in); got != want {
			t.Errorf("flatten(%q) = %q, want %q", in, got, want)
		}
	}
}

// Classify shares the catalog between goroutines; -race checks it.
func TestClassifyConcurrent(t *testing.T) {
	done := make(chan bool)
	for range 8 {
		go func() {
			for range 100 {
				Classify(Reply{550, "5.7.26", "This email has been blocked because the sender is unauthenticated. - gsmtp", "DATA"})
			}
			done <- true
		}()
	}
	for range 8 {
		<-done
	}
}
