package send

import (
	"testing"
	"time"
)

// BenchmarkRelaySend sends b.N messages through one relay to an in-process
// sink, journal (with its fsyncs) included: msg/s is the number to compare
// with smtp-source at the same session count.
func BenchmarkRelaySend(b *testing.B) {
	for _, threads := range []int{1, 8} {
		b.Run("threads="+itoa(threads), func(b *testing.B) {
			f := newFakeServer(b, nil, false)
			m := newMailing(b, f.addr, addrs(b.N, "example.test")...)
			m.cfg.Threads = threads
			e, err := New(m.cfg, m.opts)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			rep, err := e.Run(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if rep.Counts.Sent != b.N {
				b.Fatalf("sent %d of %d", rep.Counts.Sent, b.N)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
