package message

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"text/template"

	"github.com/emersion/go-message/textproto"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/list"
)

// unsubscriber renders the two header fields for each recipient.
type unsubscriber struct {
	url, mailto *template.Template // nil when not set
}

// SetUnsubscribe makes every rendered message carry List-Unsubscribe and,
// with a URL, List-Unsubscribe-Post. Call it once, before Check: the
// templates' fields are checked against the list's columns with the
// message's. nil u sets nothing.
func (t *Template) SetUnsubscribe(u *config.Unsubscribe) error {
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
			return &config.Error{Key: x.key, Message: err.Error(), Hint: `fields are written {{.column}}`}
		}
		*x.dst = tm
		t.addRefs(tm.Tree, nil)
	}
	t.unsub = us
	return nil
}

// headers renders the field values for rcpt. Merge values are
// percent-encoded, so a value cannot end the URI or add another.
func (u *unsubscriber) headers(rcpt *list.Recipient) (list, post string, err error) {
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
		s, err := config.CheckUnsubscribeURL(buf.String())
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
		s, err := config.CheckUnsubscribeMailto(buf.String())
		if err != nil {
			return "", "", fmt.Errorf("unsubscribe.mailto %q: %w", buf.String(), err)
		}
		uris = append(uris, "<"+s+">")
	}
	// RFC 2369 §2: a comma-separated list of URIs in angle brackets, the
	// preferred one first.
	return strings.Join(uris, ", "), post, nil
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
