package mx

import (
	"context"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/resolve"
)

func TestMXCacheResolvesOncePerDomain(t *testing.T) {
	var calls int
	r := mxFunc(func(ctx context.Context, domain string) (*resolve.MXResult, error) {
		calls++
		if domain == "temp.test" {
			return nil, &resolve.Error{Name: domain, Kind: resolve.ServFail}
		}
		return &resolve.MXResult{Domain: domain}, nil
	})
	now := time.Unix(1000, 0)
	c := New(r, func() time.Time { return now })
	for range 3 {
		if _, _, err := c.Lookup(context.Background(), "a.test"); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("%d look-ups for one domain", calls)
	}
	c.Lookup(context.Background(), "temp.test")
	c.Lookup(context.Background(), "temp.test")
	if calls != 2 {
		t.Errorf("a temporary failure was not cached for a while (%d calls)", calls)
	}
	now = now.Add(RetryAfter + time.Second)
	c.Lookup(context.Background(), "temp.test")
	if calls != 3 {
		t.Errorf("a temporary failure was cached too long (%d calls)", calls)
	}
}

type mxFunc func(ctx context.Context, domain string) (*resolve.MXResult, error)

func (f mxFunc) MX(ctx context.Context, domain string) (*resolve.MXResult, error) {
	return f(ctx, domain)
}
