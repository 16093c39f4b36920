package send

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mailroute/mailroute/internal/smtpclient"
)

// deadHosts remembers MX addresses that just failed to connect (timeout,
// refused, unreachable), so that later sessions to the same domain try the
// domain's other MX hosts first instead of waiting out the same connect
// timeout again for every session. RFC 5321 §4.5.4.1 asks senders to avoid
// retrying a failed host too often; Postfix keeps a similar "dead host"
// cache. A remembered address is not skipped, only tried last, so a domain
// whose only MX came back is still reached.
type deadHosts struct {
	mu    sync.Mutex
	until map[string]time.Time
	ttl   time.Duration
	max   int
}

func newDeadHosts() *deadHosts {
	// Five minutes: long enough to cover a mailing's burst to one domain,
	// short enough that a host back from a blip is used again soon. The
	// bound keeps memory flat whatever the list.
	return &deadHosts{until: map[string]time.Time{}, ttl: 5 * time.Minute, max: 4096}
}

func (d *deadHosts) mark(addr string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.until) >= d.max {
		for k, t := range d.until {
			if now.After(t) || len(d.until) >= d.max {
				delete(d.until, k)
			}
		}
	}
	d.until[addr] = now.Add(d.ttl)
}

func (d *deadHosts) clear(addr string) {
	d.mu.Lock()
	delete(d.until, addr)
	d.mu.Unlock()
}

func (d *deadHosts) isDead(addr string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.until[addr]
	return ok && now.Before(t)
}

// connectFailed: the host did not take the connection at all (as opposed
// to answering badly), the case worth remembering.
func connectFailed(err error) bool {
	if errors.Is(err, smtpclient.ErrTLSHandshake) {
		return false
	}
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || (errors.As(err, &ne) && ne.Timeout())
}
