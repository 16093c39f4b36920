package resolve

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NormalizeDomain turns what a user typed as a mail domain (or host name)
// into the form DNS is asked about: surrounding space trimmed, lowercase, one
// trailing dot removed, internationalized labels converted to their ASCII
// "xn--" form (IDNA2008 A-labels, RFC 5891, by golang.org/x/net/idna).
//
// The result must be a host name as RFC 5321 §4.1.2 (Domain) and RFC 1123
// §2.1 allow: labels of 1–63 letters, digits and hyphens, not starting or
// ending with a hyphen, at most 253 characters in all, and a top-level label
// that is not all digits. Underscores are refused: they are legal in DNS
// (e.g. "_dmarc") but never in a mail domain. IP addresses and address
// literals ("[192.0.2.1]") are refused too; they are not domains.
//
// The error says what is wrong, quoting the input, e.g.
// `"exa mple.com": label "exa mple" has a space`.
func NormalizeDomain(s string) (string, error) {
	in := s
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%q: "+format, append([]any{in}, args...)...)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return fail("empty domain")
	}
	if !utf8.ValidString(s) {
		return fail("not valid UTF-8")
	}
	// No form of a valid name has more characters than its ASCII form,
	// which is at most 253; refusing longer input early also keeps the
	// quadratic Punycode encoder away from megabytes of pasted text.
	if n := utf8.RuneCountInString(s); n > 253 {
		return fail("name is %d characters, longer than 253", n)
	}
	// The ideographic and fullwidth full stops are dots (RFC 3490 §3.1).
	s = strings.NewReplacer("\u3002", ".", "\uff0e", ".", "\uff61", ".").Replace(s)
	// Spaces and control characters first: they are the commonest paste
	// mistakes and deserve a message naming them, not a generic one.
	for _, label := range strings.Split(s, ".") {
		if strings.IndexFunc(label, unicode.IsSpace) >= 0 {
			return fail("label %q has a space", label)
		}
		if strings.IndexFunc(label, unicode.IsControl) >= 0 {
			return fail("label %q has a control character", label)
		}
	}
	if strings.HasPrefix(s, "[") || strings.HasSuffix(s, "]") {
		return fail("an address literal, not a domain")
	}
	if _, err := netip.ParseAddr(strings.TrimSuffix(s, ".")); err == nil {
		return fail("an IP address, not a domain")
	}
	// ASCII labels are checked before conversion so that a mistake is
	// reported in the user's terms, quoting the label as typed.
	if err := checkASCIILabels(s); err != nil {
		return fail("%s", err)
	}
	s = strings.TrimSuffix(s, ".")
	a, err := toASCII(s)
	if err != nil {
		return fail("%s", err)
	}
	s = a
	if s == "" {
		return fail("empty domain")
	}
	if err := checkHostname(s); err != nil {
		return fail("%s", err)
	}
	return s, nil
}

// checkASCIILabels reports LDH violations in the ASCII part of the input.
// Non-ASCII labels are left to IDNA.
func checkASCIILabels(s string) error {
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !isASCII(label) {
			continue
		}
		if err := checkLabel(label); err != nil {
			return err
		}
	}
	return nil
}

// checkHostname validates a lowercase ASCII name without trailing dot.
func checkHostname(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("name is %d characters, longer than 253", len(s))
	}
	labels := strings.Split(s, ".")
	for _, label := range labels {
		if err := checkLabel(label); err != nil {
			return err
		}
	}
	// RFC 3696 §2: a top-level domain is never all-numeric; a name that
	// ends in one is a mistyped IP address ("192.168.1").
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return fmt.Errorf("top-level label %q is all digits (an IP address?)", tld)
	}
	return nil
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("empty label (two dots in a row, or a leading dot)")
	case len(label) > 63:
		return fmt.Errorf("label %q is %d characters, longer than 63", label, len(label))
	case label[0] == '-':
		return fmt.Errorf("label %q starts with a hyphen", label)
	case label[len(label)-1] == '-':
		return fmt.Errorf("label %q ends with a hyphen", label)
	}
	for _, c := range []byte(label) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has %q; only letters, digits and hyphens are allowed", label, c)
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
