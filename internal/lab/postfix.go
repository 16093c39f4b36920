package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// postfix is one Postfix instance of the lab ("mx", "relay" or "isp"), with everything in
// its own directory: conf/ (main.cf, master.cf), queue/, data/, postfix.log, cert.pem, key.pem.
//
// "postfix -c DIR" accepts a non-default configuration directory without it being listed in
// alternate_config_directories when run as root (that check only guards the set-gid
// programs), so the lab never edits /etc/postfix/main.cf and concurrent labs cannot clash.
type postfix struct {
	l     *Lab
	name  string
	dir   string
	conf  string
	queue string
	log   string
}

func newPostfix(l *Lab, name string) *postfix {
	dir := filepath.Join(l.Dir, name)
	return &postfix{
		l:     l,
		name:  name,
		dir:   dir,
		conf:  filepath.Join(dir, "conf"),
		queue: filepath.Join(dir, "queue"),
		log:   filepath.Join(dir, "postfix.log"),
	}
}

type param struct{ k, v string }

// common is the main.cf shared by every instance. Chosen for speed and determinism: no
// DNS lookups of clients, no restrictions beyond relay control, no error sleeps or
// in-flow delays, and short retry intervals so the relay delivers promptly after a hiccup.
func (p *postfix) common(hostname, domain, interfaces string) []param {
	return []param{
		{"compatibility_level", "3.6"},
		{"queue_directory", p.queue},
		{"data_directory", filepath.Join(p.dir, "data")},
		{"maillog_file", p.log},
		{"maillog_file_prefixes", p.dir},
		{"myhostname", hostname},
		{"mydomain", domain},
		{"myorigin", "$myhostname"},
		{"mydestination", ""},
		{"relay_domains", ""},
		{"inet_interfaces", interfaces},
		{"inet_protocols", "ipv4"},
		{"mynetworks", "127.0.0.0/8"},
		{"biff", "no"},
		{"append_dot_mydomain", "no"},
		{"readme_directory", "no"},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"local_recipient_maps", ""},
		{"smtpd_peername_lookup", "no"},
		{"smtpd_client_restrictions", ""},
		{"smtpd_helo_restrictions", ""},
		{"smtpd_sender_restrictions", ""},
		{"smtpd_recipient_restrictions", ""},
		{"smtpd_helo_required", "no"},
		{"smtpd_delay_reject", "yes"},
		{"smtpd_error_sleep_time", "0"},
		{"in_flow_delay", "0"},
		{"queue_run_delay", "1s"},
		{"minimal_backoff_time", "1s"},
		{"maximal_backoff_time", "5s"},
		{"smtpd_tls_chain_files", filepath.Join(p.dir, "key.pem") + ", " + filepath.Join(p.dir, "cert.pem")},
		{"smtpd_tls_security_level", "may"},
		{"smtpd_tls_loglevel", "1"},
		{"smtp_tls_security_level", "may"},
		{"smtp_tls_CAfile", p.l.CAFile},
		{"smtp_tls_loglevel", "1"},
	}
}

// masterBase lists the internal services every instance needs; all with chroot "n", so
// the daemons see the real /etc/resolv.conf (the lab's, via ip netns exec) and paths.
const masterBase = `# service type  private unpriv  chroot  wakeup  maxproc command + args
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

const masterSMTP = "smtp      inet  n       -       n       -       -       smtpd\n"

func (l *Lab) writeConfigs() error {
	nobody, err := lookupID("nobody")
	if err != nil {
		return err
	}
	maildir := filepath.Join(l.mx.dir, "maildir")

	mx := append(l.mx.common(MXHost, AlphaDomain, strings.Join([]string{MXAddr, BetaMX2Addr, GammaAddr}, ", ")),
		param{"virtual_mailbox_domains", strings.Join([]string{AlphaDomain, BetaDomain, GammaDomain}, " ")},
		param{"virtual_mailbox_base", maildir},
		// One Maildir for every recipient: the virtual agent refuses $1 substitution from
		// regexp maps, and each delivered file carries its Delivered-To: header anyway.
		param{"virtual_mailbox_maps", "static:all/"},
		param{"virtual_uid_maps", "static:" + strconv.Itoa(nobody.uid)},
		param{"virtual_gid_maps", "static:" + strconv.Itoa(nobody.gid)},
		// mynetworks clients must not relay elsewhere: only the virtual domains are accepted.
		param{"smtpd_relay_restrictions", "reject_unauth_destination"},
	)
	if err := l.mx.write(mx, masterBase+masterSMTP); err != nil {
		return err
	}
	if err := os.MkdirAll(maildir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(maildir, nobody.uid, nobody.gid); err != nil {
		return err
	}

	isp := append(l.isp.common(ISPHost, "ispnet.example", ISPAddr),
		param{"smtpd_relay_restrictions", "reject_unauth_destination"}, // no domains: rejects all
	)
	if err := l.isp.write(isp, masterBase+masterSMTP); err != nil {
		return err
	}

	o := l.opts
	relay := append(l.relay.common(RelayHost, RelayDomain, RelayAddr),
		param{"smtpd_relay_restrictions", "permit_sasl_authenticated, reject"},
		param{"smtpd_sasl_type", "dovecot"},
		param{"smtpd_sasl_path", "private/auth"},
		param{"smtpd_client_connection_count_limit", strconv.Itoa(max(o.RelayConnLimit, 0))},
		param{"smtpd_client_message_rate_limit", strconv.Itoa(max(o.RelayMsgRateLimit, 0))},
		param{"anvil_rate_time_unit", fmt.Sprintf("%ds", max(int((o.RelayRateWindow+time.Second-1)/time.Second), 1))},
		// Empty: by default $mynetworks (all of loopback here) is exempt from every limit.
		param{"smtpd_client_event_limit_exceptions", ""},
		// The MX then sees the relay's own address, with its PTR, as a real relay's would be.
		param{"smtp_bind_address", RelayAddr},
	)
	if len(o.RelayRcptReplies) > 0 {
		relay = append(relay, param{"smtpd_recipient_restrictions", accessRule("check_recipient_access", o.RelayRcptReplies)})
	}
	if o.RelayHardErrorLimit > 0 {
		relay = append(relay, param{"smtpd_hard_error_limit", strconv.Itoa(o.RelayHardErrorLimit)})
	}
	if o.RelayNoChunking {
		relay = append(relay, param{"smtpd_discard_ehlo_keywords", "chunking"})
	}
	// No smtp inet service: RelayAddr:25 (and :2525) must be closed.
	services := masterBase + fmt.Sprintf(`%[1]s:%[2]d inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
%[1]s:%[3]d inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
`, RelayAddr, SubmissionPort, SubmissionsPort)
	if err := l.relay.write(relay, services); err != nil {
		return err
	}
	return l.writeDovecot()
}

// write creates the instance's directories and configuration files.
func (p *postfix) write(main []param, master string) error {
	postfixID, err := lookupID("postfix")
	if err != nil {
		return err
	}
	postdrop, err := user.LookupGroup("postdrop")
	if err != nil {
		return err
	}
	setgid, err := strconv.Atoi(postdrop.Gid)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.conf, 0o755); err != nil {
		return err
	}
	// The queue layout of /etc/postfix/postfix-files, made here so that "postfix start" can
	// skip its integrity checks (queue/quick-start): they run post-install and find(1) over
	// the queue, and took most of a second per instance on a busy 2-core machine.
	type dir struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}
	dirs := []dir{
		{p.queue, 0, 0, 0o755},
		{filepath.Join(p.queue, "pid"), 0, 0, 0o755},
		{filepath.Join(p.queue, "maildrop"), postfixID.uid, setgid, 0o730},
		{filepath.Join(p.queue, "public"), postfixID.uid, setgid, 0o710},
		{filepath.Join(p.dir, "data"), postfixID.uid, postfixID.gid, 0o700},
	}
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, dir{filepath.Join(p.queue, d), postfixID.uid, postfixID.gid, 0o700})
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chown(d.path, d.uid, d.gid); err != nil {
			return err
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(p.queue, "quick-start"), nil, 0o644); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# mailroute lab instance %q (generated)\n", p.name)
	for _, kv := range main {
		fmt.Fprintf(&b, "%s = %s\n", kv.k, kv.v)
	}
	for name, text := range map[string]string{"main.cf": b.String(), "master.cf": master} {
		path := filepath.Join(p.conf, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
		// Postfix re-reads a configuration file every 300ms until its mtime is at least two
		// seconds old ("let the file settle", dict_load_file): backdate it, or every
		// "postfix start" and postqueue waits about 2s.
		old := time.Now().Add(-time.Minute)
		if err := os.Chtimes(path, old, old); err != nil {
			return err
		}
	}
	return nil
}

// start runs "postfix start" in the namespace. It prints fatal errors only to a terminal
// or maillog_file, so failures carry the log tail as well as the command's output.
func (p *postfix) start() error {
	if out, err := p.l.startDaemon(filepath.Join(p.dir, "start.out"), tool("postfix"), "-c", p.conf, "start"); err != nil {
		return fmt.Errorf("postfix -c %s start: %v: %s\n%s", p.conf, err, out, p.l.logTail(p.name, 20))
	}
	return nil
}

// startDaemon runs a daemon's start command in the namespace and returns its output.
// The output goes to a file, not a pipe: a daemon that keeps its inherited stdout open
// (Dovecot does) would otherwise block Wait until it exits.
func (l *Lab) startDaemon(outPath, name string, args ...string) (string, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return "", err
	}
	defer out.Close()
	cmd := exec.Command(tool("ip"), append([]string{"netns", "exec", l.Name, name}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(outPath)
	return strings.TrimSpace(string(b)), err
}

// RelayQueue returns the relay's queue listing (postqueue -p), for failure messages.
func (l *Lab) RelayQueue() string {
	out, err := exec.Command(tool("postqueue"), "-c", l.relay.conf, "-p").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("postqueue -p: %v: %s", err, out)
	}
	return string(out)
}

type ids struct{ uid, gid int }

func lookupID(name string) (ids, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return ids{}, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return ids{}, err
	}
	return ids{uid, gid}, nil
}

// readyCheck is one listener Start waits for.
type readyCheck struct {
	instance string // whose log to show on failure
	what     string
	probe    func(ctx context.Context) error
}

// waitReady waits until every peer answers like a client would see it: an SMTP greeting
// naming the right host (after a TLS handshake verified against the lab CA on 465), a DNS
// answer from the lab zone, and Dovecot's auth handshake on the relay's socket.
func (l *Lab) waitReady() error {
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(l.CAFile); err != nil || !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("reading CA %s: %v", l.CAFile, err)
	}
	greet := func(addr string, port int, host string, tlsName string) func(context.Context) error {
		return func(ctx context.Context) error {
			var tc *tls.Config
			if tlsName != "" {
				tc = &tls.Config{RootCAs: pool, ServerName: tlsName}
			}
			return l.greeting(ctx, net.JoinHostPort(addr, strconv.Itoa(port)), host, tc)
		}
	}
	checks := []readyCheck{
		{"dns", "dnsmasq on " + DNSAddr + ":53", l.dnsReady},
		{"mx", "mx on " + MXAddr + ":25", greet(MXAddr, 25, MXHost, "")},
		{"mx", "mx on " + BetaMX2Addr + ":25", greet(BetaMX2Addr, 25, MXHost, "")},
		{"mx", "mx on " + GammaAddr + ":25", greet(GammaAddr, 25, MXHost, "")},
		{"isp", "isp on " + ISPAddr + ":25", greet(ISPAddr, 25, ISPHost, "")},
		{"relay", fmt.Sprintf("relay on %s:%d", RelayAddr, SubmissionPort), greet(RelayAddr, SubmissionPort, RelayHost, "")},
		{"relay", fmt.Sprintf("relay on %s:%d (TLS)", RelayAddr, SubmissionsPort), greet(RelayAddr, SubmissionsPort, RelayHost, RelayHost)},
		{"dovecot", "dovecot auth socket", l.dovecotReady},
	}
	return parallel(len(checks), func(i int) error {
		c := checks[i]
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		var last error
		for {
			attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
			last = c.probe(attempt)
			cancelAttempt()
			if last == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready within %v: %v\n%s", c.what, startTimeout, last, l.logTail(c.instance, 25))
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// greeting connects from inside the namespace, reads the SMTP greeting and checks it
// names host, then says QUIT and reads to EOF. Waiting for the server to close matters:
// smtpd tells anvil about the disconnect before it closes, so this check never counts
// against the relay's connection limit once it returns.
func (l *Lab) greeting(ctx context.Context, addr, host string, tc *tls.Config) error {
	c, err := l.Dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	opts := smtpclient.Options{Addr: addr, ServerName: host, TLSConfig: tc}
	if tc != nil {
		opts.TLS = smtpclient.Implicit
	}
	cl := smtpclient.New(ctx, c, opts)
	defer cl.Close()
	if tc != nil {
		if err := cl.Handshake(ctx); err != nil {
			return err
		}
	}
	if err := cl.Greet(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if g := cl.Greeting.String(); !strings.Contains(g, " "+host+" ") {
		return fmt.Errorf("greeting %q does not name %s", g, host)
	}
	cl.Quit() // waits briefly for the server to close
	return nil
}
