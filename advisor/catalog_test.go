package advisor

import (
	"strings"
	"testing"
)

func TestCatalog(t *testing.T) {
	ps, err := loadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	// The providers the issue names must be there.
	for _, id := range []string{"gmail", "google-workspace", "google-smtp-relay", "microsoft-365", "outlook-com", "yahoo",
		"icloud", "zoho", "fastmail", "amazon-ses", "sendgrid", "mailgun", "postmark", "brevo", "mailjet", "comcast", "spectrum"} {
		if Lookup(id) == nil {
			t.Errorf("no provider %q", id)
		}
	}
	sources := 0
	for _, p := range ps {
		for _, l := range p.Limits {
			sources++
			if !strings.HasPrefix(l.Source, "http") {
				t.Errorf("%s %s: source %q", p.ID, l.Kind, l.Source)
			}
		}
	}
	if sources < 20 {
		t.Errorf("only %d sourced limits", sources)
	}
}

func TestCheckCatalogRejects(t *testing.T) {
	for name, p := range map[string]Provider{
		"no source":         {ID: "a", Name: "A", Limits: []Limit{{Kind: LimitMessages, N: 5, Per: "1m"}}},
		"no number":         {ID: "a", Name: "A", Limits: []Limit{{Kind: LimitMessages, Per: "1m", Source: "https://x.invalid"}}},
		"timed without per": {ID: "a", Name: "A", Limits: []Limit{{Kind: LimitMessages, N: 5, Source: "https://x.invalid"}}},
		"per on a count":    {ID: "a", Name: "A", Limits: []Limit{{Kind: LimitSessions, N: 5, Per: "1m", Source: "https://x.invalid"}}},
		"unknown kind":      {ID: "a", Name: "A", Limits: []Limit{{Kind: "bogus", N: 5, Source: "https://x.invalid"}}},
		"bad glob":          {ID: "a", Name: "A", Relay: []string{"smtp[.x"}},
		"no id":             {Name: "A"},
	} {
		if err := checkCatalog([]Provider{p}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMatchHost(t *testing.T) {
	for _, c := range []struct {
		pat, host string
		want      bool
	}{
		{"smtp.gmail.com", "smtp.gmail.com", true},
		{"smtp.gmail.com", "SMTP.Gmail.COM.", true},
		{"smtp.gmail.com", "smtp.gmail.com.evil.invalid", false},
		{"*.mail.protection.outlook.com", "contoso-com.mail.protection.outlook.com", true},
		{"*.mail.protection.outlook.com", "mail.protection.outlook.com", false},
		{"email-smtp.*.amazonaws.com", "email-smtp.eu-west-1.amazonaws.com", true},
		{"email-smtp.*.amazonaws.com", "email-smtp.amazonaws.com", false},
		{"*.google.com", "aspmx.l.google.com", true},
		{"*.google.com", "google.com.invalid", false},
	} {
		if got := MatchHost(c.pat, c.host); got != c.want {
			t.Errorf("MatchHost(%q, %q) = %v", c.pat, c.host, got)
		}
	}
}

func TestFind(t *testing.T) {
	for _, c := range []struct {
		relay, from string
		mx          []string
		want, by    string
	}{
		{"smtp.gmail.com", "gmail.com", nil, "gmail", "relay host"},
		{"smtp.gmail.com", "example.com", nil, "google-workspace", "relay host"},
		{"smtp.gmail.com", "", nil, "google-workspace", "relay host"},
		{"smtp-relay.gmail.com", "example.com", nil, "google-smtp-relay", "relay host"},
		{"contoso-com.mail.protection.outlook.com", "", nil, "microsoft-365", "relay host"},
		{"email-smtp.us-east-1.amazonaws.com", "", nil, "amazon-ses", "relay host"},
		{"smtp.sendgrid.net", "example.com", nil, "sendgrid", "relay host"},
		{"", "hotmail.com", nil, "outlook-com", "sender domain"},
		{"", "example.com", []string{"aspmx.l.google.com"}, "google-workspace", "MX host"},
		{"", "example.com", []string{"example-com.mail.protection.outlook.com"}, "microsoft-365", "MX host"},
		{"", "example.com", []string{"in1-smtp.messagingengine.com"}, "fastmail", "MX host"},
		{"smtp.relay.invalid", "example.com", []string{"mx.example.com"}, "", ""},
	} {
		m := Find(c.relay, c.from, c.mx)
		switch {
		case c.want == "" && m != nil:
			t.Errorf("Find(%q, %q, %v) = %s, want none", c.relay, c.from, c.mx, m.Provider.ID)
		case c.want == "":
		case m == nil || m.Provider.ID != c.want || !strings.HasPrefix(m.By, c.by):
			t.Errorf("Find(%q, %q, %v) = %+v, want %s by %s", c.relay, c.from, c.mx, m, c.want, c.by)
		}
	}
	if p := FindMX("mta7.am0.yahoodns.net"); p == nil || p.ID != "yahoo" {
		t.Errorf("FindMX yahoo: %+v", p)
	}
}
