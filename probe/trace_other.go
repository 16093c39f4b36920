//go:build !linux

package probe

import (
	"context"
	"net/netip"
	"time"
)

// hopProbe needs IP_RECVERR, which only Linux has: elsewhere every hop is
// an error and the trace is skipped with that reason.
func hopProbe(_ context.Context, _ netip.Addr, _, ttl int, _ time.Duration) Hop {
	return Hop{TTL: ttl, Result: HopError, Error: "not supported on this system (needs Linux IP_RECVERR)"}
}
