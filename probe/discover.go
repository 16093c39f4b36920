package probe

import (
	"context"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/resolve"
)

// discover finds the submission server of a sender's domain the way mail
// clients do: RFC 6186 SRV records (with RFC 8314 §5.1's _submissions for
// implicit TLS first), and when there are none the common names smtp.DOMAIN
// and mail.DOMAIN on 465 and 587. Only names that resolve become relays.
func (p *Prober) discover(ctx context.Context, domain string) []*Relay {
	var out []*Relay
	byHost := map[string]*Relay{}
	var hostModes = map[string][]portMode{}
	var order []string
	add := func(host string, pm portMode) {
		if _, ok := hostModes[host]; !ok {
			order = append(order, host)
		}
		hostModes[host] = append(hostModes[host], pm)
	}
	for _, svc := range []struct {
		name, mode string
	}{{"submissions", "implicit"}, {"submission", "starttls"}} {
		srvs, err := p.Resolver.SRV(ctx, svc.name, "tcp", domain)
		if err != nil {
			continue // none published (or "." = decidedly not offered): guesses follow
		}
		for _, s := range srvs {
			add(s.Target, portMode{int(s.Port), svc.mode})
		}
	}
	source := "srv"
	if len(order) == 0 {
		source = "guess"
		for _, h := range []string{"smtp." + domain, "mail." + domain} {
			add(h, portMode{465, "implicit"})
			add(h, portMode{587, "starttls"})
		}
	}
	var wg sync.WaitGroup
	for _, h := range order {
		r := &Relay{Host: h, Source: source}
		byHost[h] = r
		wg.Go(func() { p.lookupRelay(ctx, r, nil, hostModes[h]) })
	}
	wg.Wait()
	for _, h := range order {
		r := byHost[h]
		// A guessed name that does not exist is no finding: leave it out.
		if source == "guess" && r.Error != nil && (r.Error.Kind == resolve.NXDomain.String() || r.Error.Kind == resolve.NoData.String()) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// MXHosts looks up domain's MX host names, within the connect timeout: the
// advisor matches the provider catalog by them (MX *.google.com means
// Google, whatever the domain) and does no DNS itself (README "Design:
// architecture").
func (p *Prober) MXHosts(ctx context.Context, domain string) ([]string, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second // as defaults
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := p.Resolver.MX(ctx, domain)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mx := range res.Hosts {
		out = append(out, mx.Host)
	}
	return out, nil
}
