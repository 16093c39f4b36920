package send

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/quota"
	"github.com/mailroute/mailroute/internal/replies"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/send/journal"
)

// relayTarget is one [[relay]] with what its workers share: how to dial,
// its own rate, and whether it is out of service for this run.
type relayTarget struct {
	name    string // host:port, for messages
	spec    dialSpec
	threads int
	rate    *quota.Limiter // this account's limits; set by openLimits
	account string         // host:port and username: whose quota the ledger keeps

	mu   sync.Mutex
	down *smtpclient.Error // set once: the relay cannot be used in this run
	// unreachable: since when the relay has let no session open.
	unreachable outage
	// noBDAT: the relay offered CHUNKING and did not understand BDAT;
	// DATA for the rest of the run (stream.go).
	noBDAT atomic.Bool
}

// newRelayTargets prepares every relay: TLS roots, the secret (asked once,
// so a password_cmd runs once per run, not per session) and thread shares.
func newRelayTargets(ctx context.Context, cfg *config.Config, helo string, to Timeouts, trace *smtpclient.Trace) ([]*relayTarget, error) {
	var out []*relayTarget
	for i := range cfg.Relay {
		r := &cfg.Relay[i]
		t := &relayTarget{
			name:    r.Addr(),
			threads: r.Threads,
			account: r.Addr() + " " + r.Username,
			spec: dialSpec{
				Addr: r.Addr(), ServerName: r.Host, TLS: smtpclient.TLSPolicy(r.TLS), Helo: helo,
				InsecureAuth: r.InsecureAuth, Timeouts: to, MaxMessages: r.MessagesPerSession, Trace: trace,
			},
		}
		if t.threads <= 0 {
			// "0: share of the global threads".
			t.threads = max(1, cfg.Threads/len(cfg.Relay))
		}
		if r.TLS != config.TLSNone {
			tc, err := relayTLSConfig(r)
			if err != nil {
				return nil, err
			}
			t.spec.TLSConfig = tc
		}
		if mech := strings.ToLower(r.Auth); mech != "" && mech != "none" {
			secret, err := r.Secret(ctx)
			if err != nil {
				return nil, err
			}
			user := r.Username
			if _, err := smtpclient.SASLClient(mech, user, secret); err != nil {
				return nil, fmt.Errorf("relay %s: %w", r.Host, err)
			}
			// A client per session: a SASL client keeps its state.
			t.spec.Auth = func() (sasl.Client, error) { return smtpclient.SASLClient(mech, user, secret) }
		}
		out = append(out, t)
	}
	// Never more sessions than threads in all: trim the shares from the
	// largest down, keeping one per relay.
	total := 0
	for _, t := range out {
		total += t.threads
	}
	for cfg.Threads > 0 && total > max(cfg.Threads, len(out)) {
		big := out[0]
		for _, t := range out {
			if t.threads > big.threads {
				big = t
			}
		}
		big.threads--
		total--
	}
	return out, nil
}

// relayTLSConfig trusts the system roots plus ca_file and checks the
// certificate names the configured host.
func relayTLSConfig(r *config.Relay) (*tls.Config, error) {
	pool, err := smtpclient.Roots(r.CAFile)
	if err != nil {
		return nil, fmt.Errorf("relay %s: ca_file: %w", r.Host, err)
	}
	return &tls.Config{ServerName: r.Host, MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

func (t *relayTarget) isDown() *smtpclient.Error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.down
}

func (t *relayTarget) markDown(err *smtpclient.Error) {
	t.mu.Lock()
	if t.down == nil {
		t.down = err
	}
	t.mu.Unlock()
}

// connectRelay dials the relay. A failure is told to the user at once
// (once per kind of failure), with the time the run will give up: the
// relay is tried again, 1 s apart doubling to 15 s, until it has let no
// session open for retry.unreachable (default 2 min). A permanent failure
// (a host name that does not exist, a refused login or certificate, no
// STARTTLS) marks the relay down at once. A relay that is down is not the
// recipients' fault: they stay pending.
func (e *Engine) connectRelay(ctx context.Context, t *relayTarget) (*session, error) {
	for n := 1; ; n++ {
		if err := t.isDown(); err != nil {
			return nil, err
		}
		s, err := dial(ctx, &t.spec)
		if err == nil {
			t.unreachable.ok()
			return s, nil
		}
		se := smtpclient.Classify("connect", err)
		if ctx.Err() != nil {
			return nil, se
		}
		now := e.now()
		deadline, first := t.unreachable.failed(now, time.Duration(e.cfg.Retry.Unreachable), se.Error())
		if se.Permanent || !now.Before(deadline) {
			t.markDown(se)
			return nil, se
		}
		if first && e.opts.Notify != nil {
			e.opts.Notify(fmt.Sprintf("relay %s: %s; trying again until %s (retry.unreachable)", t.name, se, when(deadline, now)))
		}
		if !e.sleep(ctx, min(connectBackoff(n), deadline.Sub(now))) {
			return nil, se
		}
	}
}

// connectBackoff is the wait after the n-th failed connect: 1 s doubling
// to 15 s, so a relay back from a restart is found within seconds.
func connectBackoff(n int) time.Duration {
	return min(time.Second<<min(n-1, 4), 15*time.Second)
}

// relayWorker carries messages over one session to t at a time.
func (e *Engine) relayWorker(ctx context.Context, t *relayTarget) {
	// The session slot is held for the worker's life and taken before any
	// job, so a worker waiting for a slot never sits on a recipient.
	if err := e.sessions.Acquire(ctx); err != nil {
		return
	}
	defer e.sessions.Release()
	limits := quota.Of(e.global, t.rate)
	w := e.newWorker(len(limits) > 0, true)
	defer w.abandon()
	var s *session
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	for {
		if err := t.isDown(); err != nil {
			w.giveBack(func(n *job) { e.relayLost(n, t, err) })
			return
		}
		// The slot is taken before the recipient, so that no recipient
		// sits in a worker while a limit holds it back.
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
		j.target = t.name
		msg, res := e.prepare(w, j)
		if res != nil {
			tok.Cancel()
			e.settle(j, *res)
			continue
		}
		for {
			if s != nil && !s.usable(e.now()) {
				s.close()
				s = nil
			}
			reused := s != nil
			if s == nil {
				var err error
				if s, err = e.connectRelay(ctx, t); err != nil {
					s = nil
					tok.Cancel()
					e.relayLost(j, t, err)
					break
				}
			}
			if tok == nil && !e.opts.NoStreaming && !t.noBDAT.Load() && s.CanStream() {
				s = e.relayStream(ctx, t, w, s, j)
				break
			}
			res := e.judge(ctx, s, msg, w.next())
			if res.relayFault != nil {
				t.markDown(res.relayFault)
			}
			if res.drop {
				s.close()
				s = nil
			} else {
				s.idle = e.now()
			}
			if res.stale && reused {
				continue // the idle session had died; the same attempt on a fresh one
			}
			// The relay answered MAIL FROM by now (or the session broke
			// after it may have): the message counts against its limits.
			tok.Done(e.now())
			e.settleRelay(t, j, res)
			break
		}
	}
}

// settleRelay settles what one transaction to relay t came to, streamed
// or not: the refusal counts for the relay's breaker (one that opens
// leaves the relay alone), a relay fault hands the job to another relay
// or ends the run, anything else is the recipient's outcome.
func (e *Engine) settleRelay(t *relayTarget, j *job, res result) {
	e.counted(t.name, &res)
	if res.held {
		if v, se := e.refusals.Paused(t.name); v != nil {
			t.markDown(se)
		}
	}
	if res.relayFault != nil {
		e.relayLost(j, t, res.relayFault)
		return
	}
	e.settle(j, res)
}

// relayLost hands back a job whose relay could not be reached: to another
// relay when one is left, else the whole run stops with the relay's error.
func (e *Engine) relayLost(j *job, t *relayTarget, err error) {
	if e.soft.Err() != nil { // the run is stopping: connectRelay gave up for that
		e.putBack(j)
		return
	}
	for _, o := range e.relays {
		if o != t && o.isDown() == nil {
			// Another relay is up: the job goes to it, uncharged, and the
			// journal forgets the attempt (and a data_sent taken ahead).
			j.recorded, j.marked = false, false
			j.rec.State = journal.StatePending
			j.rec.Attempts--
			e.journal.Put(j.rcpt.Line, j.rec)
			if e.retry.push(j, e.now()) {
				e.progress.retrying.Add(1)
			} else {
				e.finish(j, journal.StatePending, "")
			}
			return
		}
	}
	e.putBack(j)
	e.fail(e.relayDown(t, err))
}

// relayDown is the run's error when relay t cannot be used: the refusals
// that opened its breaker, in words, or the failure that took it down.
func (e *Engine) relayDown(t *relayTarget, err error) *Error {
	se := smtpclient.Classify("connect", err)
	if v, _ := e.refusals.Paused(t.name); v != nil {
		return &Error{
			Err:  fmt.Errorf("relay %s: %s, %d times in a row (%s); left alone for this run", t.name, e.sentence(t.name, v), replies.BreakerAfter, se),
			Hint: v.Fix + "; recipients not sent are still pending: run the same command again once it is mended",
		}
	}
	return &Error{Err: fmt.Errorf("relay %s: %w", t.name, se), Hint: relayHint(se, t.name)}
}

func relayHint(se *smtpclient.Error, relay string) string {
	probe := "'mailroute probe --relay " + relay + "'"
	switch {
	case se.Command == "AUTH" && se.Code == 0:
		return "check the relay's tls and auth settings; " + probe + " shows what it offers"
	case se.Command == "AUTH":
		return "the relay refused the login: check username and password (many providers want an app password)"
	case se.Command == "TLS" || se.Command == "STARTTLS":
		return "check the relay's tls mode and ca_file; " + probe + " shows its certificate"
	case se.Command == "MAIL":
		return "the relay refuses the sender: set from to an address the relay lets you use"
	case se.Command == "connect" && isNotFound(se):
		return "the relay's host name does not exist in DNS: check host in the config for a typo; " + probe + " looks it up"
	case se.Command == "connect" || se.Command == "greeting" || se.Command == "EHLO":
		return "the relay could not be reached or would not talk: " + probe + " tells why"
	}
	return "recipients not tried are sent by running the same command again"
}

// isNotFound reports whether se is a host name that does not exist.
func isNotFound(se *smtpclient.Error) bool {
	var de *net.DNSError
	return errors.As(se, &de) && de.IsNotFound
}

// sleep waits d, or less if the run is stopped; it reports whether the
// full wait happened.
func (e *Engine) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-e.draining:
	}
	return false
}
