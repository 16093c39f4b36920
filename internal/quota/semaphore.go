package quota

import (
	"context"
	"sync"
)

// The limits a mailing obeys are small pieces that compose (after maddy's
// internal/limits): exact windows per rate (global, per relay account:
// window.go), a semaphore for the sessions open at once, and a per-key
// semaphore for the sessions to one recipient domain. A send worker takes
// what it needs, in a fixed order, and gives back the semaphores when its
// session closes.

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
