// Package lab brings up a throwaway network namespace with real mail software
// on 127.x addresses, for end-to-end tests of mailroute:
//
//   - dnsmasq answers DNS on DNSAddr for a fixed set of *.example domains,
//   - a Postfix MX ("mx") accepts mail for alpha, beta and gamma.example into Maildirs,
//   - a Postfix submission relay ("relay") with Dovecot SASL listens on RelayAddr:587 and :465,
//   - a Postfix "isp" server on ISPAddr:25 plays an ISP that intercepts port 25.
//
// iptables rules inside the namespace (Filter, Refuse, Unreachable, Intercept) simulate what
// ISPs do to outbound port 25. They match only uid 0, the uid the tool under test runs as, so
// the relay's own onward delivery (as user postfix) is never affected.
//
// Everything needs root and Debian's postfix, dnsmasq-base, dovecot-core, iptables and
// iproute2 (no openssl binary: certificates are made in Go). Start skips the test when
// something is missing, unless MAILROUTE_LAB=1. swaks is optional (the self-test uses it).
//
// Traffic never leaves the namespace: every address used is in 127.0.0.0/8 inside it.
// Names outside .example and in-addr.arpa get REFUSED from the lab DNS (it has no
// upstream), which is how an offline resolver looks to the tool.
//
// Environment:
//
//	MAILROUTE_LAB=1          missing prerequisites fail the test instead of skipping it
//	MAILROUTE_LAB_KEEP=1     keep the lab dir (configs, logs, Maildirs) after the test; the
//	                         next Start of any test process removes it as stale
//	MAILROUTE_BUILD_FLAGS    extra "go build" flags for Mailroute, e.g. "-race"
//
// Peers are tuned for fast tests rather than realism in a few places: no error sleeps in
// Postfix, no in-flow delay, 1s retry intervals on the relay, and no Dovecot delay or
// growing penalty after a failed login.
package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Domains served by the lab DNS.
const (
	AlphaDomain    = "alpha.example"    // MX 10 MXHost → MXAddr (Postfix, open, STARTTLS)
	BetaDomain     = "beta.example"     // MX 10 BetaMX1Host → BetaMX1Addr (nothing there), MX 20 BetaMX2Host → BetaMX2Addr (Postfix)
	GammaDomain    = "gamma.example"    // no MX; A → GammaAddr, served by the Postfix MX (implicit MX)
	NullMXDomain   = "null.example"     // null MX "0 ." (RFC 7505)
	NoSuchDomain   = "nosuch.example"   // NXDOMAIN
	FilteredDomain = "filtered.example" // MX FilteredMXHost → FilteredMXAddr (nothing there)
	RefusedDomain  = "refused.example"  // MX RefusedMXHost → RefusedMXAddr (nothing there)
	UnreachDomain  = "unreach.example"  // MX UnreachMXHost → UnreachMXAddr (nothing there)
	OneDomain      = "one.example"      // MX OneMXHost → OneMXAddr (nothing there; tests Intercept it)
	TwoDomain      = "two.example"      // MX TwoMXHost → TwoMXAddr (nothing there; tests Intercept it)
	RelayDomain    = "relay.example"    // A → RelayAddr; SRV _submission(s)._tcp → RelayHost:587/465
)

// Host names in the lab DNS. Each has an A record and a PTR record pointing back to it.
const (
	MXHost         = "mx.alpha.example"
	BetaMX1Host    = "mx1.beta.example"
	BetaMX2Host    = "mx2.beta.example"
	FilteredMXHost = "mx.filtered.example"
	RefusedMXHost  = "mx.refused.example"
	UnreachMXHost  = "mx.unreach.example"
	OneMXHost      = "mx.one.example"
	TwoMXHost      = "mx.two.example"
	RelayHost      = "smtp.relay.example"
	ISPHost        = "smtp.ispnet.example"
)

// Addresses inside the namespace.
const (
	DNSAddr        = "127.0.0.10" // dnsmasq, port 53; the namespace's resolv.conf points here
	MXAddr         = "127.0.2.1"  // Postfix MX, greets as MXHost
	BetaMX2Addr    = "127.0.2.2"  // same Postfix MX
	GammaAddr      = "127.0.2.3"  // same Postfix MX
	OneMXAddr      = "127.0.3.1"  // nothing listens
	TwoMXAddr      = "127.0.3.2"  // nothing listens
	BetaMX1Addr    = "127.0.4.1"  // nothing listens
	FilteredMXAddr = "127.0.4.2"  // nothing listens
	RelayAddr      = "127.0.5.1"  // Postfix relay on 587 and 465 only (25 and 2525 closed)
	RefusedMXAddr  = "127.0.6.1"  // nothing listens
	UnreachMXAddr  = "127.0.8.1"  // nothing listens
	ISPAddr        = "127.0.9.9"  // Postfix "ISP" on 25, greets as ISPHost
)

// Networks meant for the firewall methods: l.Filter(FilterNet, 25) and so on.
// Without a rule, a connection to an address where nothing listens is refused (RST).
const (
	InterceptNet = "127.0.3.0/24" // OneMXAddr, TwoMXAddr
	FilterNet    = "127.0.4.0/24" // BetaMX1Addr, FilteredMXAddr
	RefuseNet    = "127.0.6.0/24" // RefusedMXAddr
	UnreachNet   = "127.0.8.0/24" // UnreachMXAddr
)

// Relay ports and login.
const (
	SubmissionPort  = 587 // STARTTLS required, then AUTH
	SubmissionsPort = 465 // implicit TLS, then AUTH
	RelayUser       = "alice@relay.example"
	RelayPassword   = "correct-horse" // throwaway lab password; fine to log
)

// Root is the parent of every lab's directory. Each lab uses Root/<namespace>; Mailroute
// builds into Root/bin-<pid>. Stale entries (owner process gone) are removed by Start.
const Root = "/var/tmp/mailroute-lab"

// nsPrefix names every namespace a lab creates: nsPrefix<pid>-<n>.
const nsPrefix = "mrlab-"

// startTimeout bounds how long Start waits for each daemon to answer.
const startTimeout = 15 * time.Second

// Options tune one lab.
type Options struct {
	// RelayConnLimit is the relay's smtpd_client_connection_count_limit: concurrent
	// sessions per client address and port. 0 means no limit.
	RelayConnLimit int
	// RelayMsgRateLimit is the relay's smtpd_client_message_rate_limit: MAIL FROM commands
	// per client address and port per RelayRateWindow. 0 means no limit.
	RelayMsgRateLimit int
	// RelayRateWindow is the relay's anvil_rate_time_unit (whole seconds). Default 60s.
	RelayRateWindow time.Duration
	// RelayRcptReplies makes the relay refuse these recipients at RCPT TO
	// with the whole reply given ("550 5.1.1 no such user").
	RelayRcptReplies map[string]string
	// RelayHardErrorLimit is the relay's smtpd_hard_error_limit: after that
	// many errors in a session it answers 421 and hangs up. 0: Postfix's
	// default (20).
	RelayHardErrorLimit int
	// RelayNoChunking hides CHUNKING from the relay's EHLO
	// (smtpd_discard_ehlo_keywords).
	RelayNoChunking bool
	// ExtraDNS lines are appended verbatim to the dnsmasq configuration, e.g.
	// "txt-record=alpha.example,v=spf1 -all" or "host-record=2.0.0.127.zen.example,127.0.0.2".
	// Names under .example without a record are NXDOMAIN.
	ExtraDNS []string
}

// Lab is one running namespace with its peers. Its methods are safe for concurrent use.
type Lab struct {
	// Name is the network namespace, as used by "ip netns exec".
	Name string
	// Dir holds the configuration, queues, Maildirs and logs of this lab.
	Dir string
	// CAFile is the PEM certificate of the throwaway CA that signed every server certificate.
	CAFile string

	tb       testing.TB
	opts     Options
	nsPath   string // /run/netns/<Name>
	resolv   string // /etc/netns/<Name>
	mx       *postfix
	relay    *postfix
	isp      *postfix
	watchdog *watchdog
	// stsServing: ServeMTASTS started its server (tests call it in turn,
	// not concurrently).
	stsServing bool
	ready      bool     // Start completed
	rcptOf     sync.Map // maildir file path → its Delivered-To (maildir.go)
	down       sync.Once
}

var labSeq atomic.Int64

// tools are the programs the lab runs, resolved once to absolute paths so that a PATH
// without /usr/sbin (common for non-login root shells and CI) does not matter.
var tools = struct {
	once  sync.Once
	path  map[string]string
	order []string
}{order: []string{"ip", "iptables", "postfix", "postqueue", "dnsmasq", "dovecot"}}

func resolveTools() {
	tools.once.Do(func() {
		tools.path = map[string]string{}
		for _, name := range tools.order {
			if p, err := exec.LookPath(name); err == nil {
				tools.path[name] = p
				continue
			}
			for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
				p := filepath.Join(dir, name)
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
					tools.path[name] = p
					break
				}
			}
		}
	})
}

func tool(name string) string {
	resolveTools()
	if p := tools.path[name]; p != "" {
		return p
	}
	return name
}

// Available reports what the lab lacks on this machine: "" when it can run, else a
// comma-separated list such as "root, dnsmasq".
func Available() (missing string) {
	resolveTools()
	var m []string
	if os.Geteuid() != 0 {
		m = append(m, "root")
	}
	for _, name := range tools.order {
		if tools.path[name] == "" {
			m = append(m, name)
		}
	}
	return strings.Join(m, ", ")
}

// Start brings up a new lab for the test and registers its teardown with t.Cleanup.
//
// When a prerequisite is missing it skips the test, or fails it when MAILROUTE_LAB=1
// (so CI cannot pass by skipping). Once the prerequisites are there, any failure to
// bring up a peer fails the test with the daemon's own log.
func Start(t testing.TB, opts Options) *Lab {
	t.Helper()
	if missing := Available(); missing != "" {
		if os.Getenv("MAILROUTE_LAB") == "1" {
			t.Fatalf("lab: MAILROUTE_LAB=1 but missing: %s (needs root and Debian postfix, dnsmasq-base, dovecot-core, iptables, iproute2)", missing)
		}
		t.Skipf("lab: needs root and Debian postfix, dnsmasq, dovecot, iptables: missing %s (set MAILROUTE_LAB=1 to make this a failure)", missing)
	}
	if opts.RelayRateWindow <= 0 {
		opts.RelayRateWindow = 60 * time.Second
	}
	began := time.Now()
	cleanupStale(t)

	name := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), labSeq.Add(1))
	l := &Lab{
		Name:   name,
		Dir:    filepath.Join(Root, name),
		tb:     t,
		opts:   opts,
		nsPath: filepath.Join("/run/netns", name),
		resolv: filepath.Join("/etc/netns", name),
	}
	l.CAFile = filepath.Join(l.Dir, "ca.pem")
	// What mailroute keeps between runs (its MTA-STS policy cache) stays in
	// this lab: a policy one test publishes must not reach another test, or
	// the user's own cache. Every process the test starts inherits it.
	t.Setenv("XDG_CACHE_HOME", filepath.Join(l.Dir, "cache"))
	// Its quota ledgers (send's relay and rate limits kept between runs) too.
	t.Setenv("XDG_STATE_HOME", filepath.Join(l.Dir, "state"))

	// The watchdog comes first: from here on, even a SIGKILLed test binary leaves nothing behind.
	wd, err := startWatchdog(l)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	l.watchdog = wd
	t.Cleanup(l.teardown)

	if err := l.makeDirs(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if err := l.createNamespace(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	tNS := time.Now()
	if err := l.writeCerts(); err != nil {
		t.Fatalf("lab: certificates: %v", err)
	}
	l.mx = newPostfix(l, "mx")
	l.relay = newPostfix(l, "relay")
	l.isp = newPostfix(l, "isp")
	if err := l.writeConfigs(); err != nil {
		t.Fatalf("lab: %v", err)
	}

	// The daemons are independent (the relay's queue_directory/private, where Dovecot puts
	// its socket, exists already), so they start in parallel.
	steps := []struct {
		what string
		run  func() error
	}{
		{"dnsmasq", l.startDNS},
		{"postfix mx", l.mx.start},
		{"postfix isp", l.isp.start},
		{"postfix relay", l.relay.start},
		{"dovecot", l.startDovecot},
	}
	tConf := time.Now()
	if err := parallel(len(steps), func(i int) error {
		if err := steps[i].run(); err != nil {
			return fmt.Errorf("%s: %w", steps[i].what, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("lab: starting %v", err)
	}
	tDaemons := time.Now()
	if err := l.waitReady(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	l.ready = true
	ms := func(a, b time.Time) time.Duration { return b.Sub(a).Round(time.Millisecond) }
	now := time.Now()
	t.Logf("lab: namespace %s ready in %v (namespace %v, config %v, daemons %v, first answers %v; dir %s)",
		name, ms(began, now), ms(began, tNS), ms(tNS, tConf), ms(tConf, tDaemons), ms(tDaemons, now), l.Dir)
	return l
}

func (l *Lab) makeDirs() error {
	// Root and the lab dir must be traversable by postfix, dovecot and nobody.
	for _, d := range []string{Root, l.Dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return writeOwner(l.Dir)
}

// parallel runs f(0..n-1) concurrently and returns the errors joined in index order.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "\n"))
	}
	return nil
}

// Command returns a command that runs name inside the lab's namespace, as root, with this
// process's environment. Its resolver is the lab DNS.
func (l *Lab) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, tool("ip"), append([]string{"netns", "exec", l.Name, name}, args...)...)
}

// Log returns the log of one peer: "mx", "relay", "isp" (Postfix), "dovecot" or "dns".
func (l *Lab) Log(instance string) string {
	var p string
	switch instance {
	case "mx":
		p = l.mx.log
	case "relay":
		p = l.relay.log
	case "isp":
		p = l.isp.log
	case "dovecot":
		p = filepath.Join(l.Dir, "dovecot", "dovecot.log")
	case "dns", "dnsmasq":
		p = filepath.Join(l.Dir, "dns", "dnsmasq.log")
	default:
		return fmt.Sprintf("lab: no log named %q", instance)
	}
	b, _ := os.ReadFile(p)
	return string(b)
}

// logTail returns the last n lines of a peer's log, indented for a failure message.
func (l *Lab) logTail(instance string, n int) string {
	text := strings.TrimRight(l.Log(instance), "\n")
	if text == "" {
		return fmt.Sprintf("--- %s log: empty ---", instance)
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- %s log (last %d lines) ---\n    %s", instance, len(lines), strings.Join(lines, "\n    "))
}

// logTails is the diagnostic attached to failures: every peer's recent log.
func (l *Lab) logTails(n int, instances ...string) string {
	if len(instances) == 0 {
		instances = []string{"dns", "mx", "relay", "dovecot", "isp"}
	}
	parts := make([]string, 0, len(instances))
	for _, in := range instances {
		parts = append(parts, l.logTail(in, n))
	}
	return strings.Join(parts, "\n")
}

// teardown stops every process in the namespace and removes everything the lab created.
// It runs from t.Cleanup; the watchdog repeats it if this process dies first.
func (l *Lab) teardown() {
	l.down.Do(func() {
		// A failed Start already reported the failing peer's log.
		if l.tb.Failed() && l.ready {
			l.tb.Logf("lab %s logs at failure:\n%s", l.Name, l.logTails(15))
		}
		var errs []string
		if err := killNamespace(l.Name); err != nil {
			errs = append(errs, err.Error())
		}
		if err := deleteNamespace(l.Name); err != nil {
			errs = append(errs, err.Error())
		}
		remove := []string{l.resolv, l.Dir}
		if os.Getenv("MAILROUTE_LAB_KEEP") == "1" {
			remove = remove[:1]
			l.tb.Logf("lab: MAILROUTE_LAB_KEEP=1: keeping %s", l.Dir)
		}
		for _, p := range remove {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if l.watchdog != nil {
			l.watchdog.stop()
		}
		if len(errs) > 0 {
			l.tb.Errorf("lab: teardown of %s: %s", l.Name, strings.Join(errs, "; "))
		}
	})
}

// sortedKeys is used for stable diagnostics.
func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
