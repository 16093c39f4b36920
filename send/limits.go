package send

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// The limits a mailing obeys are small pieces that compose (after maddy's
// internal/limits): a token bucket per rate (global, per relay), a semaphore
// for the sessions open at once, and a per-key semaphore for the sessions to
// one recipient domain. A worker takes what it needs, in a fixed order, and
// gives back the semaphores when its session closes.

// RateLimiter lets through at most Rate messages per window, smoothly: a
// token bucket whose burst is one window's worth capped at a few messages,
// so a "500/d" mailing does not fire 500 messages in its first second.
// The nil *RateLimiter is no limit.
type RateLimiter struct {
	lim *rate.Limiter
}

// maxBurst caps the bucket: a fresh limiter may send this many at once.
// A relay that counts "30 per minute" still sees at most this many in a
// burst; more would trip per-second counters some providers also keep.
const maxBurst = 5

// NewRateLimiter returns a limiter for r, or nil (no limit) when r is zero.
func NewRateLimiter(r Rate) *RateLimiter {
	if r.N <= 0 || r.Window <= 0 {
		return nil
	}
	perSec := float64(r.N) / r.Window.Seconds()
	return &RateLimiter{lim: rate.NewLimiter(rate.Limit(perSec), min(r.N, maxBurst))}
}

// Wait blocks until one message may go, or ctx is done (its error is
// returned). A nil limiter never waits.
func (l *RateLimiter) Wait(ctx context.Context) error {
	if l == nil {
		return ctx.Err()
	}
	return l.lim.Wait(ctx)
}

// Semaphore bounds how many holders there are at once.
type Semaphore struct {
	slots chan struct{}
}

// NewSemaphore returns a semaphore of n slots; n <= 0 means one.
func NewSemaphore(n int) *Semaphore {
	return &Semaphore{slots: make(chan struct{}, max(n, 1))}
}

// Acquire takes a slot, waiting until one is free or ctx is done.
func (s *Semaphore) Acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryAcquire takes a slot if one is free now.
func (s *Semaphore) TryAcquire() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release gives back a slot taken by Acquire or TryAcquire.
func (s *Semaphore) Release() { <-s.slots }

// InUse is the number of slots held now.
func (s *Semaphore) InUse() int { return len(s.slots) }

// KeyedSemaphore is a semaphore per key (a recipient domain), each of n
// slots. Keys nobody holds take no memory, so it stays as small as the
// number of sessions open, whatever the number of domains in the list.
type KeyedSemaphore struct {
	n    int
	mu   sync.Mutex
	held map[string]int
	wake chan struct{} // closed and replaced on every Release
}

// NewKeyedSemaphore returns a semaphore of n slots per key; n <= 0 means one.
func NewKeyedSemaphore(n int) *KeyedSemaphore {
	return &KeyedSemaphore{n: max(n, 1), held: map[string]int{}, wake: make(chan struct{})}
}

// TryAcquire takes a slot for key if one is free now.
func (k *KeyedSemaphore) TryAcquire(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held[key] >= k.n {
		return false
	}
	k.held[key]++
	return true
}

// Acquire takes a slot for key, waiting until one is free or ctx is done.
func (k *KeyedSemaphore) Acquire(ctx context.Context, key string) error {
	for {
		k.mu.Lock()
		if k.held[key] < k.n {
			k.held[key]++
			k.mu.Unlock()
			return nil
		}
		wake := k.wake
		k.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Release gives back a slot for key.
func (k *KeyedSemaphore) Release(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch k.held[key] {
	case 0:
		panic("send: KeyedSemaphore.Release of a key not held: " + key)
	case 1:
		delete(k.held, key)
	default:
		k.held[key]--
	}
	close(k.wake)
	k.wake = make(chan struct{})
}
