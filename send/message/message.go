// Package message makes a mailing's messages: it loads the message
// template (header fields and a text body, with an optional HTML body),
// renders it for each recipient, adds the List-Unsubscribe fields
// (unsubscribe.go) and signs the result with DKIM (dkim.go). It is
// separate from package send so that what only renders or inspects
// messages (`check`) does not pull in the delivery engine, and so that
// the engine sees a message as bytes to deliver.
package message

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/emersion/go-message"
	"github.com/mailroute/mailroute/internal/address"
	"github.com/mailroute/mailroute/send/list"
)

// Template is a message with merge fields, loaded once and rendered per
// recipient. Fields are written {{.name}}, where name is a column of the
// list; {{index . "first name"}} reaches names that are not identifiers.
// A Template is immutable and safe for concurrent Render calls.
type Template struct {
	textPath, htmlPath string
	headers            []tmplHeader
	body               *template.Template
	html               *htmltemplate.Template // nil: text only
	refs               []fieldRef             // every field used, for Check
	hasTo              bool
	literalFrom        string        // the From address when From has no merge field
	unsub              *unsubscriber // List-Unsubscribe fields; nil: none (unsubscribe.go)
}

type tmplHeader struct {
	name    string             // as written
	lower   string             // for comparisons
	literal string             // the final value, when it has no merge field
	tmpl    *template.Template // nil when literal
	fields  []string           // fields the value uses: checked for line breaks
	line    int
}

type fieldRef struct {
	name  string
	where string // "msg.txt:4:10"
}

// Rendered is one recipient's message.
type Rendered struct {
	From      string // the From header's address: the envelope-sender candidate
	MessageID string // without <>
	Data      []byte // the whole message, CRLF line endings, DKIM-signed if asked
}

// RenderOptions are the per-mailing inputs of Render.
type RenderOptions struct {
	Now             time.Time // Date header; zero: time.Now()
	MessageIDDomain string    // right side of Message-ID; "": the From address's domain
	Signer          *Signer   // nil: not signed
	// Buf, when not nil, is reused for Data (appended to Buf[:0]): a caller
	// that renders message after message into the same slot saves an
	// allocation per message. Data then lives only until the next Render
	// with the same Buf.
	Buf []byte
}

// generatedHeaders are written by Render for every message; a template that
// sets them is refused at load rather than sending the same Message-ID to a
// whole list. Bcc would show its addresses to every recipient of a one-to-one
// mailing, and Return-Path belongs to the final MTA (RFC 5321 §4.4).
var generatedHeaders = map[string]string{
	"date":                      "Render sets it to the sending time",
	"message-id":                "Render makes a unique one per message",
	"mime-version":              "Render sets it",
	"content-type":              "Render sets it (text/plain, or multipart/alternative with an HTML file)",
	"content-transfer-encoding": "Render chooses 7bit or quoted-printable",
	"bcc":                       "every recipient would see it; add the address to the list instead",
	"return-path":               "the receiving server adds it; set the envelope sender with from in the config",
}

// singleHeaders may appear at most once (RFC 5322 §3.6).
var singleHeaders = []string{"from", "sender", "reply-to", "to", "cc", "subject", "in-reply-to", "references"}

// LoadTemplate reads the text template (RFC 5322 header fields, an empty
// line, the body) and, if htmlPath is not "", an HTML body that makes the
// message multipart/alternative. From and Subject are required. Errors name
// file:line.
func LoadTemplate(textPath, htmlPath string) (*Template, error) {
	data, err := os.ReadFile(textPath)
	if err != nil {
		return nil, err
	}
	t, err := ParseTemplate(textPath, string(data))
	if err != nil {
		return nil, err
	}
	t.htmlPath = htmlPath
	if htmlPath != "" {
		h, err := os.ReadFile(htmlPath)
		if err != nil {
			return nil, err
		}
		t.html, err = htmltemplate.New(htmlPath).Option("missingkey=error").Parse(string(h))
		if err != nil {
			return nil, err
		}
		t.addRefs(t.html.Tree, nil)
	}
	return t, nil
}

// ParseTemplate is LoadTemplate's text part from a string; name stands for
// the file in errors.
func ParseTemplate(name, text string) (*Template, error) {
	text = strings.ReplaceAll(strings.TrimPrefix(text, "\ufeff"), "\r\n", "\n")
	t := &Template{textPath: name}
	bodyLine, err := t.parseHeaders(text)
	if err != nil {
		return nil, err
	}
	lines := strings.SplitAfterN(text, "\n", bodyLine)
	body := ""
	if len(lines) == bodyLine {
		body = lines[bodyLine-1]
	}
	if t.body, err = parseText(name, body, bodyLine); err != nil {
		return nil, err
	}
	t.addRefs(t.body.Tree, nil)
	return t, nil
}

// parseText parses a template whose text starts at line first of the file.
// A leading comment spanning first-1 lines makes the parser's line numbers
// (in errors and ErrorContext) those of the file; it renders as nothing.
func parseText(name, text string, first int) (*template.Template, error) {
	pad := "{{/*" + strings.Repeat("\n", first-1) + "*/}}"
	return template.New(name).Option("missingkey=error").Parse(pad + text)
}

// parseHeaders reads the header block and returns the line the body starts on.
func (t *Template) parseHeaders(text string) (int, error) {
	lines := strings.Split(text, "\n")
	seen := map[string]bool{}
	var cur *tmplHeader
	var values []string
	bodyLine := 0
	for i, l := range lines {
		n := i + 1
		if l == "" && i < len(lines)-1 { // the last "" is just the file's final newline
			bodyLine = n + 1
			break
		}
		if l == "" {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			if cur == nil {
				return 0, fmt.Errorf("%s:%d: the first line starts with a space; it must be a header like \"From: ...\"", t.textPath, n)
			}
			values[len(values)-1] += l // RFC 5322 §2.2.3: unfolding removes only the line break
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !validHeaderName(name) {
			return 0, fmt.Errorf("%s:%d: %q is not a header line; headers look like \"Subject: Hello\" and end at the first empty line", t.textPath, n, l)
		}
		lower := strings.ToLower(name)
		if why, ok := generatedHeaders[lower]; ok {
			return 0, fmt.Errorf("%s:%d: remove the %s header: %s", t.textPath, n, name, why)
		}
		if seen[lower] && slices.Contains(singleHeaders, lower) {
			return 0, fmt.Errorf("%s:%d: a second %s header; RFC 5322 §3.6 allows one", t.textPath, n, name)
		}
		seen[lower] = true
		t.headers = append(t.headers, tmplHeader{name: name, lower: lower, line: n})
		cur = &t.headers[len(t.headers)-1]
		values = append(values, value)
	}
	if bodyLine == 0 {
		return 0, fmt.Errorf("%s: no empty line after the headers; the body starts after one", t.textPath)
	}
	for _, req := range []string{"from", "subject"} {
		if !seen[req] {
			return 0, fmt.Errorf("%s: no %s header", t.textPath, strings.ToUpper(req[:1])+req[1:])
		}
	}
	t.hasTo = seen["to"]
	for i := range t.headers {
		h := &t.headers[i]
		if !strings.Contains(values[i], "{{") {
			v, err := headerValue(h.lower, values[i])
			if err != nil {
				return 0, fmt.Errorf("%s:%d: %s: %w", t.textPath, h.line, h.name, err)
			}
			h.literal = v
			continue
		}
		tm, err := parseText(t.textPath, values[i], h.line)
		if err != nil {
			return 0, err
		}
		h.tmpl = tm
		t.addRefs(tm.Tree, &h.fields)
	}
	for _, h := range t.headers {
		if h.lower == "from" && h.tmpl == nil {
			a, err := parseOneAddress(h.literal)
			if err != nil {
				return 0, fmt.Errorf("%s:%d: From: %v", t.textPath, h.line, err)
			}
			t.literalFrom = a
		}
	}
	return bodyLine, nil
}

// validHeaderName: RFC 5322 §2.2, printable ASCII except colon; and no merge
// fields, since a field name from data could be anything.
func validHeaderName(s string) bool {
	if s == "" || strings.Contains(s, "{{") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// addRefs records the fields a template uses, and appends their names to
// names when not nil.
func (t *Template) addRefs(tree *parse.Tree, names *[]string) {
	if tree == nil || tree.Root == nil {
		return
	}
	walkFields(tree.Root, false, func(name string, n parse.Node) {
		where, _ := tree.ErrorContext(n)
		t.refs = append(t.refs, fieldRef{name: name, where: where})
		if names != nil && !slices.Contains(*names, name) {
			*names = append(*names, name)
		}
	})
}

// walkFields finds {{.name}}, {{$.name}} and {{index . "name"}}. Inside
// range and with the dot is something else, so .name there is not a column.
func walkFields(node parse.Node, inner bool, add func(string, parse.Node)) {
	switch n := node.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				walkFields(c, inner, add)
			}
		}
	case *parse.ActionNode:
		walkFields(n.Pipe, inner, add)
	case *parse.TemplateNode:
		walkFields(n.Pipe, inner, add)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				walkFields(c, inner, add)
			}
		}
	case *parse.CommandNode:
		if len(n.Args) >= 3 && !inner {
			id, ok1 := n.Args[0].(*parse.IdentifierNode)
			_, ok2 := n.Args[1].(*parse.DotNode)
			s, ok3 := n.Args[2].(*parse.StringNode)
			if ok1 && ok2 && ok3 && id.Ident == "index" {
				add(s.Text, s)
			}
		}
		for _, a := range n.Args {
			walkFields(a, inner, add)
		}
	case *parse.FieldNode:
		if !inner {
			add(n.Ident[0], n)
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			add(n.Ident[1], n)
		}
	case *parse.ChainNode:
		walkFields(n.Node, inner, add)
	case *parse.IfNode:
		walkFields(n.Pipe, inner, add)
		walkFields(n.List, inner, add)
		walkFields(n.ElseList, inner, add)
	case *parse.RangeNode:
		walkFields(n.Pipe, inner, add)
		walkFields(n.List, true, add)
		walkFields(n.ElseList, inner, add)
	case *parse.WithNode:
		walkFields(n.Pipe, inner, add)
		walkFields(n.List, true, add)
		walkFields(n.ElseList, inner, add)
	}
}

// HeaderFields maps each list field the template puts into a header field
// to the first such header's name, for list.Options.HeaderFields.
func (t *Template) HeaderFields() map[string]string {
	m := map[string]string{}
	for _, h := range t.headers {
		for _, f := range h.fields {
			if _, ok := m[f]; !ok {
				m[f] = h.name
			}
		}
	}
	return m
}

// Check reports every merge field that is not a column of the list, with
// where it is used, then renders once with sample values so other template
// mistakes show before anything is sent.
func (t *Template) Check(header []string) error {
	var errs []error
	for _, r := range t.refs {
		if slices.Contains(header, r.name) {
			continue
		}
		msg := fmt.Sprintf("%s: field %q is not a column of the list (columns: %s)", r.where, r.name, list.QuoteColumns(header))
		for _, h := range header {
			if strings.EqualFold(h, r.name) {
				msg += fmt.Sprintf("; did you mean %q?", h)
			}
		}
		errs = append(errs, fmt.Errorf("%s", msg))
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // one error reads as itself
	}
	fields := make(map[string]string, len(header))
	for _, h := range header {
		fields[h] = "user@example.com" // reads as an address, a name and a subject alike
	}
	sample := &list.Recipient{Email: "user@example.com", Addr: "user@example.com", Domain: "example.com", Fields: fields}
	if _, err := t.Render(sample, RenderOptions{Now: time.Unix(0, 0)}); err != nil {
		return fmt.Errorf("trying the template with sample values: %w", err)
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Render makes rcpt's message. A merge value with a line break never reaches
// a header: the recipient is refused instead, because "x\r\nBcc: ..." in a
// name would forge header fields. The error names the recipient's line.
func (t *Template) Render(rcpt *list.Recipient, opt RenderOptions) (*Rendered, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	out := &Rendered{From: t.literalFrom}

	type field struct{ k, v string }
	hdr := make([]field, 0, len(t.headers)+7)
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	hdr = append(hdr, field{"Date", now.Format("Mon, 02 Jan 2006 15:04:05 -0700")}, field{"Message-ID", ""})
	for i := range t.headers {
		h := &t.headers[i]
		if h.tmpl == nil {
			hdr = append(hdr, field{h.name, h.literal})
			continue
		}
		for _, f := range h.fields {
			if strings.ContainsAny(rcpt.Fields[f], "\r\n") {
				return nil, fmt.Errorf("%sfield %q contains a line break; it would forge headers", at(rcpt), f)
			}
		}
		buf.Reset()
		if err := h.tmpl.Execute(buf, rcpt.Fields); err != nil {
			return nil, fmt.Errorf("%s%s header: %w", at(rcpt), h.name, err)
		}
		v, err := headerValue(h.lower, buf.String())
		if err != nil {
			return nil, fmt.Errorf("%s%s header: %w", at(rcpt), h.name, err)
		}
		if h.lower == "from" {
			if out.From, err = parseOneAddress(v); err != nil {
				return nil, fmt.Errorf("%sFrom header: %w", at(rcpt), err)
			}
		}
		hdr = append(hdr, field{h.name, v})
	}
	if !t.hasTo {
		// Addr was checked and normalized when the list was read; a
		// Recipient made by other code (Render is exported) is checked here,
		// so nothing can break out of the header.
		addr := rcpt.Addr
		if !rcpt.Checked() {
			a, _, reason := address.Normalize(addr)
			if reason != "" {
				return nil, fmt.Errorf("%s%s", at(rcpt), reason)
			}
			addr = a
		}
		hdr = append(hdr, field{"To", "<" + addr + ">"})
	}
	if t.unsub != nil {
		list, post, err := t.unsub.headers(rcpt)
		if err != nil {
			return nil, fmt.Errorf("%s%w", at(rcpt), err)
		}
		hdr = append(hdr, field{"List-Unsubscribe", list})
		if post != "" {
			hdr = append(hdr, field{"List-Unsubscribe-Post", post})
		}
	}
	domain := opt.MessageIDDomain
	if domain == "" {
		domain = out.From[strings.LastIndexByte(out.From, '@')+1:]
	}
	out.MessageID = rand.Text() + "@" + domain
	hdr[1].v = "<" + out.MessageID + ">"

	buf.Reset()
	if err := t.body.Execute(buf, rcpt.Fields); err != nil {
		return nil, fmt.Errorf("%sbody: %w", at(rcpt), err)
	}
	text := normalizeNewlines(buf.String())
	var html string
	if t.html != nil {
		buf.Reset()
		if err := t.html.Execute(buf, rcpt.Fields); err != nil {
			return nil, fmt.Errorf("%shtml body: %w", at(rcpt), err)
		}
		html = normalizeNewlines(buf.String())
	}

	hdr = append(hdr, field{"MIME-Version", "1.0"})
	if t.html == nil {
		hdr = append(hdr, field{"Content-Type", "text/plain; charset=utf-8"}, field{"Content-Transfer-Encoding", transferEncoding(text)})
	} else {
		hdr = append(hdr, field{"Content-Type", "multipart/alternative"})
	}
	var mh message.Header
	// go-message writes fields last-added first (it prepends cheaply, for
	// trace fields); add in reverse to keep the template's order.
	for i := len(hdr) - 1; i >= 0; i-- {
		mh.Add(hdr[i].k, hdr[i].v)
	}
	msg := bytes.NewBuffer(opt.Buf[:0])
	msg.Grow(len(text) + 2*len(html) + 1024)
	if err := writeBody(msg, mh, text, html, t.html != nil); err != nil {
		return nil, fmt.Errorf("%s%w", at(rcpt), err)
	}
	out.Data = msg.Bytes()
	if opt.Signer != nil {
		signed, err := opt.Signer.Sign(out.Data)
		if err != nil {
			return nil, fmt.Errorf("%s%w", at(rcpt), err)
		}
		out.Data = signed
	}
	return out, nil
}

// at prefixes errors with the recipient's line in the list.
func at(rcpt *list.Recipient) string {
	if rcpt.Line > 0 {
		return fmt.Sprintf("line %d: ", rcpt.Line)
	}
	return ""
}

// headerValue makes a rendered value fit for the header: trimmed, free of
// control characters, addresses re-formatted, other text RFC 2047-encoded.
func headerValue(lower, v string) (string, error) {
	v = strings.TrimSpace(v)
	if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		return "", fmt.Errorf("the value would contain a line break or control character")
	}
	switch lower {
	case "from", "to", "cc", "reply-to", "sender":
		list, err := formatAddresses(v)
		if err != nil {
			return "", fmt.Errorf("%q: %w", v, err)
		}
		return list, nil
	}
	// RFC 2047 encoded-words for non-ASCII; ASCII is left alone.
	return mime.QEncoding.Encode("utf-8", v), nil
}

// formatAddresses parses an address-list header value and writes it back in
// ASCII: display names RFC 2047-encoded by net/mail, domains as punycode.
func formatAddresses(v string) (string, error) {
	list, err := mail.ParseAddressList(v)
	if err != nil {
		return "", fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "mail: "))
	}
	parts := make([]string, len(list))
	for i, a := range list {
		addr, _, reason := address.Normalize(a.Address)
		if reason != "" {
			return "", fmt.Errorf("%s", reason)
		}
		a.Address = addr
		parts[i] = a.String()
	}
	return strings.Join(parts, ", "), nil
}

// parseOneAddress is the single address of a From value; several From
// addresses would need a Sender field (RFC 5322 §3.6.2).
func parseOneAddress(v string) (string, error) {
	list, err := mail.ParseAddressList(v)
	if err != nil {
		return "", fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "mail: "))
	}
	if len(list) != 1 {
		return "", fmt.Errorf("needs exactly one address, found %d", len(list))
	}
	addr, _, reason := address.Normalize(list[0].Address)
	if reason != "" {
		return "", fmt.Errorf("%s", reason)
	}
	return addr, nil
}
