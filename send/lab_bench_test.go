package send_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/lab"
	"github.com/mailroute/mailroute/send"
)

// sinkAddr is where smtp-sink (Postfix's fast test server) listens in the lab.
const sinkAddr = "127.0.7.1"

// startSink runs smtp-sink in the lab namespace until the benchmark ends.
func startSink(b *testing.B, l *lab.Lab) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sink := l.Command(ctx, "/usr/sbin/smtp-sink", "-u", "nobody", sinkAddr+":25", "1000")
	if err := sink.Start(); err != nil {
		b.Fatalf("smtp-sink: %v", err)
	}
	b.Cleanup(func() { cancel(); _ = sink.Wait() })
	l.WaitListening(b, sinkAddr+":25", 5*time.Second)
}

// sinkMailing writes a relay-mode mailing of n recipients to the sink
// with a body that makes each message about msgSize bytes.
func sinkMailing(b *testing.B, n, threads, msgSize int) *mailing {
	b.Helper()
	dir := b.TempDir()
	m := &mailing{dir: dir, config: filepath.Join(dir, "sink.toml"), list: filepath.Join(dir, "list.csv"), message: filepath.Join(dir, "message.txt")}
	cfg := fmt.Sprintf("mode = \"relay\"\nthreads = %d\n\n[[relay]]\nhost = \"sink.example\"\nport = 25\ntls = \"none\"\n", threads)
	f, err := os.Create(m.list)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("email,name,code\n")
	for i := range n {
		fmt.Fprintf(w, "r%07d@sink.example,Person %d,C%07d\n", i, i, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	// Headers mailroute adds (Date, Message-ID, MIME) are about 250 bytes.
	body := strings.Repeat("x", max(msgSize-330, 10))
	os.WriteFile(m.config, []byte(cfg), 0o600)
	os.WriteFile(m.message, []byte("From: Bench <bench@relay.example>\nSubject: Hello {{.name}}\n\nDear {{.name}} {{.code}}\n"+body+"\n"), 0o644)
	return m
}

// runSink runs mailroute send and returns its wall time, peak RSS and CPU
// time (user and system).
func runSink(b *testing.B, l *lab.Lab, m *mailing) (time.Duration, int64, time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	args := []string{"send", "--config", m.config, "--list", m.list, "--message", m.message, "--json"}
	if dir := os.Getenv("MAILROUTE_BENCH_JOURNAL_DIR"); dir != "" {
		// To tell the disk's share from mailroute's: e.g. /dev/shm (no fsync
		// cost). A directory of its own: m.dir's base name ("001") repeats
		// between runs, and a journal left by one run would make the next
		// resume a finished mailing and send nothing.
		jdir, err := os.MkdirTemp(dir, "mailroute-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(jdir) })
		args = append(args, "--journal", filepath.Join(jdir, "list.journal"))
	}
	cmd := l.Command(ctx, lab.Mailroute(b), args...)
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("mailroute send: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"failed": 0`) || !strings.Contains(string(out), `"deferred": 0`) {
		b.Fatalf("not everything was sent:\n%s", out)
	}
	// ip netns exec execs mailroute in place, so this is mailroute's own peak.
	maxrss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
	return took, maxrss, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// BenchmarkLabSink compares mailroute's throughput to a smtp-sink with
// Postfix's smtp-source -d (sessions reused, no journal, no templates) at the
// same session count and message size. Goal: ratio ≥ 1.0. .ci/bench runs it.
func BenchmarkLabSink(b *testing.B) {
	const n, sessions, size = 20000, 8, 500
	l := lab.Start(b, lab.Options{ExtraDNS: []string{"host-record=sink.example," + sinkAddr}})
	startSink(b, l)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		start := time.Now()
		src := l.Command(ctx, "/usr/sbin/smtp-source", "-d", "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n),
			"-l", strconv.Itoa(size), "-f", "bench@relay.example", "-t", "r@sink.example", sinkAddr+":25")
		if out, err := src.CombinedOutput(); err != nil {
			b.Fatalf("smtp-source: %v %s", err, out)
		}
		srcTook := time.Since(start)
		srcCPU := src.ProcessState.UserTime() + src.ProcessState.SystemTime()
		cancel()

		m := sinkMailing(b, n, sessions, size)
		took, _, cpu := runSink(b, l, m)
		srcRate, ourRate := float64(n)/srcTook.Seconds(), float64(n)/took.Seconds()
		b.ReportMetric(srcRate, "smtp-source-msg/s")
		b.ReportMetric(ourRate, "mailroute-msg/s")
		b.ReportMetric(ourRate/srcRate, "ratio")
		// CPU per message, the sender's own (the machine is shared with the
		// sink): where the time goes when the ratio is below 1.
		b.ReportMetric(float64(srcCPU.Microseconds())/n, "smtp-source-cpu-µs/msg")
		b.ReportMetric(float64(cpu.Microseconds())/n, "mailroute-cpu-µs/msg")
	}
}

// BenchmarkLabSinkMemory sends a large list to the sink and reports the
// peak RSS of the mailroute process, for a list ten times smaller and the
// full one: flat means memory does not grow with the list. The full size
// is MAILROUTE_BENCH_RECIPIENTS (default 1,000,000). Goal: ≤ 64 MB.
func BenchmarkLabSinkMemory(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("MAILROUTE_BENCH_RECIPIENTS")); err == nil && v > 0 {
		n = v
	}
	l := lab.Start(b, lab.Options{ExtraDNS: []string{"host-record=sink.example," + sinkAddr}})
	startSink(b, l)
	for b.Loop() {
		for _, size := range []int{n / 10, n} {
			m := sinkMailing(b, size, 8, 500)
			took, rss, _ := runSink(b, l, m)
			b.ReportMetric(float64(rss)/(1<<20), fmt.Sprintf("peak-RSS-MB@%d", size))
			b.ReportMetric(float64(size)/took.Seconds(), fmt.Sprintf("msg/s@%d", size))
		}
	}
}

// BenchmarkLabDistance: the same comparison at internet distance, through
// the lab's delay proxy (50 ms round trip) to smtp-sink, 10 sessions, 2 KB
// messages: what a user feels with a real relay (issue #12). With DATA a
// message costs a round trip at least; the figures are the baseline for
// RFC 3030 BDAT pipelining.
func BenchmarkLabDistance(b *testing.B) {
	const n, sessions, size = 1000, 10, 2048
	const farAddr = "127.0.7.2"
	l := lab.Start(b, lab.Options{ExtraDNS: []string{"host-record=sink.example," + farAddr}})
	startSink(b, l)
	l.DelayProxy(b, farAddr+":25", sinkAddr+":25", 25*time.Millisecond)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		start := time.Now()
		src := l.Command(ctx, "/usr/sbin/smtp-source", "-d", "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n),
			"-l", strconv.Itoa(size), "-f", "bench@relay.example", "-t", "r@sink.example", farAddr+":25")
		if out, err := src.CombinedOutput(); err != nil {
			b.Fatalf("smtp-source: %v %s", err, out)
		}
		srcTook := time.Since(start)
		cancel()
		m := sinkMailing(b, n, sessions, size)
		took, _, _ := runSink(b, l, m)
		srcRate, ourRate := float64(n)/srcTook.Seconds(), float64(n)/took.Seconds()
		b.ReportMetric(srcRate, "smtp-source-msg/s")
		b.ReportMetric(ourRate, "mailroute-msg/s")
		b.ReportMetric(ourRate/srcRate, "ratio")
	}
}

// BenchmarkLabDistancePostfix is issue #12's measurement: the lab's Postfix
// MX (which offers CHUNKING and PIPELINING, as the real relays do)
// behind the delay proxy, 25 ms each way, 10 sessions, 2 KB messages;
// mailroute (relay mode to it, no TLS, as smtp-source speaks none) against
// smtp-source -d. With BDAT, mailroute streams k transactions per session
// per round trip; NoStreaming's row (DATA, one per round trip) is the
// before. smtp-sink has no CHUNKING, so BenchmarkLabDistance stays DATA.
func BenchmarkLabDistancePostfix(b *testing.B) {
	const n, srcN, sessions, size = 3000, 300, 10, 2048
	const farAddr = "127.0.7.2"
	l := lab.Start(b, lab.Options{ExtraDNS: []string{"host-record=far.example," + farAddr}})
	l.DelayProxy(b, farAddr+":25", lab.MXAddr+":25", 25*time.Millisecond)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		start := time.Now()
		src := l.Command(ctx, "/usr/sbin/smtp-source", "-d", "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(srcN),
			"-l", strconv.Itoa(size), "-f", "bench@relay.example", "-t", "src@"+lab.AlphaDomain, farAddr+":25")
		if out, err := src.CombinedOutput(); err != nil {
			b.Fatalf("smtp-source: %v %s", err, out)
		}
		srcRate := float64(srcN) / time.Since(start).Seconds()
		cancel()
		for _, stream := range []bool{false, true} {
			m := sinkMailing(b, n, sessions, size)
			cfg := fmt.Sprintf("mode = \"relay\"\nthreads = %d\n\n[[relay]]\nhost = \"far.example\"\nport = 25\ntls = \"none\"\n", sessions)
			if err := os.WriteFile(m.config, []byte(cfg), 0o600); err != nil {
				b.Fatal(err)
			}
			list := strings.ReplaceAll(mustRead(b, m.list), "@sink.example", "@"+lab.AlphaDomain)
			if err := os.WriteFile(m.list, []byte(list), 0o600); err != nil {
				b.Fatal(err)
			}
			args := []string{"send", "--config", m.config, "--list", m.list, "--message", m.message, "--json"}
			if !stream {
				args = append(args, "--no-streaming")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := l.Command(ctx, lab.Mailroute(b), args...)
			out, runErr := cmd.Output()
			cancel()
			var rep send.Report
			if err := json.Unmarshal(out, &rep); err != nil || rep.Counts.Sent != n {
				b.Fatalf("send: %v %v %+v\n%s", runErr, err, rep.Counts, out)
			}
			name := "data"
			if stream {
				name = "bdat"
				b.ReportMetric(float64(rep.MaxInFlight), "max-in-flight")
			}
			ourRate := float64(n) / rep.Seconds
			b.ReportMetric(ourRate, name+"-msg/s")
			b.ReportMetric(ourRate/srcRate, name+"-ratio")
			// ip netns exec execs mailroute in place: its own CPU time, to
			// tell its share of the 2 cores from the server's.
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			b.ReportMetric(float64(cpu.Microseconds())/n, name+"-cpu-µs/msg")
		}
		b.ReportMetric(srcRate, "smtp-source-msg/s")
	}
}

func mustRead(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
