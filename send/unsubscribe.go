package send

import (
	"bufio"
	"bytes"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"text/template"

	"github.com/emersion/go-message/textproto"
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

// unsubscriber renders the two header fields for each recipient.
type unsubscriber struct {
	url, mailto *template.Template // nil when not set
}

// SetUnsubscribe makes every rendered message carry List-Unsubscribe and,
// with a URL, List-Unsubscribe-Post. Call it once, before Check: the
// templates' fields are checked against the list's columns with the
// message's. nil u sets nothing.
func (t *Template) SetUnsubscribe(u *Unsubscribe) error {
	if u == nil || u.URL == "" && u.Mailto == "" {
		return nil
	}
	for _, h := range t.headers {
		if h.lower == "list-unsubscribe" || h.lower == "list-unsubscribe-post" {
			return fmt.Errorf("%s:%d: the message sets %s and the config has [unsubscribe]; remove one", t.textPath, h.line, h.name)
		}
	}
	us := &unsubscriber{}
	for _, x := range []struct {
		key, value string
		dst        **template.Template
	}{{"unsubscribe.url", u.URL, &us.url}, {"unsubscribe.mailto", u.Mailto, &us.mailto}} {
		if x.value == "" {
			continue
		}
		tm, err := template.New(x.key).Option("missingkey=error").Parse(x.value)
		if err != nil {
			return &ConfigError{Key: x.key, Message: err.Error(), Hint: `fields are written {{.column}}`}
		}
		*x.dst = tm
		t.addRefs(tm.Tree, nil)
	}
	t.unsub = us
	return nil
}

// headers renders the field values for rcpt. Merge values are
// percent-encoded, so a value cannot end the URI or add another.
func (u *unsubscriber) headers(rcpt *Recipient) (list, post string, err error) {
	fields := make(map[string]string, len(rcpt.Fields))
	for k, v := range rcpt.Fields {
		fields[k] = url.QueryEscape(v)
	}
	var uris []string
	var buf bytes.Buffer
	if u.url != nil {
		buf.Reset()
		if err := u.url.Execute(&buf, fields); err != nil {
			return "", "", fmt.Errorf("unsubscribe.url: %w", err)
		}
		s, err := checkUnsubscribeURL(buf.String())
		if err != nil {
			return "", "", fmt.Errorf("unsubscribe.url %q: %w", buf.String(), err)
		}
		uris = append(uris, "<"+s+">")
		// RFC 8058 §3.1: List-Unsubscribe-Post only with an HTTPS URI in
		// List-Unsubscribe; its value is exactly this.
		post = "List-Unsubscribe=One-Click"
	}
	if u.mailto != nil {
		buf.Reset()
		if err := u.mailto.Execute(&buf, fields); err != nil {
			return "", "", fmt.Errorf("unsubscribe.mailto: %w", err)
		}
		s, err := checkUnsubscribeMailto(buf.String())
		if err != nil {
			return "", "", fmt.Errorf("unsubscribe.mailto %q: %w", buf.String(), err)
		}
		uris = append(uris, "<"+s+">")
	}
	// RFC 2369 §2: a comma-separated list of URIs in angle brackets, the
	// preferred one first.
	return strings.Join(uris, ", "), post, nil
}

// checkUnsubscribeURL: RFC 8058 §3.1 requires an HTTPS URI; it goes inside
// <> in a header, so it may hold no space, control character or ">".
func checkUnsubscribeURL(s string) (string, error) {
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

// checkUnsubscribeMailto takes "addr" or "addr?subject=…" (RFC 6068).
func checkUnsubscribeMailto(s string) (string, error) {
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
		{"unsubscribe.url", u.URL, checkUnsubscribeURL, `e.g. "https://example.com/unsubscribe?id={{.id}}"`},
		{"unsubscribe.mailto", u.Mailto, checkUnsubscribeMailto, `e.g. "leave@example.com" or "leave@example.com?subject={{.id}}"`},
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

// HasOneClick reports whether a rendered message has both RFC 8058 header
// fields: List-Unsubscribe with an https URI, and List-Unsubscribe-Post
// saying List-Unsubscribe=One-Click. Folded fields are read unfolded
// (RFC 5322 §2.2.3), as receivers read them.
func HasOneClick(msg []byte) bool {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		return false
	}
	unfold := func(v string) string {
		return strings.ToLower(strings.NewReplacer("\r\n", "", "\n", "").Replace(v))
	}
	return strings.Contains(unfold(h.Get("List-Unsubscribe")), "<https://") &&
		strings.Contains(unfold(h.Get("List-Unsubscribe-Post")), "list-unsubscribe=one-click")
}
