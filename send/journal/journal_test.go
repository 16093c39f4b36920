package journal

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	in := Record{
		State: StateDeferred, Run: 3, Attempts: 7, NextAt: time.Unix(1700000000, 5), Updated: time.Unix(1700000001, 0),
		Addr: "a@example.test", Domain: "example.test", Reason: "RCPT: 451 4.7.1 greylisted", Fallback: true,
	}
	var out Record
	if err := out.unmarshal(in.appendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	if !out.NextAt.Equal(in.NextAt) || !out.Updated.Equal(in.Updated) {
		t.Errorf("times: %v %v", out.NextAt, out.Updated)
	}
	out.NextAt, out.Updated, in.NextAt, in.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if out != in {
		t.Errorf("got %+v, want %+v", out, in)
	}
	if err := out.unmarshal([]byte{9, 9}); err == nil {
		t.Error("a damaged record was read")
	}
}

func TestJournalGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	meta := Meta{ListDigest: "l1", MessageDigest: "m1"}
	j, err := Open(path, meta, false)
	if err != nil {
		t.Fatal(err)
	}
	if j.Run() != 1 {
		t.Errorf("run %d", j.Run())
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				line := 2 + w*50 + i
				addr := fmt.Sprintf("w%d-%d@x.test", w, i)
				tk := j.Put(line, Record{State: StateSending, Attempts: 1, Addr: addr})
				if err := j.Wait(tk); err != nil {
					t.Error(err)
					return
				}
				j.Put(line, Record{State: StateSent, Attempts: 1, Addr: addr})
			}
		})
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j, err = Open(path, meta, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Run() != 2 {
		t.Errorf("second open: run %d, want 2", j.Run())
	}
	n := 0
	err = j.Each(func(line int, rec Record) error {
		n++
		if rec.State != StateSent || rec.Run != 1 || rec.Addr != fmt.Sprintf("w%d-%d@x.test", (line-2)/50, (line-2)%50) {
			return fmt.Errorf("line %d: %+v", line, rec)
		}
		return nil
	})
	if err != nil || n != 800 {
		t.Errorf("records %d, err %v", n, err)
	}
}

func TestJournalRefusesAnotherMailing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := Open(path, Meta{ListDigest: "l1", MessageDigest: "m1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	j.Put(2, Record{State: StateSent})
	j.Close()
	for _, meta := range []Meta{{"l2", "m1"}, {"l1", "m2"}} {
		if _, err := Open(path, meta, false); !errors.Is(err, ErrMismatch) {
			t.Errorf("%+v: err %v", meta, err)
		}
		if _, err := OpenReadOnly(path, meta); !errors.Is(err, ErrMismatch) {
			t.Errorf("read-only %+v: err %v", meta, err)
		}
	}
	j, err = Open(path, Meta{ListDigest: "l2", MessageDigest: "m2"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, ok, _ := j.Get(2); ok {
		t.Error("a fresh run kept the old records")
	}
}

func TestJournalInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := Open(path, Meta{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := Open(path, Meta{}, false); err == nil {
		t.Fatal("two runs opened one journal")
	}
}

// A record queued early is found on disk, without waiting, when it is
// needed; a Put the journal refuses gets a ticket whose Wait says why.
func TestJournalTickets(t *testing.T) {
	j, err := Open(filepath.Join(t.TempDir(), "j"), Meta{}, false)
	if err != nil {
		t.Fatal(err)
	}
	a := j.Put(2, Record{State: StateDataSent, Addr: "a@x.test"})
	b := j.Put(3, Record{State: StateDataSent, Addr: "b@x.test"})
	if b <= a {
		t.Fatalf("tickets %d then %d", a, b)
	}
	if err := j.Wait(b); err != nil {
		t.Fatal(err)
	}
	if !j.Durable(a) || !j.Durable(b) {
		t.Error("a record waited for (or queued before it) is not durable")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	late := j.Put(4, Record{State: StateSent})
	if j.Durable(late) || j.Wait(late) == nil {
		t.Error("a Put after Close looks written")
	}
}

// TestJournalPace: records nobody waits for are committed at the pace; a
// Wait does not sit out the pace. With an hour's pace, a Wait that returns
// at all was answered by the urgent path.
func TestJournalPace(t *testing.T) {
	j, err := openJournal(filepath.Join(t.TempDir(), "j"), Meta{}, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	waitOrFail(t, j, j.Put(1, Record{State: StateDataSent, Addr: "a@x.test"}))
	b := j.Put(2, Record{State: StateDataSent, Addr: "b@x.test"})
	time.Sleep(20 * time.Millisecond)
	if j.Durable(b) {
		t.Error("a record nobody waits for was committed before the pace")
	}
	waitOrFail(t, j, j.Put(3, Record{State: StateSent, Addr: "c@x.test"}))
	if !j.Durable(b) {
		t.Error("a record queued before a waited-for one is not durable")
	}
	if lat := j.Latency(); lat < time.Hour {
		t.Errorf("Latency %v is less than the pace", lat)
	}

	// At the real pace, a record nobody waits for gets there on its own.
	k, err := Open(filepath.Join(t.TempDir(), "k"), Meta{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	k.Put(1, Record{State: StateDataSent, Addr: "a@x.test"})
	d := k.Put(2, Record{State: StateSent, Addr: "b@x.test"})
	deadline := time.Now().Add(30 * time.Second)
	for !k.Durable(d) {
		if time.Now().After(deadline) {
			t.Fatal("a record nobody waited for was never committed")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitOrFail(t *testing.T, j *Journal, tk Ticket) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- j.Wait(tk) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait sat out the pace: nobody woke the committer")
	}
}
