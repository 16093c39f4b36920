package probe

import (
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"

	"github.com/mailroute/mailroute/internal/resolve"
)

// Builtin are the domains probed when no --to is given: large mailbox
// providers whose MX hosts are always up, so a failure says something about
// this network rather than about them.
var Builtin = []string{"gmail.com", "outlook.com", "yahoo.com"}

// SubmissionPorts are tried on a relay given without a port, in the order
// RFC 8314 prefers them: implicit TLS first, then STARTTLS submission, the
// common alternative 2525, and 25 last (often blocked, rarely for submission).
var SubmissionPorts = []int{465, 587, 2525, 25}

// InputError is bad user input: what was wrong, where, and a hint.
type InputError struct {
	Flag, Value, Problem, Hint string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Flag, e.Value, e.Problem)
}

// ParseTo turns the --to values (domains or addresses) into a deduplicated
// list of ASCII domain names, in the order given.
func ParseTo(values []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, v := range values {
		d, err := domainOf(v)
		if err != nil {
			return nil, &InputError{Flag: "--to", Value: v, Problem: err.Error(),
				Hint: "give a domain (example.com) or an address (bob@example.com)"}
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, nil
}

// domainOf accepts "example.com", "bob@example.com" or "Bob <bob@example.com>".
func domainOf(v string) (string, error) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "@") {
		a, err := mail.ParseAddress(v)
		if err != nil {
			return "", fmt.Errorf("not an email address: %v", strings.TrimPrefix(err.Error(), "mail: "))
		}
		v = a.Address[strings.LastIndexByte(a.Address, '@')+1:]
	}
	return resolve.NormalizeDomain(v)
}

// RelaySpec is a --relay value: a host and the ports to try.
type RelaySpec struct {
	Host  string
	Ports []int
}

// ParseRelay reads HOST or HOST:PORT (IPv6 literals in brackets).
func ParseRelay(v string) (RelaySpec, error) {
	bad := func(problem, hint string) (RelaySpec, error) {
		return RelaySpec{}, &InputError{Flag: "--relay", Value: v, Problem: problem, Hint: hint}
	}
	host, port := strings.TrimSpace(v), ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	} else if strings.Count(host, ":") == 1 {
		return bad(strings.TrimPrefix(err.Error(), "address "+host+": "), "write HOST or HOST:PORT, e.g. smtp.example.com:587")
	}
	if host == "" {
		return bad("no host", "write HOST or HOST:PORT, e.g. smtp.example.com:587")
	}
	spec := RelaySpec{Host: host, Ports: SubmissionPorts}
	if ip := net.ParseIP(host); ip == nil {
		h, err := resolve.NormalizeDomain(host)
		if err != nil {
			return bad(err.Error(), "write HOST or HOST:PORT, e.g. smtp.example.com:587")
		}
		spec.Host = h
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad("port must be a number from 1 to 65535", "submission ports are 465 (TLS) and 587 (STARTTLS)")
		}
		spec.Ports = []int{n}
	}
	return spec, nil
}

// ParseFrom returns the domain of a --from address.
func ParseFrom(v string) (string, error) {
	a, err := mail.ParseAddress(strings.TrimSpace(v))
	if err != nil {
		return "", &InputError{Flag: "--from", Value: v, Problem: "not an email address",
			Hint: "give your own address, e.g. --from you@example.com"}
	}
	d, err := resolve.NormalizeDomain(a.Address[strings.LastIndexByte(a.Address, '@')+1:])
	if err != nil {
		return "", &InputError{Flag: "--from", Value: v, Problem: err.Error(), Hint: "give your own address, e.g. --from you@example.com"}
	}
	return d, nil
}

// tlsModeFor says how a port is spoken: implicit TLS on 465 (RFC 8314 §3.3),
// plaintext with STARTTLS when offered everywhere else.
func tlsModeFor(port int) string {
	if port == 465 {
		return "implicit"
	}
	return "starttls"
}
