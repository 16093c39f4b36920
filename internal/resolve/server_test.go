package resolve

import (
	"math/rand/v2"
	"time"
)

// testResolver asks the given servers (internal/dnstest fakes) with short
// timeouts and a seeded Rand.
func testResolver(servers ...string) *Resolver {
	return &Resolver{
		Servers:  servers,
		Timeout:  500 * time.Millisecond,
		Attempts: 2,
		Rand:     rand.New(rand.NewPCG(1, 2)),
	}
}
