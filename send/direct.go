package send

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/quota"
	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/internal/sts"
	"github.com/mailroute/mailroute/send/journal"
	"github.com/mailroute/mailroute/send/mx"
)

// MXResolver finds where a domain's mail goes (mx.Resolver).
type MXResolver = mx.Resolver

// familyWanted reports whether a is of the address family the config
// asks for.
func familyWanted(family string, a netip.Addr) bool {
	switch family {
	case config.FamilyIPv4:
		return a.Unmap().Is4()
	case config.FamilyIPv6:
		return a.Is6() && !a.Is4In6()
	}
	return true
}

// resolverDown reports whether err says the resolver itself could not be
// asked (no answer, or the query could not be sent), as opposed to an
// answer about the domain (NXDOMAIN, SERVFAIL, …).
func resolverDown(err error) bool {
	var re *resolve.Error
	return errors.As(err, &re) && (re.Kind == resolve.Timeout || re.Kind == resolve.Network)
}

// resolverFailing tells the user at once that the resolver does not
// answer, and ends the run when it has not answered for retry.unreachable.
func (e *Engine) resolverFailing(err error) {
	now := e.now()
	// One notice for the resolver, whatever the domain asked about.
	deadline, first := e.resolverOut.failed(now, time.Duration(e.cfg.Retry.Unreachable), "resolver")
	if !now.Before(deadline) {
		e.fail(&Error{Err: fmt.Errorf("the DNS resolver does not answer: %w", err),
			Hint: "check the resolver in the config or /etc/resolv.conf ('mailroute probe' tells what DNS does); recipients not sent are still pending"})
		return
	}
	if first && e.opts.Notify != nil {
		e.opts.Notify(fmt.Sprintf("%v; recipients wait (pending) until it answers, the run ends at %s if it does not (retry.unreachable)", err, when(deadline, now)))
	}
}

// pool keeps idle direct sessions for reuse by the next recipient of the
// same domain, and enforces the session limits: at most Threads open in
// all (the engine's semaphore) and PerDomainThreads per domain. When every
// slot is taken and some sessions are idle, the one idle longest is closed
// to make room.
type pool struct {
	global *quota.Semaphore
	domain *quota.KeyedSemaphore

	mu   sync.Mutex
	idle map[string][]*session
	lru  *list.List // of *session, oldest at the back
	elem map[*session]*list.Element
	wake chan struct{}
}

func newPool(global *quota.Semaphore, perDomain int) *pool {
	return &pool{
		global: global, domain: quota.NewKeyedSemaphore(perDomain),
		idle: map[string][]*session{}, lru: list.New(), elem: map[*session]*list.Element{},
		wake: make(chan struct{}),
	}
}

// get returns an idle session for key, or nil when the caller now holds
// the slots to dial a new one (and must put or release it afterwards).
func (p *pool) get(ctx context.Context, key string, now time.Time) (*session, error) {
	for {
		p.mu.Lock()
		if len(p.idle[key]) > 0 {
			s := p.takeLocked(key)
			if s.usable(now) {
				p.mu.Unlock()
				return s, nil
			}
			// Too old to trust: close it, keep its slots for the dial.
			p.mu.Unlock()
			s.close()
			return nil, nil
		}
		if p.domain.TryAcquire(key) {
			if p.global.TryAcquire() {
				p.mu.Unlock()
				return nil, nil
			}
			if el := p.lru.Back(); el != nil {
				victim := el.Value.(*session)
				p.removeLocked(victim)
				p.domain.Release(victim.key)
				p.mu.Unlock()
				victim.close() // its global slot passes to us
				return nil, nil
			}
			p.domain.Release(key)
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *pool) takeLocked(key string) *session {
	l := p.idle[key]
	s := l[len(l)-1]
	p.removeLocked(s)
	return s
}

func (p *pool) removeLocked(s *session) {
	l := p.idle[s.key]
	for i := range l {
		if l[i] == s {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(p.idle, s.key)
	} else {
		p.idle[s.key] = l
	}
	p.lru.Remove(p.elem[s])
	delete(p.elem, s)
}

// put parks a healthy session for reuse.
func (p *pool) put(s *session) {
	p.mu.Lock()
	p.idle[s.key] = append(p.idle[s.key], s)
	p.elem[s] = p.lru.PushFront(s)
	p.broadcastLocked()
	p.mu.Unlock()
}

// release gives back the slots of a session that was closed (or never
// opened).
func (p *pool) release(key string) {
	p.mu.Lock()
	p.domain.Release(key)
	p.global.Release()
	p.broadcastLocked()
	p.mu.Unlock()
}

func (p *pool) broadcastLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// closeAll closes the idle sessions at the end of the run.
func (p *pool) closeAll() {
	p.mu.Lock()
	var all []*session
	for el := p.lru.Front(); el != nil; el = el.Next() {
		all = append(all, el.Value.(*session))
	}
	for _, s := range all {
		p.removeLocked(s)
		p.domain.Release(s.key)
		p.global.Release()
	}
	p.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}

// directWorker delivers to each recipient's MX, reusing idle sessions.
func (e *Engine) directWorker(ctx context.Context) {
	limits := quota.Of(e.global)
	w := e.newWorker(len(limits) > 0, false)
	defer w.abandon()
	for {
		var tok *quota.Token
		if len(limits) > 0 {
			if tok = e.slot(limits); tok == nil {
				return
			}
		}
		j := w.take(ctx)
		if j == nil {
			tok.Cancel()
			return
		}
		j.target = j.rcpt.Domain
		if v, _ := e.refusals.Paused(j.target); v != nil {
			// The domain's MX refused the sender too often: the recipient
			// waits for a re-run, unasked.
			tok.Cancel()
			e.refusals.Hold(j.target, v)
			j.rec.Reason = e.sentence(j.target, v)
			e.putBack(j)
			continue
		}
		msg, res := e.prepare(w, j)
		if res != nil {
			tok.Cancel()
			e.settle(j, *res)
			continue
		}
		mx, policy, err := e.mx.Lookup(ctx, j.rcpt.Domain)
		if resolverDown(err) {
			// The resolver itself does not answer: not the recipient's
			// fault. It stays pending; the run ends if this lasts.
			tok.Cancel()
			e.resolverFailing(err)
			j.rec.Reason = err.Error()
			e.putBack(j)
			continue
		} else if err == nil {
			e.resolverOut.ok()
		}
		if r := mxResult(mx, err); r != nil {
			tok.Cancel()
			e.settle(j, *r)
			continue
		}
		res2 := e.directDeliver(ctx, j, mx, policy, msg)
		if res2.noSession {
			tok.Cancel() // no MX took a session: nothing was counted
		} else {
			tok.Done(e.now())
		}
		e.counted(j.target, &res2)
		e.settle(j, res2)
	}
}

func (e *Engine) directDeliver(ctx context.Context, j *job, mx *resolve.MXResult, policy *sts.Policy, msg *txn) result {
	key := j.rcpt.Domain
	for {
		s, err := e.pool.get(e.soft, key, e.now())
		if err != nil {
			return result{state: journal.StateDeferred, reason: "stopped before the attempt", interrupted: true}
		}
		reused := s != nil
		if s == nil {
			var res *result
			if s, res = e.dialMX(ctx, key, mx, policy); res != nil {
				e.pool.release(key)
				res.noSession = true
				return *res
			}
		}
		res := e.judge(ctx, s, msg, nil)
		res.fallback = s.fallback()
		if res.drop {
			s.close()
			e.pool.release(key)
		} else {
			s.idle = e.now()
			e.pool.put(s)
		}
		if res.stale && reused {
			continue
		}
		return res
	}
}

// mxResult turns what DNS said into an outcome when it settles the
// recipient without SMTP: nil means go ahead.
func mxResult(mx *resolve.MXResult, err error) *result {
	if err != nil {
		var re *resolve.Error
		if errors.As(err, &re) && !re.Temporary() {
			// NXDOMAIN, or no MX and no address: RFC 5321 §5.1 says report
			// an error; nothing later will make the domain appear.
			return &result{state: journal.StateFailed, reason: err.Error()}
		}
		return &result{state: journal.StateDeferred, reason: err.Error()}
	}
	if mx.Null {
		return &result{state: journal.StateFailed, reason: "domain accepts no mail (null MX, RFC 7505)"}
	}
	return nil
}

// dialMX opens a session to the first MX that takes one, in preference
// order (RFC 5321 §5.1), trying the next host on a connect failure, a
// timeout, or a 4xx/5xx greeting. It returns the session, or the outcome
// for the recipient when none could be had.
//
// Under an enforced MTA-STS policy (RFC 8461 §5) only the MX hosts it
// names are tried, each over STARTTLS with a certificate valid for the
// host's name, never in plaintext; when none will do, the recipient is
// deferred (§5.1: a temporary failure), not sent without TLS.
func (e *Engine) dialMX(ctx context.Context, domain string, mx *resolve.MXResult, policy *sts.Policy) (*session, *result) {
	port := strconv.Itoa(e.cfg.Direct.Port)
	var last *smtpclient.Error
	tried, permanent := 0, 0
	// Addresses in preference order, those that just failed to connect
	// moved to the end (see deadHosts).
	type cand struct {
		host string
		addr string
	}
	var live, dead []cand
	var unlisted []string  // MX hosts the policy does not name
	hosts, skipped := 0, 0 // skipped: addresses of the family not wanted
	for _, h := range mx.Hosts {
		if policy != nil && !policy.Matches(h.Host) {
			unlisted = append(unlisted, h.Host)
			continue
		}
		if hosts++; hosts > e.cfg.Direct.MaxMXHosts {
			break
		}
		if len(h.Addrs) == 0 {
			if h.AddrErr != nil {
				last = &smtpclient.Error{Command: "connect", Message: fmt.Sprintf("%s: %v", h.Host, h.AddrErr)}
			}
			continue
		}
		for _, a := range h.Addrs {
			if !familyWanted(e.cfg.Direct.AddressFamily, a) {
				skipped++
				continue
			}
			c := cand{h.Host, net.JoinHostPort(a.String(), port)}
			if e.dead.isDead(c.addr, e.now()) {
				dead = append(dead, c)
			} else {
				live = append(live, c)
			}
		}
	}
	if policy != nil && len(live)+len(dead) == 0 && len(unlisted) > 0 {
		return nil, &result{state: journal.StateDeferred, reason: fmt.Sprintf("MTA-STS: %s's policy (enforce, mx: %s) names none of its MX hosts (%s); not sent without it (RFC 8461 §5.1)",
			domain, strings.Join(policy.MX, " "), strings.Join(unlisted, " "))}
	}
	for _, c := range append(live, dead...) {
		spec := &dialSpec{
			Addr: c.addr, ServerName: c.host,
			TLS: smtpclient.TLSPolicy(e.cfg.Direct.TLS), Helo: e.helo, Timeouts: e.opts.Timeouts, Trace: e.opts.Trace,
		}
		if policy != nil {
			spec.TLS = smtpclient.StartTLS
			spec.TLSConfig = &tls.Config{ServerName: c.host, RootCAs: e.roots, MinVersion: tls.VersionTLS12}
		}
		tried++
		s, err := dial(ctx, spec)
		if err != nil && spec.TLS == smtpclient.Opportunistic && errors.Is(err, smtpclient.ErrTLSHandshake) && ctx.Err() == nil {
			// Opportunistic TLS: the server offered STARTTLS but the
			// handshake failed; plaintext is still better than no mail
			// (RFC 7435 §1.3). Recorded, so the report can say so.
			plain := *spec
			plain.TLS = smtpclient.None
			if s, err = dial(ctx, &plain); err == nil {
				s.plain = true
			}
		}
		if err == nil {
			e.dead.clear(c.addr)
			s.key = domain
			return s, nil
		}
		last = smtpclient.Classify("connect", err)
		last.Message = c.host + ": " + last.Message
		if policy != nil {
			last.Message = "MTA-STS (enforce): " + last.Message
		}
		if last.Permanent && last.Reply() {
			permanent++
		} else if ctx.Err() == nil && connectFailed(err) {
			e.dead.mark(c.addr, e.now())
		}
		if ctx.Err() != nil {
			return nil, &result{state: journal.StateDeferred, reason: "stopped before the attempt", interrupted: true}
		}
	}
	if last == nil {
		if skipped > 0 {
			return nil, &result{state: journal.StateDeferred, reason: fmt.Sprintf("no MX host has an %s address (direct.address_family)", e.cfg.Direct.AddressFamily)}
		}
		return nil, &result{state: journal.StateDeferred, reason: "no MX host has an address"}
	}
	if tried > 0 && permanent == tried {
		// Every MX refused us outright (5xx greeting or EHLO).
		return nil, &result{state: journal.StateFailed, reason: last.Error(), code: last.Code}
	}
	return nil, &result{state: journal.StateDeferred, reason: last.Error(), code: last.Code}
}
