package send

import (
	"context"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/send/journal"
)

// deliverer is what relay and direct mode differ in when a message goes
// to its recipient: which server, and over which session. It keeps its
// sessions between calls until close.
//
// SendSingle (the wizard's test message) is one call of it: the same
// sessions, TLS, login and reply policy (judge) as a mailing, with no list
// and no journal. The mailing's workers (relayWorker, directWorker) run the
// same steps with what a single message does not need: limits, taking
// ahead, chaining, streaming, retries.
type deliverer interface {
	deliver(ctx context.Context, j *job, m *txn) result
	close()
}

// deliverer returns the mode's deliverer; the targets must be prepared
// (prepareTargets).
func (e *Engine) deliverer() deliverer {
	if e.cfg.Mode == config.ModeDirect {
		if e.pool == nil {
			e.pool = newPool(e.sessions, e.cfg.Direct.PerDomainThreads)
		}
		return directDeliverer{e}
	}
	return &relayDeliverer{e: e, t: e.relays[0]}
}

// relayDeliverer sends through one relay, over one session it reuses.
type relayDeliverer struct {
	e *Engine
	t *relayTarget
	s *session
}

func (d *relayDeliverer) deliver(ctx context.Context, j *job, m *txn) result {
	e := d.e
	j.target = d.t.name
	if d.s != nil && !d.s.usable(e.now()) {
		d.s.close()
		d.s = nil
	}
	if d.s == nil {
		s, err := e.connectRelay(ctx, d.t)
		if err != nil {
			// Not the recipient's fault: the relay could not be used.
			return result{state: journal.StatePending, noSession: true, relayFault: smtpclient.Classify("connect", err)}
		}
		d.s = s
	}
	res := e.judge(ctx, d.s, m, nil)
	if res.drop {
		d.s.close()
		d.s = nil
	} else {
		d.s.idle = e.now()
	}
	e.counted(d.t.name, &res)
	return res
}

func (d *relayDeliverer) close() {
	if d.s != nil {
		d.s.close()
	}
}

// directDeliverer sends to the recipient domain's MX hosts.
type directDeliverer struct{ e *Engine }

func (d directDeliverer) deliver(ctx context.Context, j *job, m *txn) result {
	j.target = j.rcpt.Domain
	mx, policy, err := d.e.mx.Lookup(ctx, j.rcpt.Domain)
	if r := mxResult(mx, err); r != nil {
		return *r
	}
	res := d.e.directDeliver(ctx, j, mx, policy, m)
	d.e.counted(j.target, &res)
	return res
}

func (d directDeliverer) close() { d.e.pool.closeAll() }
