package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// RestrictMX makes the Postfix MX refuse on purpose, as receivers do:
// senders maps an envelope sender address or domain to the whole reply
// ("550 5.7.26 Unauthenticated email from x is not accepted due to domain's
// DMARC policy"), rcpts maps a recipient address to its reply ("550 5.1.1
// ..."). With smtpd_delay_reject (the default) both come back at RCPT TO, as
// Gmail's DMARC refusals do. Nil maps lift the restrictions. It returns once
// a fresh session sees the new rules (checked with the first entry).
func (l *Lab) RestrictMX(senders, rcpts map[string]string) error {
	cf := filepath.Join(l.mx.conf, "main.cf")
	b, err := os.ReadFile(cf)
	if err != nil {
		return err
	}
	// Later definitions win in main.cf; earlier ones of ours are dropped.
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.HasPrefix(line, "smtpd_sender_restrictions =") && !strings.HasPrefix(line, "smtpd_recipient_restrictions =") {
			keep = append(keep, line)
		}
	}
	keep = append(keep,
		"smtpd_sender_restrictions = "+accessRule("check_sender_access", senders),
		"smtpd_recipient_restrictions = "+strings.TrimSuffix(accessRule("check_recipient_access", rcpts), ","))
	if err := os.WriteFile(cf, []byte(strings.Join(keep, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	old := time.Now().Add(-time.Minute) // see writeConfigs: Postfix waits for a fresh main.cf
	if err := os.Chtimes(cf, old, old); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if out, err := l.Command(ctx, tool("postfix"), "-c", l.mx.conf, "reload").CombinedOutput(); err != nil {
		return fmt.Errorf("postfix reload: %v: %s", err, out)
	}
	// Wait for the rules to apply: smtpd processes started before the
	// reload finish their sessions with the old ones.
	from, to, want := "probe@"+AlphaDomain, "probe@"+AlphaDomain, "250"
	for k, v := range senders {
		from, want = "probe@"+strings.TrimPrefix(k, "@"), v[:3]
		if strings.Contains(k, "@") {
			from = k
		}
		break
	}
	if len(senders) == 0 {
		for k, v := range rcpts {
			to, want = k, v[:3]
			break
		}
	}
	var last string
	for ctx.Err() == nil {
		if last, err = l.rcptReply(ctx, from, to); err == nil && strings.HasPrefix(last, want) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the MX did not take its new rules: RCPT from %s to %s got %q (%v), want %s", from, to, last, err, want)
}

func accessRule(check string, m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(check + " inline:{")
	for _, k := range keys {
		fmt.Fprintf(&b, " { %s = %s }", k, m[k])
	}
	b.WriteString(" }")
	return b.String()
}

// rcptReply opens a plain session to the MX and returns its reply to RCPT
// TO for from → to (the session is then closed; nothing is sent).
func (l *Lab) rcptReply(ctx context.Context, from, to string) (string, error) {
	addr := net.JoinHostPort(MXAddr, "25")
	conn, err := l.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	c := smtpclient.New(ctx, conn, smtpclient.Options{Addr: addr, Helo: "lab.example",
		Timeouts: smtpclient.Timeouts{Connect: 5 * time.Second, Command: 5 * time.Second}})
	defer c.Quit()
	if err := c.Open(ctx); err != nil {
		return "", err
	}
	if err := c.Mail(from); err != nil {
		return err.Words(), nil
	}
	if err := c.Rcpt(to); err != nil {
		return err.Words(), nil
	}
	return "250", nil
}
