package send

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRateLimiterSpacesMessages(t *testing.T) {
	l := NewRateLimiter(Rate{N: 20, Window: time.Second}) // burst 5, then one per 50 ms
	ctx := context.Background()
	start := time.Now()
	for range 10 {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// 5 at once, then 5 more at 50 ms each: about 250 ms.
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("10 messages at 20/s with burst 5 took %s, want about 250ms", d)
	}
}

func TestRateLimiterZeroIsNoLimit(t *testing.T) {
	l := NewRateLimiter(Rate{})
	if l != nil {
		t.Fatal("zero rate made a limiter")
	}
	for range 1000 {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRateLimiterHonoursContext(t *testing.T) {
	l := NewRateLimiter(Rate{N: 1, Window: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Fatal("the first message must pass at once:", err)
	}
	if err := l.Wait(ctx); err == nil {
		t.Fatal("second message of 1/h passed")
	}
}

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
	if !k.TryAcquire("a") || !k.TryAcquire("a") || k.TryAcquire("a") {
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
