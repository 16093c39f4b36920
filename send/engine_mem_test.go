package send

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLargeListMemory sends MAILROUTE_MEM_RECIPIENTS messages (e.g.
// 1000000) to an in-process sink and reports the peak heap and RSS. It is
// opt-in: it takes minutes and writes a large journal.
func TestLargeListMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MAILROUTE_MEM_RECIPIENTS"))
	if n <= 0 {
		t.Skip("set MAILROUTE_MEM_RECIPIENTS=1000000 to run")
	}
	f := newFakeServer(t, nil, false)
	f.sink = true
	// As the command does (cmd/mailroute/send.go).
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(SoftMemoryLimit))
	m := newMailing(t, f.addr)
	fl, err := os.Create(m.opts.ListPath)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(fl)
	w.WriteString("email,name\n")
	for i := range n {
		fmt.Fprintf(w, "user%d@d%d.example.test,Person %d\n", i, i%5000, i)
	}
	w.Flush()
	fl.Close()
	m.cfg.Threads = 8
	runtime.GC()
	var peakHeap, peakAnon, peakFile atomic.Uint64
	var e atomic.Pointer[Engine]
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		profiled := false
		for {
			anon, file := rss()
			peakAnon.Store(max(peakAnon.Load(), anon))
			peakFile.Store(max(peakFile.Load(), file))
			if p := os.Getenv("MAILROUTE_MEM_PROFILE"); p != "" && !profiled && e.Load() != nil && e.Load().Progress(time.Now()).Done() > n/2 {
				profiled = true
				if f, err := os.Create(p); err == nil {
					runtime.GC()
					pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	eng, err := New(m.cfg, m.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.Store(eng)
	rep, err := eng.Run(t.Context())
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Sent != n {
		t.Errorf("sent %d of %d", rep.Counts.Sent, n)
	}
	st, _ := os.ReadFile("/proc/self/status")
	var hwm string
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "VmHWM") || strings.HasPrefix(l, "VmRSS") {
			hwm += strings.Join(strings.Fields(l), " ") + "; "
		}
	}
	fi, _ := os.Stat(filepath.Join(m.dir, "list.csv.journal"))
	t.Logf("%d messages in %s (%.0f msg/s); peak heap in use %d MB; peak RSS anon %d MB, file-backed %d MB; %s journal %d MB",
		n, time.Since(start).Round(time.Second), float64(n)/time.Since(start).Seconds(),
		peakHeap.Load()>>20, peakAnon.Load()>>20, peakFile.Load()>>20, hwm, fi.Size()>>20)
}

// rss reads the anonymous and file-backed resident set of this process.
func rss() (anon, file uint64) {
	st, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(st), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = v << 10
		case "RssFile:":
			file = v << 10
		}
	}
	return anon, file
}
