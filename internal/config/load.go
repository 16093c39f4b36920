package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/address"
)

// Warning is a problem that does not stop the mailing, e.g. a plaintext
// password in a private file.
type Warning struct {
	Line    int // 1-based line in the config file; 0 when unknown
	Key     string
	Message string
}

func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", w.Line, w.Key, w.Message)
	}
	return w.Key + ": " + w.Message
}

// Error is one problem in a configuration: where it is, what is wrong,
// and (separately, for a "hint:" line) what to do about it.
type Error struct {
	File    string // "" when the Config did not come from a file
	Line    int    // 1-based; 0 when unknown
	Key     string // dotted key, "relay[1].port" when there are several relays
	Message string
	Hint    string
	// Snippet shows the offending lines with a caret under the error, for
	// TOML syntax errors; "" otherwise.
	Snippet string
}

// Error is "FILE:LINE: KEY: MESSAGE"; parts that are unknown are left out.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Load reads, decodes, defaults and validates a config file. Besides
// what Parse checks, it refuses a plaintext password in a file that
// others can read. Errors are *Error or an errors.Join of them.
func Load(path string) (*Config, []Warning, error) {
	data, src, err := readConfig(path)
	if err != nil {
		return nil, nil, err
	}
	return parseConfig(data, src)
}

// Parse decodes, defaults and validates a config held in memory; name
// is the file name used in messages. Errors are *Error or an
// errors.Join of them; when validation fails, its warnings come back too.
func Parse(data []byte, name string) (*Config, []Warning, error) {
	return parseConfig(data, &configSource{name: name})
}

// configSource is what validation knows about where a Config came from.
type configSource struct {
	name     string
	lines    *keyLines
	perm     fs.FileMode
	havePerm bool
}

// Default values; each is also written in the field's `default` tag (a test
// keeps the two in step).
const (
	defaultThreads          = 2 // two sessions: most relays allow it, and one slow reply doesn't stall the mailing
	defaultRelayPort        = 587
	defaultPerDomainThreads = 2
	defaultDirectPort       = 25
	defaultMaxMXHosts       = 5
	defaultAttempts         = 5
	defaultBackoff          = 30 * time.Second
	defaultMaxBackoff       = 10 * time.Minute
	defaultWithin           = 30 * time.Minute
	// Two minutes of tries (1 s, doubling to 15 s) outlast a relay's
	// restart or a brief network cut, and are short enough that a user
	// watching a run that cannot start learns it soon.
	defaultUnreachable = 2 * time.Minute
)

// defaultDKIMHeaders are the fields RFC 6376 §5.4.1 recommends signing that
// a mailing's messages have.
var defaultDKIMHeaders = []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}

// ApplyDefaults fills zero fields with their defaults. Helo, From and
// Resolver stay empty: they are found at run time (host name, the message's
// From, /etc/resolv.conf), so a file written on one machine is right on another.
func (c *Config) ApplyDefaults() {
	if c.Mode == "" {
		c.Mode = ModeRelay
	}
	if c.Threads == 0 {
		c.Threads = defaultThreads
	}
	for i := range c.Relay {
		r := &c.Relay[i]
		if r.Port == 0 {
			r.Port = defaultRelayPort
			if r.TLS == TLSImplicit {
				r.Port = 465
			}
		}
		if r.TLS == "" {
			// RFC 8314 §3.3: 465 is implicit TLS; 587 is STARTTLS submission.
			r.TLS = TLSStartTLS
			if r.Port == 465 {
				r.TLS = TLSImplicit
			}
		}
		if r.Auth == "" {
			r.Auth = "none"
			if r.Username != "" {
				r.Auth = "plain"
			}
		}
	}
	d := &c.Direct
	if d.PerDomainThreads == 0 {
		d.PerDomainThreads = defaultPerDomainThreads
	}
	if d.TLS == "" {
		d.TLS = TLSOpportunistic
	}
	if d.Port == 0 {
		d.Port = defaultDirectPort
	}
	if d.AddressFamily == "" {
		d.AddressFamily = FamilyAny
	}
	if d.MaxMXHosts == 0 {
		d.MaxMXHosts = defaultMaxMXHosts
	}
	r := &c.Retry
	if r.Attempts == 0 {
		r.Attempts = defaultAttempts
	}
	if r.Backoff == 0 {
		r.Backoff = Duration(defaultBackoff)
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = Duration(defaultMaxBackoff)
	}
	if r.Within == 0 {
		r.Within = Duration(defaultWithin)
	}
	if r.Unreachable == 0 {
		r.Unreachable = Duration(defaultUnreachable)
	}
	if c.DKIM != nil && len(c.DKIM.Headers) == 0 {
		c.DKIM.Headers = append([]string(nil), defaultDKIMHeaders...)
	}
}

// Validate checks a defaulted Config. It returns nil, an *Error, or an
// errors.Join of them. Without a file it can't give lines or check the
// file's permissions; Load does both.
func (c *Config) Validate() error {
	v := &validator{src: &configSource{}, relays: len(c.Relay)}
	v.check(c)
	if len(v.errs) == 0 {
		return nil
	}
	return joinErrors(v.errs)
}

// Relay returns "host:port", ready for net.Dial.
func (r *Relay) Addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// passwordCmdTimeout bounds password_cmd: a command waiting for a pinentry
// nobody sees must not hang the mailing.
const passwordCmdTimeout = 10 * time.Second

// Secret returns the relay's password from the configured source:
// password_env (the variable must be set and not empty), password_cmd (run
// with sh -c; the first line of its output, trimmed) or password. Errors name
// the variable or command and include the command's stderr, never its output.
func (r *Relay) Secret(ctx context.Context) (string, error) {
	switch {
	case r.PasswordEnv != "":
		v, ok := os.LookupEnv(r.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("relay %s: password_env: environment variable %s is not set", r.Host, r.PasswordEnv)
		}
		if v == "" {
			return "", fmt.Errorf("relay %s: password_env: environment variable %s is empty", r.Host, r.PasswordEnv)
		}
		return v, nil
	case r.PasswordCmd != "":
		return runPasswordCmd(ctx, r.Host, r.PasswordCmd)
	case r.Password != "":
		return r.Password, nil
	}
	return "", fmt.Errorf("relay %s: no password source; set password_env or password_cmd", r.Host)
}

func runPasswordCmd(parent context.Context, host, command string) (string, error) {
	ctx, cancel := context.WithTimeout(parent, passwordCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A background child that keeps the pipes open must not hold us past the
	// timeout.
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()
	first, _, _ := strings.Cut(stdout.String(), "\n")
	secret := strings.TrimSpace(first)
	stdout.Reset()

	errText := strings.TrimSpace(stderr.String())
	if secret != "" {
		// A command run with `set -x` or a chatty helper could echo it.
		errText = strings.ReplaceAll(errText, secret, "***")
	}
	if len(errText) > 500 {
		errText = errText[:500] + "…"
	}
	if errText != "" {
		errText = ": " + errText
	}
	switch {
	case parent.Err() != nil:
		return "", fmt.Errorf("relay %s: password_cmd %q: %w", host, command, parent.Err())
	case ctx.Err() != nil:
		return "", fmt.Errorf("relay %s: password_cmd %q did not finish within %v%s", host, command, passwordCmdTimeout, errText)
	case runErr != nil:
		return "", fmt.Errorf("relay %s: password_cmd %q failed (%v)%s", host, command, runErr, errText)
	case secret == "":
		return "", fmt.Errorf("relay %s: password_cmd %q printed an empty first line%s", host, command, errText)
	}
	return secret, nil
}

// validator collects every problem of a Config, so one run of `config check`
// shows them all.
type validator struct {
	src    *configSource
	relays int
	errs   []error
	warns  []Warning
	// skip, when set, says a path's value could not be decoded: an error
	// about its zero would be made up.
	skip func(path string) bool
}

// display turns an indexed path into the key shown to the user: with one
// relay, "relay[0].port" is just "relay.port".
func (v *validator) display(path string) string {
	if v.relays <= 1 {
		return strings.Replace(path, "relay[0]", "relay", 1)
	}
	return path
}

func (v *validator) fail(path, msg, hint string) {
	if v.skip != nil && v.skip(path) {
		return
	}
	v.errs = append(v.errs, &Error{File: v.src.name, Line: v.src.lines.line(path), Key: v.display(path), Message: msg, Hint: hint})
}

func (v *validator) warn(path, msg string) {
	v.warns = append(v.warns, Warning{Line: v.src.lines.line(path), Key: v.display(path), Message: msg})
}

func (v *validator) intRange(path string, n, lo, hi int, hint string) {
	if n < lo || n > hi {
		v.fail(path, fmt.Sprintf("%d is out of range %d-%d", n, lo, hi), hint)
	}
}

func (v *validator) check(c *Config) {
	switch c.Mode {
	case ModeDirect, ModeRelay:
	default:
		v.fail("mode", fmt.Sprintf("unknown mode %q", c.Mode), `use "direct" or "relay"`)
	}
	v.intRange("threads", c.Threads, 1, 100, "ISP relays usually allow 1-5 sessions; start low")
	if strings.ContainsFunc(c.Helo, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		v.fail("helo", fmt.Sprintf("%q is not a host name", c.Helo), "write this machine's name, e.g. \"mail.example.com\"")
	}
	if c.From != "" {
		if _, _, reason := address.Normalize(c.From); reason != "" {
			v.fail("from", reason, "write a bare address, e.g. \"news@example.com\"")
		}
	}
	if c.Resolver != "" {
		if !isIP(c.Resolver) && !isIPPort(c.Resolver) {
			v.fail("resolver", fmt.Sprintf("%q is not IP or IP:PORT", c.Resolver), `e.g. "192.0.2.53" or "[2001:db8::53]:5353"`)
		}
	}
	switch {
	case c.Mode == ModeRelay && len(c.Relay) == 0:
		v.fail("relay", "relay mode needs at least one [[relay]] table", `add [[relay]] with host = "smtp.example.com", or set mode = "direct"`)
	case c.Mode == ModeDirect && len(c.Relay) > 0:
		v.warn("relay", "relay tables are ignored in direct mode")
	}
	sum := 0
	for i := range c.Relay {
		sum += v.checkRelay(fmt.Sprintf("relay[%d]", i), &c.Relay[i])
	}
	if sum > c.Threads {
		v.fail("threads", fmt.Sprintf("the relays' threads add up to %d, more than threads = %d", sum, c.Threads), "raise threads, or lower a relay's threads")
	}

	d := &c.Direct
	v.intRange("direct.per_domain_threads", d.PerDomainThreads, 1, 100, "large providers throttle above 2-5 sessions per sender")
	switch d.TLS {
	case TLSOpportunistic, TLSStartTLS, TLSNone:
	default:
		v.fail("direct.tls", fmt.Sprintf("unknown tls mode %q", d.TLS), `use "opportunistic", "starttls" or "none"`)
	}
	switch d.AddressFamily {
	case FamilyAny, FamilyIPv4, FamilyIPv6:
	default:
		v.fail("direct.address_family", fmt.Sprintf("unknown address family %q", d.AddressFamily), `use "any", "ipv4" or "ipv6"`)
	}
	v.intRange("direct.port", d.Port, 1, 65535, "25 is the only port MX hosts listen on")
	v.intRange("direct.max_mx_hosts", d.MaxMXHosts, 1, 100, "5 is plenty; RFC 5321 §5.1 allows a limit")
	if d.CAFile != "" {
		if err := readable(d.CAFile); err != nil {
			v.fail("direct.ca_file", err.Error(), "a PEM file of CA certificates")
		}
	}

	r := &c.Retry
	v.intRange("retry.attempts", r.Attempts, 1, 1000, "")
	if r.Backoff <= 0 {
		v.fail("retry.backoff", "must be positive", `e.g. "30s"`)
	}
	if r.MaxBackoff < r.Backoff {
		v.fail("retry.max_backoff", fmt.Sprintf("%v is shorter than backoff (%v)", r.MaxBackoff, r.Backoff), "")
	}
	if r.Within < 0 {
		v.fail("retry.within", "must not be negative", `e.g. "30m"`)
	}
	if r.Unreachable < 0 {
		v.fail("retry.unreachable", "must not be negative", `e.g. "2m"`)
	}

	if c.DKIM != nil {
		v.checkDKIM(c.DKIM)
	}
	if c.Unsubscribe != nil {
		v.checkUnsubscribe(c.Unsubscribe)
	}
}

var relayAuths = []string{"plain", "login", "cram-md5", "xoauth2", "none"}

// checkRelay checks one relay and returns its threads for the sum check.
func (v *validator) checkRelay(p string, r *Relay) int {
	switch {
	case r.Host == "":
		v.fail(p+".host", "missing", `the relay's host name, e.g. host = "smtp.example.com"`)
	case strings.Contains(r.Host, ":") && !isIP(r.Host):
		v.fail(p+".host", fmt.Sprintf("%q has a port in it", r.Host), "write the port in port = ...")
	}
	v.intRange(p+".port", r.Port, 1, 65535, "465 for implicit TLS, 587 for STARTTLS submission")
	switch r.TLS {
	case TLSImplicit, TLSStartTLS, TLSNone:
	case TLSOpportunistic:
		v.fail(p+".tls", `"opportunistic" is for direct mode`, `a relay that gets a password needs tls = "starttls" or "implicit"`)
	default:
		v.fail(p+".tls", fmt.Sprintf("unknown tls mode %q", r.TLS), `use "implicit" (port 465), "starttls" (port 587) or "none"`)
	}
	if r.Port == 465 && r.TLS == TLSStartTLS {
		v.warn(p+".tls", `port 465 speaks implicit TLS almost everywhere (RFC 8314 §3.3); try tls = "implicit"`)
	}
	if r.Port == 587 && r.TLS == TLSImplicit {
		v.warn(p+".tls", `port 587 speaks STARTTLS almost everywhere (RFC 8314 §3.3); try tls = "starttls"`)
	}

	sources := 0
	for _, s := range []string{r.PasswordEnv, r.PasswordCmd, r.Password} {
		if s != "" {
			sources++
		}
	}
	switch {
	case !slices.Contains(relayAuths, r.Auth):
		v.fail(p+".auth", fmt.Sprintf("unknown mechanism %q", r.Auth), `use "plain", "login", "cram-md5", "xoauth2" or "none"`)
	case r.Auth == "none":
		if r.Username != "" || sources > 0 {
			v.warn(p+".auth", `auth = "none": username and password are not used`)
		}
	default:
		if r.Username == "" {
			v.fail(p+".username", fmt.Sprintf("auth = %q needs a username", r.Auth), `set username, or auth = "none"`)
		}
		if sources == 0 {
			v.fail(p+".password_env", "no password source", `set password_env = "VARIABLE" or password_cmd = "COMMAND"`)
		}
		if sources > 1 {
			v.fail(p+".password_env", "more than one password source", "keep one of password_env, password_cmd and password")
		}
		if r.TLS == TLSNone && !r.InsecureAuth {
			v.fail(p+".tls", "refusing to send a password in clear", `set tls = "starttls" or insecure_auth = true`)
		}
	}
	if r.Password != "" {
		v.warn(p+".password", "plaintext password in the config; prefer password_env or password_cmd")
		if v.src.havePerm && v.src.perm&0o077 != 0 {
			v.fail(p+".password", v.src.name+" is readable by others and holds a password", "chmod 600 "+v.src.name)
		}
	}
	if r.CAFile != "" {
		if err := readable(r.CAFile); err != nil {
			v.fail(p+".ca_file", err.Error(), "a PEM file of CA certificates")
		}
	}
	if r.Threads < 0 {
		v.fail(p+".threads", "must not be negative", "0 shares the global threads")
	}
	if r.MessagesPerSession < 0 {
		v.fail(p+".messages_per_session", "must not be negative", "0 means no cap")
	}
	return max(r.Threads, 0)
}

func (v *validator) checkDKIM(d *DKIM) {
	if d.Domain == "" {
		v.fail("dkim.domain", "missing", "the signing domain (d=), usually the From address's domain")
	}
	if d.Selector == "" {
		v.fail("dkim.selector", "missing", "the selector (s=) whose TXT record holds the public key")
	}
	if d.KeyFile == "" {
		v.fail("dkim.key_file", "missing", "a PEM private key file, readable only by you")
		return
	}
	if _, err := d.LoadKey(); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			v.fail(ce.Key, ce.Message, ce.Hint)
		} else {
			v.fail("dkim.key_file", err.Error(), "")
		}
	}
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: %v", path, pe.Err)
		}
		return err
	}
	return f.Close()
}

func isIP(s string) bool { _, err := netip.ParseAddr(s); return err == nil }

func isIPPort(s string) bool { _, err := netip.ParseAddrPort(s); return err == nil }
