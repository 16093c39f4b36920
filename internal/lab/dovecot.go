package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Dovecot serves only SASL for the relay: no protocols, its own base_dir and state_dir in
// the lab dir (so it never meets a system Dovecot), and its auth listener inside the relay's
// queue_directory, where smtpd_sasl_path = private/auth finds it.

func (l *Lab) dovecotDir() string { return filepath.Join(l.Dir, "dovecot") }

func (l *Lab) writeDovecot() error {
	dir := l.dovecotDir()
	for _, d := range []string{dir, filepath.Join(dir, "run"), filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// The auth process runs as user dovecot and reads this itself; the password is a
	// throwaway, so world-readable is fine.
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(RelayUser+":{PLAIN}"+RelayPassword+"\n"), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`# mailroute lab: SASL for the relay only (generated)
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
instance_name = %[2]s
protocols =
listen = %[3]s
ssl = no
# Postfix only offers AUTH after TLS (smtpd_tls_auth_only), but tells Dovecot about TLS
# only in some versions: let Dovecot accept PLAIN without its own check.
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[4]s
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
# Fast answers for tests: no 2s delay after a failed login, and no growing penalty
# (2s..15s) for the client address after failures, which would slow every later login
# from the namespace. A listener with mode 0 is not created; the auth process then
# silently runs without penalties.
auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service auth {
  unix_listener %[5]s {
    mode = 0660
    user = postfix
    group = postfix
  }
}
`, dir, l.Name, RelayAddr, passwd, l.authSocket())
	return os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644)
}

func (l *Lab) authSocket() string { return filepath.Join(l.relay.queue, "private", "auth") }

// startDovecot starts Dovecot in the namespace; it creates its listeners before it
// daemonizes. The relay's queue_directory/private must exist already (postfix start).
func (l *Lab) startDovecot() error {
	dir := l.dovecotDir()
	if out, err := l.startDaemon(filepath.Join(dir, "start.out"), tool("dovecot"), "-c", filepath.Join(dir, "dovecot.conf")); err != nil {
		return fmt.Errorf("dovecot: %v: %s\n%s", err, out, l.logTail("dovecot", 20))
	}
	return nil
}

// dovecotReady connects to the auth socket as smtpd would and waits for the server's
// handshake, which proves the auth process started and parsed its passdb configuration.
func (l *Lab) dovecotReady(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", l.authSocket())
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid()); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("dovecot auth handshake: %w", err)
		}
		if strings.HasPrefix(line, "MECH\tPLAIN") {
			return nil
		}
		if strings.HasPrefix(line, "DONE") {
			return fmt.Errorf("dovecot auth offers no PLAIN mechanism")
		}
	}
}
