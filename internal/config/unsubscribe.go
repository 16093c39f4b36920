package config

import (
	"fmt"
	"html/template"
	"net/mail"
	"net/url"
	"strings"
)

// Unsubscribe is how recipients leave the list: the List-Unsubscribe header
// field (RFC 2369 §3.2) and, with an https URL, one-click unsubscription
// (RFC 8058), which Gmail and Yahoo require of bulk senders.
type Unsubscribe struct {
	URL    string `toml:"url" doc:"https URL that unsubscribes the recipient when it receives a POST with \"List-Unsubscribe=One-Click\" (RFC 8058); list fields may appear, percent-encoded, e.g. \"https://example.com/u?id={{.id}}\"; send adds List-Unsubscribe and List-Unsubscribe-Post and signs both with DKIM"`
	Mailto string `toml:"mailto" doc:"address that unsubscribes whoever writes to it, e.g. \"leave@example.com\" or \"leave@example.com?subject={{.id}}\"; listed in List-Unsubscribe after the URL (RFC 2369)"`
}

// maxUnsubscribeLen bounds one rendered URI: the header line must stay
// under RFC 5322's 998 octets, and a URI cannot be folded.
const maxUnsubscribeLen = 900

// CheckUnsubscribeURL checks an unsubscribe URL (the config's, or one
// rendered for a recipient): RFC 8058 §3.1 requires an HTTPS URI; it goes
// inside <> in a header, so it may hold no space, control character or ">".
func CheckUnsubscribeURL(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", err
	case u.Scheme != "https":
		return "", fmt.Errorf("one-click unsubscribe needs an https URL (RFC 8058 §3.1)")
	case u.Host == "":
		return "", fmt.Errorf("no host")
	}
	return s, checkURIText(s)
}

// CheckUnsubscribeMailto checks an unsubscribe address: it takes "addr" or
// "addr?subject=…" (RFC 6068) and returns the mailto: URI.
func CheckUnsubscribeMailto(s string) (string, error) {
	s = strings.TrimPrefix(s, "mailto:")
	addr, query, _ := strings.Cut(s, "?")
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" {
		return "", fmt.Errorf("not an address")
	}
	if query != "" {
		if _, err := url.ParseQuery(query); err != nil {
			return "", fmt.Errorf("bad query after ?: %v", err)
		}
	}
	s = "mailto:" + s
	return s, checkURIText(s)
}

func checkURIText(s string) error {
	if len(s) > maxUnsubscribeLen {
		return fmt.Errorf("%d octets; at most %d fit a header line", len(s), maxUnsubscribeLen)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '<' || r == '>' || r == '"' || r == ',' }) {
		return fmt.Errorf("contains a space, a control or non-ASCII character, or one of < > \" , (percent-encode it)")
	}
	return nil
}

// checkUnsubscribe is the config check of [unsubscribe]: the templates
// parse, and a value without fields is already a valid URI.
func (v *validator) checkUnsubscribe(u *Unsubscribe) {
	if u.URL == "" && u.Mailto == "" {
		v.fail("unsubscribe", "neither url nor mailto is set", `set url = "https://example.com/u?id={{.id}}" (one-click, RFC 8058), mailto, or both`)
		return
	}
	for _, x := range []struct {
		key, value string
		check      func(string) (string, error)
		hint       string
	}{
		{"unsubscribe.url", u.URL, CheckUnsubscribeURL, `e.g. "https://example.com/unsubscribe?id={{.id}}"`},
		{"unsubscribe.mailto", u.Mailto, CheckUnsubscribeMailto, `e.g. "leave@example.com" or "leave@example.com?subject={{.id}}"`},
	} {
		if x.value == "" {
			continue
		}
		if _, err := template.New(x.key).Parse(x.value); err != nil {
			v.fail(x.key, err.Error(), "fields are written {{.column}}")
			continue
		}
		// With fields, the rendered value is checked per recipient;
		// here the rest of it.
		sample := templateSample(x.value)
		if _, err := x.check(sample); err != nil {
			v.fail(x.key, err.Error(), x.hint)
		}
	}
}

// templateSample replaces each {{…}} action by "x", so the rest of the
// value can be checked before the list is read.
func templateSample(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return b.String()
		}
		b.WriteString("x")
		s = s[i+j+2:]
	}
}
