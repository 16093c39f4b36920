package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// localAddrs are added to lo: Postfix checks inet_interfaces against interface addresses,
// even though the whole of 127.0.0.0/8 is routed locally anyway.
var localAddrs = []string{DNSAddr, MXAddr, BetaMX2Addr, GammaAddr, RelayAddr, ISPAddr}

func (l *Lab) createNamespace() error {
	if out, err := exec.Command(tool("ip"), "netns", "add", l.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", l.Name, err, out)
	}
	var batch strings.Builder
	batch.WriteString("link set lo up\n")
	for _, a := range localAddrs {
		fmt.Fprintf(&batch, "addr add %s/32 dev lo\n", a)
	}
	cmd := exec.Command(tool("ip"), "-n", l.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s -batch: %v: %s", l.Name, err, out)
	}
	// "ip netns exec" bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf, so the
	// tool under test and Postfix's smtp client resolve through the lab DNS.
	if err := os.MkdirAll(l.resolv, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.resolv, "resolv.conf"), []byte("nameserver "+DNSAddr+"\n"), 0o644)
}

// Do runs f on an OS thread that has joined the lab's network namespace, so sockets that f
// creates live in the lab. f must create its sockets itself, not in goroutines it starts;
// the sockets may be used from anywhere afterwards. The mount namespace is not changed:
// name lookups from Go inside f use the host's resolv.conf, so dial IP addresses.
func (l *Lab) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked unless it is restored to its own namespace: a goroutine that
		// exits while locked takes its thread down with it, so no other goroutine ever runs
		// in the lab namespace by accident.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(l.nsPath)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", l.Name, err)
			return
		}
		err = f()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Dial connects from inside the lab's namespace, like a process run with Command would.
// address must be an IP literal with a port.
func (l *Lab) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := l.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Filter makes the tool's TCP connections to cidr:port time out (iptables DROP). Like all
// firewall methods it matches only uid 0, so the relay's delivery as user postfix passes.
// Errors are also reported on the lab's test with Errorf, so callers may ignore them.
func (l *Lab) Filter(cidr string, port int) error {
	return l.iptables("-A", "OUTPUT", "-p", "tcp", "-d", cidr, "--dport", strconv.Itoa(port),
		"-m", "owner", "--uid-owner", "0", "-j", "DROP")
}

// Refuse makes the tool's connections to cidr:port fail with a TCP reset (ECONNREFUSED).
func (l *Lab) Refuse(cidr string, port int) error {
	return l.iptables("-A", "OUTPUT", "-p", "tcp", "-d", cidr, "--dport", strconv.Itoa(port),
		"-m", "owner", "--uid-owner", "0", "-j", "REJECT", "--reject-with", "tcp-reset")
}

// Unreachable makes the tool's connections to cidr:port fail with ICMP host prohibited
// (EHOSTUNREACH, "no route to host").
func (l *Lab) Unreachable(cidr string, port int) error {
	return l.iptables("-A", "OUTPUT", "-p", "tcp", "-d", cidr, "--dport", strconv.Itoa(port),
		"-m", "owner", "--uid-owner", "0", "-j", "REJECT", "--reject-with", "icmp-host-prohibited")
}

// Intercept redirects the tool's connections to cidr:port to the ISP server (ISPAddr:25),
// as an ISP that answers every port-25 connection itself. DNAT in the nat OUTPUT chain
// works for loopback destinations without route_localnet (checked on Debian 12).
func (l *Lab) Intercept(cidr string, port int) error {
	return l.iptables("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", cidr, "--dport", strconv.Itoa(port),
		"-m", "owner", "--uid-owner", "0", "-j", "DNAT", "--to-destination", ISPAddr+":25")
}

// ResetFirewall removes every rule added by Filter, Refuse, Unreachable and Intercept, so
// subtests sharing one lab can start clean. Connections already redirected keep their
// conntrack entry until they close.
func (l *Lab) ResetFirewall() error {
	if err := l.iptables("-F", "OUTPUT"); err != nil {
		return err
	}
	return l.iptables("-t", "nat", "-F", "OUTPUT")
}

func (l *Lab) iptables(args ...string) error {
	cmd := exec.Command(tool("ip"), append([]string{"netns", "exec", l.Name, tool("iptables"), "-w"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		err = fmt.Errorf("lab: iptables %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		l.tb.Errorf("%v", err)
		return err
	}
	return nil
}

// nsInode identifies a named namespace; processes in it show "net:[<inode>]" in /proc.
func nsInode(name string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", name), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// pidsIn lists the live processes whose network namespace is ino (what "ip netns pids" does).
func pidsIn(ino uint64) []int {
	want := fmt.Sprintf("net:[%d]", ino)
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && link == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killNamespace SIGKILLs every process in the namespace until none is left. Nothing in a lab
// holds state worth a graceful stop, and SIGKILL cannot be ignored or delayed; the loop
// catches children forked while their parents were being killed.
func killNamespace(name string) error {
	ino, err := nsInode(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := pidsIn(ino)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still in namespace %s: %v", name, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command(tool("ip"), "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// watchdog is a detached shell that tears the lab down when this process dies without
// running its cleanups (SIGKILL, go test -timeout panic, os.Exit). It blocks reading a pipe
// whose only write end this process holds; the kernel closes it when the process dies.
type watchdog struct {
	cmd *exec.Cmd
	w   *os.File
}

func startWatchdog(l *Lab) (*watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	script := fmt.Sprintf(`read _ 2>/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do
	pids=$(%[1]s netns pids %[2]s 2>/dev/null)
	[ -z "$pids" ] && break
	kill -9 $pids 2>/dev/null
	sleep 0.1
done
%[1]s netns del %[2]s 2>/dev/null
rm -rf %[3]s %[4]s
`, tool("ip"), l.Name, l.resolv, keepDir(l.Dir))
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin = r
	// Own session: a Ctrl-C to go test's process group must not kill it before it cleans up.
	// Stdout and stderr stay /dev/null so go test never waits on output pipes it holds.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting watchdog: %w", err)
	}
	r.Close()
	return &watchdog{cmd: cmd, w: w}, nil
}

// keepDir is what the watchdog removes besides resolv.conf: the lab dir, unless
// MAILROUTE_LAB_KEEP=1 asks to keep it for a post-mortem.
func keepDir(dir string) string {
	if os.Getenv("MAILROUTE_LAB_KEEP") == "1" {
		return ""
	}
	return dir
}

// stop lets the watchdog run its (by now idempotent) teardown and waits for it.
func (wd *watchdog) stop() {
	wd.w.Close()
	done := make(chan struct{})
	go func() { _ = wd.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = wd.cmd.Process.Kill()
	}
}

// writeOwner records which process owns dir, with its start time so that a recycled pid
// is not mistaken for the owner.
func writeOwner(dir string) error {
	st, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "owner"), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), st)), 0o644)
}

// startTime is field 22 of /proc/<pid>/stat: clock ticks since boot when pid started.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// comm (field 2) may contain spaces and parentheses; the fields after the last ')' are plain.
	rest := b[bytes.LastIndexByte(b, ')')+1:]
	f := strings.Fields(string(rest))
	if len(f) < 20 {
		return "", fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f[19], nil
}

// ownerAlive reports whether the process that created a lab entry (mrlab-<pid>-<n> or
// bin-<pid>) still runs.
func ownerAlive(entry string) bool {
	s := strings.TrimPrefix(strings.TrimPrefix(entry, nsPrefix), "bin-")
	if i := strings.IndexByte(s, '-'); i >= 0 {
		s = s[:i]
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return true // not ours to judge
	}
	cur, err := startTime(pid)
	if err != nil {
		return false
	}
	if b, err := os.ReadFile(filepath.Join(Root, entry, "owner")); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 && f[1] != cur {
			return false
		}
	}
	return true
}

// cleanupStale removes labs left by processes that died before their teardown ran (and
// whose watchdog was killed too), so daemons and namespaces never pile up.
func cleanupStale(tb testing.TB) {
	seen := map[string]bool{}
	var stale []string
	add := func(dir string, keep func(string) bool) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			n := e.Name()
			if keep(n) && !seen[n] {
				seen[n] = true
				if !ownerAlive(n) {
					stale = append(stale, n)
				}
			}
		}
	}
	isLab := func(n string) bool { return strings.HasPrefix(n, nsPrefix) }
	add("/run/netns", isLab)
	add("/etc/netns", isLab)
	add(Root, func(n string) bool { return isLab(n) || strings.HasPrefix(n, "bin-") })
	for _, n := range stale {
		var errs []string
		if isLab(n) {
			if err := killNamespace(n); err != nil {
				errs = append(errs, err.Error())
			}
			if err := deleteNamespace(n); err != nil {
				errs = append(errs, err.Error())
			}
			if err := os.RemoveAll(filepath.Join("/etc/netns", n)); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if err := os.RemoveAll(filepath.Join(Root, n)); err != nil {
			errs = append(errs, err.Error())
		}
		if len(errs) > 0 {
			tb.Logf("lab: removing stale %s: %s", n, strings.Join(errs, "; "))
		} else {
			tb.Logf("lab: removed stale %s (its process is gone)", n)
		}
	}
}
