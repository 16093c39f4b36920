// Package mx is the sender's memory of where each recipient domain's mail
// goes: MX hosts and, when asked, the domain's MTA-STS policy (RFC 8461),
// each domain resolved once per run however the list is ordered.
package mx

import (
	"container/list"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/sts"
)

// Resolver finds where a domain's mail goes; *resolve.Resolver is one.
type Resolver interface {
	MX(ctx context.Context, domain string) (*resolve.MXResult, error)
}

// cacheSize bounds the MX cache. The list is streamed, not sorted, so
// recipients of one domain come at any time; a big LRU keeps each domain
// resolved about once without the cache growing with the list.
const cacheSize = 10000

// RetryAfter is how long a temporary DNS failure is remembered: long
// enough that a burst of recipients at a broken domain costs one look-up,
// short enough that the retry of a deferred recipient asks again.
const RetryAfter = 30 * time.Second

// Cache resolves each domain once (concurrent askers share the look-up)
// and remembers the answer for the run: its MX hosts and, with STS set,
// its MTA-STS policy, which is looked up with them.
type Cache struct {
	r   Resolver
	STS *sts.Fetcher // nil: MTA-STS is not looked up
	now func() time.Time

	mu             sync.Mutex
	byKey          map[string]*list.Element
	lru            *list.List // of *mxEntry, most recent first
	unreadPolicies []string   // domains whose MTA-STS policy could not be read, and why (the first maxUnread)
}

// maxUnread caps the MTA-STS failures a report names.
const maxUnread = 10

type mxEntry struct {
	domain  string
	ready   chan struct{} // closed when res/err are set
	res     *resolve.MXResult
	err     error
	policy  *sts.Policy // the domain's MTA-STS policy; nil: none (or none could be had)
	expires time.Time   // zero: for the run
}

// New returns an empty cache asking r; now is the clock.
func New(r Resolver, now func() time.Time) *Cache {
	return &Cache{r: r, now: now, byKey: map[string]*list.Element{}, lru: list.New()}
}

// Lookup returns domain's MX hosts and its MTA-STS policy (nil: none).
func (c *Cache) Lookup(ctx context.Context, domain string) (*resolve.MXResult, *sts.Policy, error) {
	c.mu.Lock()
	if el, ok := c.byKey[domain]; ok {
		ent := el.Value.(*mxEntry)
		select {
		case <-ent.ready:
			if !ent.expires.IsZero() && c.now().After(ent.expires) {
				c.lru.Remove(el)
				delete(c.byKey, domain)
				goto miss
			}
		default:
		}
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		select {
		case <-ent.ready:
			return ent.res, ent.policy, ent.err
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
miss:
	ent := &mxEntry{domain: domain, ready: make(chan struct{})}
	c.byKey[domain] = c.lru.PushFront(ent)
	for c.lru.Len() > cacheSize {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byKey, old.Value.(*mxEntry).domain)
	}
	c.mu.Unlock()

	ent.res, ent.err = c.r.MX(ctx, domain)
	if ent.err != nil && Temporary(ent.err) {
		ent.expires = c.now().Add(RetryAfter)
	}
	if ent.err == nil && !ent.res.Null && c.STS != nil {
		// RFC 8461 §5: a policy that cannot be had is no policy; the
		// domain's mail goes as it would without MTA-STS.
		var err error
		if ent.policy, err = c.STS.Lookup(ctx, domain); err != nil && ctx.Err() == nil {
			c.mu.Lock()
			if len(c.unreadPolicies) < maxUnread {
				c.unreadPolicies = append(c.unreadPolicies, domain+": "+err.Error())
			}
			c.mu.Unlock()
		}
		if ent.policy != nil && ent.policy.Mode != sts.Enforce {
			ent.policy = nil // testing and none change nothing for delivery
		}
	}
	close(ent.ready)
	return ent.res, ent.policy, ent.err
}

// Unread returns the MTA-STS policies that could not be read, for the report.
func (c *Cache) Unread() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.unreadPolicies)
}

// Temporary reports whether a look-up error may go away: a timeout,
// SERVFAIL, a network error; not NXDOMAIN. An error that is not a
// resolve.Error counts as temporary.
func Temporary(err error) bool {
	var re *resolve.Error
	if errors.As(err, &re) {
		return re.Temporary()
	}
	return true
}
