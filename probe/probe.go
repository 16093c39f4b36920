package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/internal/sts"
)

// Prober runs probes. Its fields are its dependencies and knobs; the zero
// values of the optional ones are the defaults noted beside them.
type Prober struct {
	Resolver *resolve.Resolver // required
	Dialer   *net.Dialer       // nil: a plain dialer
	Timeout  time.Duration     // connect timeout per endpoint; 0: 5 s
	Helo     string            // name sent in EHLO; "": "localhost"
	Roots    *x509.CertPool    // trusted CAs; nil: the system roots
	// MXPort is where MX hosts are probed. Always 25 on the internet
	// (RFC 5321 §4.5.4.2); in-process tests set another.
	MXPort int
	// Parallel bounds the endpoints probed at once; 0: 64. High on purpose:
	// a filtered endpoint holds its slot for the whole timeout, and all of
	// them waiting together is what keeps the probe within one timeout.
	Parallel int
	// Stagger spaces connection starts so a burst of SYNs does not look like
	// a port scan to the network under test; 0: 5 ms.
	Stagger time.Duration
	// Now is the clock for certificate checks; nil: time.Now.
	Now func() time.Time
	// Progress, if set, is called as each endpoint finishes.
	Progress func(done, total int, e *Endpoint)
	// DialContext, if set, makes the connections of the login check and the
	// relay measurement instead of Dialer: lab tests pass one that dials
	// from inside a network namespace.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TimingPorts are the ports whose handshake port 25's is compared with
	// on an MX that answers with an unconfirmed identity (timing.go); nil:
	// 443, 587, 465.
	TimingPorts []int
	// Trace, if set, gets every SMTP conversation the probe has (endpoint
	// checks, login checks, measurement sessions), swaks-style, with AUTH
	// lines hidden (smtpclient.NewTrace).
	Trace *smtpclient.Trace
}

// Request says what to probe.
type Request struct {
	Domains []string    // recipient domains (normalized); empty: Builtin
	Relays  []RelaySpec // --relay
	// FromDomain, if set and no relay is given, is searched for its
	// submission server (RFC 6186 SRV, then smtp./mail. guesses).
	FromDomain string
	// Identity asks who this machine is on the internet: public address,
	// reverse DNS, blocklists (Report.Identity). Empty fields of
	// IdentityOptions take their defaults (DefaultIdentityOptions).
	Identity        bool
	IdentityOptions IdentityOptions
}

func (p *Prober) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Prober) dialer() *net.Dialer {
	if p.Dialer != nil {
		return p.Dialer
	}
	return &net.Dialer{}
}

func (p *Prober) defaults() {
	if p.Timeout <= 0 {
		p.Timeout = 5 * time.Second
	}
	if p.Helo == "" {
		p.Helo = "localhost"
	}
	if p.MXPort == 0 {
		p.MXPort = 25
	}
	if p.Parallel <= 0 {
		p.Parallel = 64
	}
	if p.Stagger == 0 {
		p.Stagger = 5 * time.Millisecond
	}
}

// Run probes everything req names and returns the report. It returns within
// about two timeouts plus DNS time even when the network is gone; a
// filtered MX adds its path trace (trace.go), an MX with an unconfirmed
// identity its timing comparison (timing.go), each under a timeout more.
func (p *Prober) Run(ctx context.Context, req Request) *Report {
	p.defaults()
	start := p.now()
	rep := &Report{StartedAt: start, Resolver: p.Resolver.Servers, Helo: p.Helo, Timeout: Duration(p.Timeout)}

	domains := req.Domains
	builtin := len(domains) == 0 && len(req.Relays) == 0 && req.FromDomain == ""
	if builtin {
		domains = Builtin
	}
	// DNS first, all at once, bounded by one timeout: offline must not hang.
	dctx, cancel := context.WithTimeout(ctx, p.Timeout)
	var wg sync.WaitGroup
	for _, name := range domains {
		d := &Domain{Name: name, Builtin: builtin}
		rep.Domains = append(rep.Domains, d)
		wg.Go(func() { p.lookupDomain(dctx, d) })
	}
	for _, spec := range req.Relays {
		r := &Relay{Host: spec.Host, Source: "--relay"}
		rep.Relays = append(rep.Relays, r)
		wg.Go(func() { p.lookupRelay(dctx, r, spec.Ports, nil) })
	}
	if req.Identity {
		wg.Go(func() { rep.Identity = p.Identity(dctx, req.IdentityOptions) })
	}
	var discovered []*Relay
	if req.FromDomain != "" && len(req.Relays) == 0 {
		wg.Go(func() { discovered = p.discover(dctx, req.FromDomain) })
	}
	wg.Wait()
	cancel()
	rep.Relays = append(rep.Relays, discovered...)
	p.checkResolver(ctx, rep)

	ends := rep.Endpoints()
	p.probeAll(ctx, ends)
	p.tracePaths(ctx, rep)
	p.judgeInterception(ctx, rep)
	rep.Port25ByFamily = port25ByFamily(rep)
	rep.Offline = offline(rep)
	rep.Summary = summarize(rep)
	rep.Elapsed = Duration(p.now().Sub(start))
	return rep
}

func (p *Prober) lookupDomain(ctx context.Context, d *Domain) {
	t := time.Now()
	defer func() { d.Lookup = Duration(time.Since(t)) }()
	res, err := p.Resolver.MX(ctx, d.Name)
	if err != nil {
		d.DNSError = dnsError(err)
		return
	}
	d.Implicit, d.NullMX = res.Implicit, res.Null
	for _, mx := range res.Hosts {
		h := MXHost{Host: mx.Host, Pref: mx.Pref}
		if mx.AddrErr != nil {
			h.AddrError = dnsError(mx.AddrErr).Message
		}
		for _, a := range pickAddrs(mx.Addrs) {
			h.Addrs = append(h.Addrs, addrString(a))
			d.Ends = append(d.Ends, &Endpoint{Role: RoleMX, Host: mx.Host, Addr: addrString(a),
				Port: p.MXPort, Pref: mx.Pref, TLSMode: "starttls"})
		}
		d.MX = append(d.MX, h)
	}
	if !d.NullMX {
		d.MTASTS = p.mtaSTS(ctx, d)
	}
}

// mtaSTS looks up d's MTA-STS policy: nil when it publishes none.
func (p *Prober) mtaSTS(ctx context.Context, d *Domain) *MTASTS {
	f := &sts.Fetcher{Resolver: p.Resolver, RootCAs: p.Roots, Timeout: p.Timeout, DialContext: p.DialContext}
	pol, err := f.Lookup(ctx, d.Name)
	switch {
	case err != nil:
		return &MTASTS{Error: err.Error()}
	case pol == nil:
		return nil
	}
	m := &MTASTS{ID: pol.ID, Mode: string(pol.Mode), MX: pol.MX, Matches: map[string]bool{}}
	for _, h := range d.MX {
		m.Matches[h.Host] = pol.Matches(h.Host)
	}
	return m
}

// portMode is one port of a relay and how it is spoken.
type portMode struct {
	port int
	mode string
}

func (p *Prober) lookupRelay(ctx context.Context, r *Relay, ports []int, modes []portMode) {
	for _, port := range ports {
		modes = append(modes, portMode{port, tlsModeFor(port)})
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(r.Host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		as, err := p.Resolver.Addrs(ctx, r.Host)
		if err != nil {
			r.Error = dnsError(err)
			return
		}
		addrs = pickAddrs(as)
	}
	for _, a := range addrs {
		r.Addrs = append(r.Addrs, addrString(a))
		for _, pm := range modes {
			r.Ends = append(r.Ends, &Endpoint{Role: RoleRelay, Host: r.Host, Addr: addrString(a), Port: pm.port, TLSMode: pm.mode})
		}
	}
}

// pickAddrs keeps the first IPv4 and the first IPv6 address: one of each
// family says all the probe needs about a host (is v4 open, is v6 routed)
// without multiplying connections to round-robin pools.
func pickAddrs(as []netip.Addr) []netip.Addr {
	var v4, v6 *netip.Addr
	for i := range as {
		if as[i].Unmap().Is4() && v4 == nil {
			v4 = &as[i]
		} else if !as[i].Unmap().Is4() && v6 == nil {
			v6 = &as[i]
		}
	}
	var out []netip.Addr
	for _, a := range []*netip.Addr{v4, v6} {
		if a != nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// probeAll probes every endpoint in parallel, bounded and staggered.
func (p *Prober) probeAll(ctx context.Context, ends []*Endpoint) {
	sem := make(chan struct{}, p.Parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, e := range ends {
		if i > 0 {
			select {
			case <-time.After(p.Stagger):
			case <-ctx.Done():
			}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.probeEndpoint(ctx, e)
			if p.Progress != nil {
				mu.Lock()
				done++
				p.Progress(done, len(ends), e)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func dnsError(err error) *DNSError {
	var re *resolve.Error
	if errors.As(err, &re) {
		return &DNSError{Kind: re.Kind.String(), Message: re.Error()}
	}
	return &DNSError{Kind: "error", Message: err.Error()}
}

// offline: every DNS lookup failed for lack of an answer and no endpoint was
// reached — no working network or resolver, rather than blocked mail.
func offline(rep *Report) bool {
	lookups, dead := 0, 0
	isDead := func(e *DNSError) bool {
		return e != nil && (e.Kind == "timeout" || e.Kind == "network")
	}
	for _, d := range rep.Domains {
		lookups++
		if isDead(d.DNSError) {
			dead++
		}
	}
	for _, r := range rep.Relays {
		lookups++
		if isDead(r.Error) {
			dead++
		}
	}
	for _, e := range rep.Endpoints() {
		if e.Verdict == Open {
			return false
		}
	}
	return lookups > 0 && dead == lookups
}
