package smtpclient

import (
	"strconv"
	"strings"
)

// Reply is one SMTP reply as the server sent it (RFC 5321 §4.2): a code and
// its lines, continuation markers removed.
type Reply struct {
	Code  int      `json:"code"`
	Lines []string `json:"lines"`
}

// Text is the reply's lines joined with newlines.
func (r Reply) Text() string { return strings.Join(r.Lines, "\n") }

// String renders the reply the way it looked on the wire, one line.
func (r Reply) String() string {
	return strconv.Itoa(r.Code) + " " + strings.Join(r.Lines, " / ")
}

// ParseReplies splits raw server output into complete replies. It stops at
// the first line that is not SMTP ("NNN" then space, hyphen or end) and
// drops a trailing incomplete reply, so a non-SMTP peer yields no replies.
func ParseReplies(b []byte) []Reply {
	var out []Reply
	var cur *Reply
	for len(b) > 0 {
		i := strings.IndexByte(string(b), '\n')
		if i < 0 {
			break // incomplete line
		}
		line := strings.TrimRight(string(b[:i]), "\r")
		b = b[i+1:]
		code, more, text, ok := splitLine(line)
		if !ok || (cur != nil && code != cur.Code) {
			break
		}
		if cur == nil {
			cur = &Reply{Code: code}
		}
		cur.Lines = append(cur.Lines, text)
		if !more {
			out = append(out, *cur)
			cur = nil
		}
	}
	return out
}

func splitLine(line string) (code int, more bool, text string, ok bool) {
	if len(line) < 3 {
		return 0, false, "", false
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil || code < 200 || code > 599 {
		return 0, false, "", false
	}
	if len(line) == 3 {
		return code, false, "", true
	}
	switch line[3] {
	case ' ':
		return code, false, line[4:], true
	case '-':
		return code, true, line[4:], true
	}
	return 0, false, "", false
}

// Capabilities parses an EHLO reply (RFC 5321 §4.1.1.1): the first line is
// the server's greeting name, every further line a keyword and parameters.
// Keywords come back upper-cased. "AUTH=LOGIN PLAIN", the spelling of some
// old servers, counts as AUTH when there is no AUTH line.
func Capabilities(r Reply) map[string]string {
	caps := map[string]string{}
	var authEq string
	for _, l := range r.Lines[min(1, len(r.Lines)):] {
		kw, param, _ := strings.Cut(strings.TrimSpace(l), " ")
		kw = strings.ToUpper(kw)
		if rest, ok := strings.CutPrefix(kw, "AUTH="); ok {
			authEq = strings.TrimSpace(rest + " " + param)
			continue
		}
		if kw != "" {
			caps[kw] = param
		}
	}
	if _, ok := caps["AUTH"]; !ok && authEq != "" {
		caps["AUTH"] = authEq
	}
	return caps
}

// EHLOCapabilities is Capabilities of an EHLO reply's text as ReadReply
// returns it.
func EHLOCapabilities(text string) map[string]string {
	return Capabilities(Reply{Lines: strings.Split(text, "\n")})
}

// GreetingHost is the first word of a 220 greeting or EHLO reply: by RFC
// 5321 §4.3.1 the server's own name (often, not always, a host name).
func GreetingHost(r Reply) string {
	if len(r.Lines) == 0 {
		return ""
	}
	host, _, _ := strings.Cut(strings.TrimSpace(r.Lines[0]), " ")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
