package send_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/send"
)

// TestLabDirectMTASTS: alpha.example publishes an MTA-STS policy (a TXT
// record in dnsmasq, the policy over HTTPS from openssl s_server with a
// lab-CA certificate), and so does delta.example, whose MX is the same
// Postfix under a name its certificate lacks. Direct delivery:
//   - enforce, the MX named, the lab CA trusted: delivered;
//   - the lab CA not trusted, so the policy cannot be fetched: delivered as
//     without MTA-STS (RFC 8461 §5);
//   - enforce, another MX named: deferred, nothing delivered;
//   - the same with ignore_mta_sts: delivered;
//   - enforce, the MX named but its certificate not valid for that name:
//     deferred, nothing sent in plaintext;
//   - a policy cached by an earlier run, the policy server now unusable:
//     the cached policy holds (deferred, as the MX certificate does not
//     verify without the lab CA).
func TestLabDirectMTASTS(t *testing.T) {
	const delta = lab.DeltaDomain
	dns := append(lab.MTASTSDNS(lab.AlphaDomain, "20261128"), lab.MTASTSDNS(delta, "1")...)
	l := lab.Start(t, lab.Options{ExtraDNS: append(dns, lab.DeltaDNS()...)})
	policy := func(mx string) string {
		return "version: STSv1\r\nmode: enforce\r\nmx: " + mx + "\r\nmax_age: 86400\r\n"
	}
	// One attempt: a deferral is the answer, not a reason to wait.
	direct := "mode = \"direct\"\nthreads = 2\n\n[retry]\nattempts = 1\n\n[direct]\n"
	trusted := direct + fmt.Sprintf("ca_file = %q\n", l.CAFile)
	// A dry run names the domains that enforce a policy.
	l.ServeMTASTS(t, policy(lab.MXHost))
	dry := newLabMailing(t, trusted, []string{"d1@" + lab.AlphaDomain, "d2@" + lab.BetaDomain})
	res := l.RunMailroute(t, nil, append(dry.args(), "--dry-run")...)
	var plan send.Report
	if err := json.Unmarshal(res.Stdout, &plan); err != nil || plan.Plan == nil ||
		plan.Plan.MTASTSCount != 1 || len(plan.Plan.MTASTS) != 1 || plan.Plan.MTASTS[0] != lab.AlphaDomain {
		t.Errorf("dry run: exit %d, %v\n%s%s", res.Code, err, res.Stdout, res.Stderr)
	}

	// Each run gets its own policy cache, but the last, which reuses the
	// first's: what one run learnt stands in the next (RFC 8461 §5.1).
	caches, cacheRoot := map[string]string{}, t.TempDir() // outlives the subtests
	for i, c := range []struct {
		name, domain, policy, config string
		sent                         bool
		reason                       string // in the deferral
		cacheOf                      string // the earlier case whose cache this run uses; "": a new one
	}{
		{"enforce, trusted", lab.AlphaDomain, policy(lab.MXHost), trusted, true, "", ""},
		{"policy not fetchable", lab.AlphaDomain, policy("mx2.alpha.example"), direct, true, "", ""},
		{"enforce, another MX named", lab.AlphaDomain, policy("mx2.alpha.example"), trusted, false, "names none of its MX hosts", ""},
		{"ignored", lab.AlphaDomain, policy("mx2.alpha.example"), trusted + "ignore_mta_sts = true\n", true, "", ""},
		{"enforce, certificate for other names", delta, policy("mx." + delta), trusted, false, "MTA-STS (enforce): mx." + delta, ""},
		// The first run's policy is cached; now the policy server cannot
		// be trusted (no ca_file), so nothing can be fetched: the cached
		// policy still holds, and the MX certificate does not verify
		// either. Without the cache this would go out unverified.
		{"cached policy stands", lab.AlphaDomain, policy("mx2.alpha.example"), direct, false, "MTA-STS (enforce): " + lab.MXHost, "enforce, trusted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l.ServeMTASTS(t, c.policy) // rewrites the file; the server reads it per request
			cache := caches[c.cacheOf]
			if cache == "" {
				cache = filepath.Join(cacheRoot, strconv.Itoa(i))
			}
			caches[c.name] = cache
			rcpt := []string{fmt.Sprintf("sts%d@%s", i, c.domain)}
			m := newLabMailing(t, c.config+fmt.Sprintf("mta_sts_cache = %q\n", cache), rcpt)
			rep, code := m.run(t, l)
			reasons := fmt.Sprint(rep.Reasons)
			switch {
			case c.sent && (code != 0 || rep.Counts.Sent != 1):
				t.Fatalf("exit %d, counts %+v, reasons %s", code, rep.Counts, reasons)
			case !c.sent && (code != 1 || rep.Counts.Deferred != 1 || !strings.Contains(reasons, c.reason)):
				t.Fatalf("exit %d, counts %+v, reasons %s; want deferred for %q", code, rep.Counts, reasons, c.reason)
			}
			t.Logf("%s: %s", c.name, reasons)
			if unread := len(rep.MTASTSUnread) > 0; unread != (c.name == "policy not fetchable") {
				t.Errorf("mta_sts_unread %q", rep.MTASTSUnread)
			}
			if c.sent {
				l.WaitDelivered(t, rcpt[0], 1, 30*time.Second)
			} else if n := l.Delivered()[rcpt[0]]; n != 0 {
				t.Errorf("delivered %d times despite the policy", n)
			}
		})
	}
}
