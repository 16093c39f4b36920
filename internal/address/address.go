// Package address checks and normalizes the bare e-mail addresses a
// mailing uses: the recipients of a list, the config's envelope sender and
// the addresses in a message's header. It is separate so that the config
// (which the advisor reads) and the list reader share one definition of a
// good address without either importing the other.
package address

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// idnaProfile converts domains as a resolver would (UTS #46 lookup) and also
// checks DNS lengths (RFC 1035 §2.3.4), which idna.Lookup does not.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.VerifyDNSLength(true))

// Normalize checks that s is a bare addr-spec a mailing can use and
// returns it normalized (local@ascii-domain) with its domain. reason is ""
// for a good address, else a message like `bad address "bob@@x": ...`.
func Normalize(s string) (addr, domain, reason string) {
	if addr, domain, ok := plain(s); ok {
		return addr, domain, ""
	}
	return full(s)
}

// full is Normalize by net/mail and IDNA, for any address.
func full(s string) (addr, domain, reason string) {
	bad := func(why string) (string, string, string) {
		return "", "", fmt.Sprintf("bad address %q: %s", s, why)
	}
	if s == "" {
		return "", "", "empty address"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return bad("contains a space or control character")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return bad(strings.TrimPrefix(err.Error(), "mail: "))
	}
	if a.Name != "" || a.Address != s {
		return bad("write the bare address, like bob@example.com, without a name, <> or comments")
	}
	at := strings.LastIndexByte(s, '@')
	local, dom := s[:at], s[at+1:]
	for i := 0; i < len(local); i++ {
		if local[i] >= utf8.RuneSelf {
			return bad("non-ASCII before the @ needs SMTPUTF8, which mailroute does not use")
		}
	}
	if len(local) > 64 { // RFC 5321 §4.5.3.1.1
		return bad("the part before the @ is longer than 64 characters")
	}
	if strings.HasPrefix(dom, "[") {
		return bad("address literals ([1.2.3.4]) are not supported; use a domain")
	}
	ascii, err := idnaProfile.ToASCII(dom)
	if err != nil {
		return bad(fmt.Sprintf("domain %q: %v", dom, strings.TrimPrefix(err.Error(), "idna: ")))
	}
	ascii = strings.ToLower(ascii)
	if !strings.Contains(ascii, ".") {
		return bad(fmt.Sprintf("domain %q has no dot", dom))
	}
	// No top-level domain is all digits (RFC 3696 §2), so this is an IPv4
	// address written without brackets.
	if tld := ascii[strings.LastIndexByte(ascii, '.')+1:]; strings.Trim(tld, "0123456789") == "" {
		return bad("the domain is an IP address or ends in a number; use a domain")
	}
	return local + "@" + ascii, ascii, ""
}

// plain is Normalize for the addresses most lists hold,
// without net/mail and IDNA, which cost more than the rest of a row: a
// local part of letters, digits and ._%+- in dot-atom form, and a domain
// of two or more LDH labels (RFC 1035 §2.3.1) with a top-level label that
// is not all digits. ok is false for anything else, which takes the full
// path; for what it accepts it gives the full path's result (the fuzz
// test FuzzPlainAddress holds it to that).
func plain(s string) (addr, domain string, ok bool) {
	at := strings.IndexByte(s, '@')
	if at < 1 || at > 64 || len(s)-at-1 > 253 {
		return "", "", false
	}
	local, dom := s[:at], s[at+1:]
	prev := byte('.')
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c == '.':
			if prev == '.' {
				return "", "", false
			}
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '%', c == '+', c == '-':
		default:
			return "", "", false
		}
		prev = c
	}
	if prev == '.' {
		return "", "", false
	}
	upper, labelStart, digitsOnly := false, 0, true
	for i := 0; i <= len(dom); i++ {
		if i == len(dom) || dom[i] == '.' {
			n := i - labelStart
			if n == 0 || n > 63 || dom[labelStart] == '-' || dom[i-1] == '-' {
				return "", "", false
			}
			if n >= 4 && dom[labelStart+2] == '-' && dom[labelStart+3] == '-' {
				return "", "", false // "xn--" and other reserved forms: IDNA decides
			}
			if i == len(dom) && (labelStart == 0 || digitsOnly) {
				return "", "", false // no dot, or an all-digit top label
			}
			labelStart, digitsOnly = i+1, true
			continue
		}
		switch c := dom[i]; {
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z', c == '-':
			digitsOnly = false
		case 'A' <= c && c <= 'Z':
			digitsOnly, upper = false, true
		default:
			return "", "", false
		}
	}
	if upper {
		dom = strings.ToLower(dom)
		return local + "@" + dom, dom, true
	}
	return s, dom, true
}
