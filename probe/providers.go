package probe

import "strings"

// provider is a large mailbox provider whose MX hosts have a known identity:
// an MX host under one of MXDomains answers, when it is really the
// provider's, with a greeting and a certificate under IdentityDomains. One
// of them answering as nobody of the provider's is corroborating evidence of
// interception (README "Design: interception").
type provider struct {
	Name string
	// MXDomains are the registered domains of the provider's MX host names.
	MXDomains []string
	// IdentityDomains are the registered domains its MX hosts greet with
	// and name in their certificates.
	IdentityDomains []string
	// Sources say where the names come from.
	Sources []string
}

// providers cover the built-in targets (Builtin) and the hosted mail of the
// same companies, which many other domains' MX records point to.
var providers = []provider{
	{
		Name: "Google",
		// gmail.com MX: gmail-smtp-in.l.google.com and alt1..4; Workspace
		// domains: aspmx.l.google.com and alt1..4, or smtp.google.com since
		// April 2023. They greet "mx.google.com ESMTP …", with a certificate
		// for mx.google.com.
		MXDomains:       []string{"google.com", "googlemail.com"},
		IdentityDomains: []string{"google.com", "googlemail.com"},
		Sources: []string{
			"https://support.google.com/a/answer/174125 (Google Workspace MX record values)",
			"https://support.google.com/a/answer/140034 (set up MX records)",
		},
	},
	{
		Name: "Microsoft",
		// outlook.com and hotmail.com MX: *.olc.protection.outlook.com;
		// Microsoft 365 domains: <domain>.mail.protection.outlook.com, and
		// <domain>.<id>.mx.microsoft with DNSSEC/DANE. They greet with a
		// host under protection.outlook.com and present a certificate for
		// *.mail.protection.outlook.com (or mx.microsoft).
		MXDomains:       []string{"outlook.com", "mx.microsoft", "hotmail.com"},
		IdentityDomains: []string{"outlook.com", "mx.microsoft", "microsoft.com", "hotmail.com", "office365.com"},
		Sources: []string{
			"https://learn.microsoft.com/en-us/microsoft-365/admin/get-help-with-domains/create-dns-records-at-any-dns-hosting-provider (MX: <domain>.mail.protection.outlook.com)",
			"https://learn.microsoft.com/en-us/purview/how-smtp-dane-works (MX under mx.microsoft)",
		},
	},
	{
		Name: "Yahoo",
		// yahoo.com MX: mta5/6/7.am0.yahoodns.net; AOL's and Yahoo's
		// regional MX hosts are under yahoodns.net too. Yahoo publishes no
		// list of its MX names: these are what its MX records hold.
		MXDomains:       []string{"yahoodns.net"},
		IdentityDomains: []string{"yahoodns.net", "yahoo.com", "aol.com"},
		Sources: []string{
			"DNS: yahoo.com MX mta5.am0.yahoodns.net, mta6.am0.yahoodns.net, mta7.am0.yahoodns.net",
			"https://senders.yahooinc.com/best-practices/ (Yahoo Sender Hub)",
		},
	},
}

// providerOf returns the provider whose MX host host is, or nil.
func providerOf(host string) *provider {
	reg := registered(host)
	for i := range providers {
		for _, d := range providers[i].MXDomains {
			if reg == d || strings.HasSuffix(strings.ToLower(strings.TrimSuffix(host, ".")), "."+d) {
				return &providers[i]
			}
		}
	}
	return nil
}

// owns reports whether name (a greeting host or certificate name) is one of
// the provider's identities.
func (p *provider) owns(name string) bool {
	name = strings.ToLower(strings.TrimPrefix(strings.TrimSuffix(name, "."), "*."))
	reg := registered(name)
	for _, d := range p.IdentityDomains {
		if reg == d || name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}
