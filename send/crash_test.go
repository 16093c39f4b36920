package send

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send/journal"
)

// crashSpec tells the child process of TestCrashFalseUnknownsAreBounded
// what to send.
type crashSpec struct {
	Addr, List, Text string
	Threads          int
}

// TestCrashFalseUnknownsAreBounded runs a mailing in a child process (this
// test binary again), freezes the server once every session is waiting for
// the reply to a final dot, kills the child with SIGKILL, and reads the
// journal it left, as a crash leaves it:
//   - every recipient whose dot reached the server is data_sent or sent,
//     so a re-run never sends it again;
//   - the recipients recorded data_sent whose message the server never
//     read number at most the streaming window per session (in flight,
//     taken ahead, made ready: see maxInFlight and maxLookahead).
//
// Then a re-run delivers everything else exactly once.
func TestCrashFalseUnknownsAreBounded(t *testing.T) {
	if spec := os.Getenv("MAILROUTE_CRASH_CHILD"); spec != "" {
		crashChild(t, spec)
		return
	}
	f := newFakeServer(t, nil, false)
	const threads, n, freezeAt = 4, 300, 60
	var mu sync.Mutex
	dots := map[string]int{} // the dot reached the server
	blocked, seen := 0, 0
	var released atomic.Bool
	release := make(chan struct{})
	frozen := make(chan struct{}) // closed when every session waits for its reply
	f.onData = func(_ *smtp.Conn, to string, _ int) error {
		mu.Lock()
		dots[to]++
		seen++
		freeze := !released.Load() && seen > freezeAt
		if freeze {
			blocked++
			if blocked == threads {
				close(frozen)
			}
		}
		mu.Unlock()
		if freeze {
			<-release
		}
		return nil
	}
	t.Cleanup(func() {
		if released.CompareAndSwap(false, true) {
			close(release)
		}
	})
	rcpts := addrs(n, "example.test")
	m := newMailing(t, f.addr, rcpts...)
	m.cfg.Threads = threads
	spec, _ := json.Marshal(crashSpec{Addr: f.addr, List: m.opts.ListPath, Text: m.opts.TextPath, Threads: threads})
	child := exec.Command(os.Args[0], "-test.run=^TestCrashFalseUnknownsAreBounded$")
	child.Env = append(os.Environ(), "MAILROUTE_CRASH_CHILD="+string(spec))
	toChild, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	fromChild, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-frozen:
	case <-time.After(20 * time.Second):
		_ = child.Process.Kill()
		_ = child.Wait()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d sessions reached the frozen server", blocked, threads)
	}
	// Every worker waits for the reply to a dot and takes nothing more
	// ahead. The worst case is every mark taken ahead on disk: the child
	// flushes its journal when asked, and says so.
	flushed := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(fromChild)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "flushed") {
				flushed <- l
				return
			}
		}
		flushed <- "the child's output ended"
	}()
	if _, err := io.WriteString(toChild, "flush\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-flushed:
		if l != "flushed" {
			_ = child.Process.Kill()
			t.Fatalf("the child did not flush its journal: %s", l)
		}
	case <-time.After(20 * time.Second):
		_ = child.Process.Kill()
		t.Fatal("the child did not flush its journal in 20s")
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	states := map[string]journal.State{}
	j, err := journal.Peek(m.opts.ListPath + ".journal")
	if err != nil {
		t.Fatal(err)
	}
	err = j.Each(func(_ int, r journal.Record) error { states[r.Addr] = r.State; return nil })
	j.Close()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	unknown, falseUnknown := 0, 0
	for _, r := range rcpts {
		st, d := states[r], dots[r]
		if d > 0 && st != journal.StateSent && st != journal.StateDataSent {
			t.Errorf("%s: the server has the message, the journal says %s: a re-run would send it again", r, st)
		}
		if st == journal.StateDataSent {
			unknown++
			if d == 0 {
				falseUnknown++
			}
		}
	}
	mu.Unlock()
	// The fake server offers CHUNKING, so the sessions stream (stream.go):
	// a session's window is what it has in flight or taken ahead to fill
	// it, the lookahead for the journal's commits, and the one being made
	// ready (README "Design: the journal"). Bytes in flight that the frozen
	// server has not read count here as never handed over.
	bound := (maxInFlight + maxLookahead + 1) * threads
	t.Logf("crash: %d recipients data_sent, %d of them never handed over (bound %d)", unknown, falseUnknown, bound)
	if falseUnknown == 0 || falseUnknown > bound {
		t.Errorf("%d false unknowns, want 1 to %d ((maxInFlight %d + maxLookahead %d + 1) × %d sessions)", falseUnknown, bound, maxInFlight, maxLookahead, threads)
	}

	released.Store(true)
	close(release)
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Sent+rep.Counts.Unknown != n || rep.Counts.Unknown != unknown {
		t.Errorf("after the re-run: %+v, want %d unknown", rep.Counts, unknown)
	}
	for _, r := range rcpts {
		got := f.ackedFor(r)
		if got > 1 || (got == 0 && states[r] != journal.StateDataSent) {
			t.Errorf("%s acknowledged %d times (journal said %s at the crash)", r, got, states[r])
		}
	}
}

// crashChild is the child's side: it sends until it is killed.
func crashChild(t *testing.T, spec string) {
	var cs crashSpec
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		t.Fatal(err)
	}
	m := newMailing(t, cs.Addr)
	m.cfg.Threads = cs.Threads
	m.opts.ListPath, m.opts.TextPath = cs.List, cs.Text
	m.opts.Timeouts = Timeouts{Connect: time.Minute, Command: time.Minute, Data: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := New(m.cfg, m.opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			// A message sent (an atomic counter, raised by a worker
			// after Run opened the journal) orders the look at
			// e.journal after Run set it.
			if e.Progress(time.Now()).Sent == 0 {
				fmt.Println("flushed nothing: no message was sent yet")
				continue
			}
			if err := e.journal.Flush(); err != nil {
				fmt.Println("flushed nothing:", err)
				continue
			}
			fmt.Println("flushed")
		}
	}()
	_, _ = e.Run(ctx)
}

// noneInFlight checks that a run that ended without a crash left no
// recipient recorded mid-attempt: those taken ahead and not tried went
// back to pending.
func noneInFlight(t *testing.T, m *mailing) {
	t.Helper()
	j, err := journal.Peek(m.opts.ListPath + ".journal")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	_ = j.Each(func(_ int, r journal.Record) error {
		if r.State == journal.StateDataSent || r.State == journal.StateSending {
			t.Errorf("%s left %s", r.Addr, r.State)
		}
		return nil
	})
}

func TestDrainPutsBackWhatWasTakenAhead(t *testing.T) {
	f := newFakeServer(t, nil, false)
	var acks atomic.Int64
	twenty := make(chan struct{}) // the run is well under way: drain it
	f.onData = func(*smtp.Conn, string, int) error {
		time.Sleep(2 * time.Millisecond) // a server slow enough to drain a run mid-way
		if acks.Add(1) == 20 {
			close(twenty)
		}
		return nil
	}
	m := newMailing(t, f.addr, addrs(200, "example.test")...)
	m.cfg.Threads = 4
	e, err := New(m.cfg, m.opts)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	defer close(ran)
	go func() {
		select {
		case <-twenty:
			e.Drain()
		case <-ran: // ended before 20 messages: the counts below say so
		}
	}()
	rep, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Unknown != 0 || rep.Counts.Pending == 0 {
		t.Errorf("drained run: %+v", rep.Counts)
	}
	noneInFlight(t, m)
	for _, r := range addrs(200, "example.test") {
		if rec, ok := m.lookup(t, r); ok && rec.State == journal.StatePending && rec.Attempts != 0 {
			t.Errorf("%s pending with %d attempts: a job put back is not charged", r, rec.Attempts)
		}
	}
}

func TestRelayDownMovesWhatWasTakenAhead(t *testing.T) {
	down := newFakeServer(t, nil, false)
	down.users = map[string]string{"bob": "pw"} // MAIL without AUTH: 502, the relay refuses us
	up := newFakeServer(t, nil, false)
	rcpts := addrs(60, "example.test")
	m := newMailing(t, down.addr, rcpts...)
	m.cfg.Threads = 4
	m.cfg.Relay = append(m.cfg.Relay, config.Relay{Host: "127.0.0.1", Port: up.port, TLS: config.TLSNone, Auth: "none", Threads: 2})
	m.cfg.Relay[0].Threads = 2
	rep, err := m.run(t)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, rep, Counts{Sent: 60})
	if down.sessionCount() == 0 {
		t.Error("the refusing relay was never tried")
	}
	noneInFlight(t, m)
	for _, r := range rcpts {
		if rec, _ := m.lookup(t, r); rec.Attempts != 1 || up.ackedFor(r) != 1 {
			t.Errorf("%s: %d attempts, %d acknowledgements", r, rec.Attempts, up.ackedFor(r))
		}
	}
}
