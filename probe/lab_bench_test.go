package probe_test

import (
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
)

// BenchmarkLabProbe measures the whole probe's wall time (the mailroute
// binary, DNS included) in the lab: every endpoint reachable (goal ≤ 1.5 s),
// and every endpoint filtered (goal ≤ timeout + 1 s). .ci/bench prints it.
func BenchmarkLabProbe(b *testing.B) {
	l := lab.Start(b, lab.Options{})
	lab.Mailroute(b) // built before the clock runs, not in the first probe
	reach := []string{"--tls-ca", l.CAFile, "--timeout", "2s",
		"--to", lab.AlphaDomain, "--to", lab.GammaDomain, "--to", lab.BetaDomain,
		"--relay", lab.RelayHost + ":465", "--relay", lab.RelayHost + ":587"}
	b.Run("reachable", func(b *testing.B) {
		var n int
		for b.Loop() {
			rep, _ := probeLab(b, l, reach...)
			n = len(rep.Endpoints())
			for _, e := range rep.Endpoints() {
				if e.Host != lab.BetaMX1Host && !e.Usable() {
					b.Fatalf("%s:%d not usable: %s %s", e.Host, e.Port, e.Verdict, e.Problem)
				}
			}
		}
		b.ReportMetric(float64(n), "endpoints")
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/probe")
	})
	b.Run("filtered-timeout-2s", func(b *testing.B) {
		for _, p := range []int{25, 465, 587} {
			if err := l.Filter("127.0.0.0/8", p); err != nil {
				b.Fatal(err)
			}
		}
		defer l.ResetFirewall()
		for b.Loop() {
			rep, _ := probeLab(b, l, reach...)
			for _, e := range rep.Endpoints() {
				if e.Verdict != "filtered" {
					b.Fatalf("%s:%d %s, want filtered", e.Host, e.Port, e.Verdict)
				}
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/probe")
		b.ReportMetric((2 * time.Second).Seconds(), "timeout-s")
	})
}
