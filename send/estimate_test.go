package send

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/config"
)

func rcpts(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d@example.test", prefix, i))
	}
	return out
}

// What an earlier run sent through the same relay counts in the dry run's
// estimate, read from the quota ledger; a dry run with no ledger counts
// nothing and creates none.
func TestDryRunEstimateCountsTheLedger(t *testing.T) {
	f := newFakeServer(t, nil, false)
	quotaDir := t.TempDir()
	hourly := config.Rates{{N: 10, Window: time.Hour}}

	fresh := newMailing(t, f.addr, rcpts("b", 20)...)
	fresh.cfg.Rate, fresh.opts.QuotaDir, fresh.opts.DryRun = hourly, quotaDir, true
	rep, err := fresh.run(t)
	if err != nil {
		t.Fatal(err)
	}
	// 10 now, 10 one span (an hour and a second) later.
	if est := rep.Plan.Estimate; est == nil || est.Seconds != 3601 || est.Limit != "the mailing's 10/h" || len(est.Used) != 0 {
		t.Fatalf("no ledger: estimate %+v, want 3601 s by the mailing's 10/h", est)
	}

	first := newMailing(t, f.addr, rcpts("a", 4)...)
	first.cfg.Rate, first.opts.QuotaDir = hourly, quotaDir
	if rep, err := first.run(t); err != nil || rep.Counts.Sent != 4 {
		t.Fatalf("first run: %v, %+v", err, rep)
	}

	second := newMailing(t, f.addr, rcpts("b", 20)...)
	second.cfg.Rate, second.opts.QuotaDir, second.opts.DryRun = hourly, quotaDir, true
	rep, err = second.run(t)
	if err != nil {
		t.Fatal(err)
	}
	est := rep.Plan.Estimate
	// 4 used and 20 more: the 24th message goes two spans after the 4th
	// (sent a moment ago), not one span after now.
	if est == nil || est.Seconds < 2*3601-30 || est.Seconds > 2*3601 {
		t.Fatalf("estimate %+v, want about 2 spans (7202 s)", est)
	}
	if !slices.Contains(est.Used, "the mailing's 10/h: 4 used") {
		t.Errorf("used %q, want the 4 of the first run", est.Used)
	}
}
