package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSemaphoreBoundsHolders(t *testing.T) {
	s := NewSemaphore(3)
	var now, most atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := s.Acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			n := now.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			now.Add(-1)
			s.Release()
		})
	}
	wg.Wait()
	if most.Load() > 3 {
		t.Errorf("%d holders at once, limit 3", most.Load())
	}
	if s.InUse() != 0 {
		t.Errorf("%d slots still held", s.InUse())
	}
}

func TestSemaphoreTryAndCancel(t *testing.T) {
	s := NewSemaphore(1)
	if !s.TryAcquire() || s.TryAcquire() {
		t.Fatal("TryAcquire on a 1-slot semaphore")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Acquire(ctx); err == nil {
		t.Fatal("Acquire on a full semaphore with a cancelled context succeeded")
	}
	s.Release()
	if !s.TryAcquire() {
		t.Fatal("slot not given back")
	}
}

func TestKeyedSemaphore(t *testing.T) {
	k := NewKeyedSemaphore(2)
	// Three calls in turn (each takes a slot): two succeed, the third not.
	first, second, third := k.TryAcquire("a"), k.TryAcquire("a"), k.TryAcquire("a")
	if !first || !second || third {
		t.Fatal("two slots per key")
	}
	if !k.TryAcquire("b") {
		t.Fatal("keys are independent")
	}
	got := make(chan struct{})
	go func() {
		if err := k.Acquire(context.Background(), "a"); err == nil {
			close(got)
		}
	}()
	select {
	case <-got:
		t.Fatal("Acquire did not wait")
	case <-time.After(20 * time.Millisecond):
	}
	k.Release("a")
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("Release did not wake the waiter")
	}
	k.Release("a")
	k.Release("a")
	k.Release("b")
	if len(k.held) != 0 {
		t.Errorf("keys left behind: %v (memory must not grow with domains)", k.held)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k.TryAcquire("c")
	k.TryAcquire("c")
	if err := k.Acquire(ctx, "c"); err == nil {
		t.Fatal("Acquire with a cancelled context succeeded")
	}
}
