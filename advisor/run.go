package advisor

import (
	"context"
	"strings"

	"github.com/mailroute/mailroute/probe"
)

// The one order of a recommendation, for mailroute advise and the wizard
// alike: probe, log in to the relay, measure its limits, decide. The
// network is probe's: Run calls it and decides from what it reports
// (README "Design: architecture": the advisor decides and never touches the
// network itself; it calls probe for measurements).

// Inputs are what Run works from.
type Inputs struct {
	Prober  *probe.Prober
	Request probe.Request
	// Login says the user has a login for the relay: the relay endpoint is
	// chosen among those that offer AUTH (ChooseRelay).
	Login bool
	// OrNoLogin, with Login, falls back to an endpoint that takes mail
	// without a login when none offers one, instead of to none: the
	// wizard then goes on without asking for a login.
	OrNoLogin bool
	// Decide is what the user told, for Decide. Run fills in Report and
	// FromMX; an empty User becomes the login accepted at the relay.
	Decide Input
}

// Hooks let a caller show each step and ask its questions between them.
// Every hook may be nil. An error from a hook ends Run, which returns it
// as it is, with the result so far.
type Hooks struct {
	// Probed sees the report as soon as the probe ends.
	Probed func(ctx context.Context, rep *probe.Report) error
	// Relay is told the relay endpoint chosen for the login and the
	// measurement (nil: none) and whether a login will be checked there.
	Relay func(ctx context.Context, end *probe.Endpoint, login bool) error
	// Credentials gives the login to check at end; last is the previous
	// check (nil the first time). Nil credentials: no login.
	Credentials func(ctx context.Context, end *probe.Endpoint, last *probe.Login) (*probe.Credentials, error)
	// LoggedIn sees each login check; again, after a refusal, asks
	// Credentials for another try.
	LoggedIn func(ctx context.Context, l *probe.Login) (again bool, err error)
	// Measure is asked once the login, if any, was accepted: whether to
	// measure end's limits, and how. end is nil when no relay port can take
	// the mail; nothing is measured then.
	Measure func(ctx context.Context, end *probe.Endpoint, cred *probe.Credentials) (opt probe.MeasureOptions, ok bool, err error)
	// Measured sees the measurement.
	Measured func(ctx context.Context, m *probe.Measurement) error
}

// Result is what Run found and decided.
type Result struct {
	// Report is the probe's, with the login check and the measurement.
	Report *probe.Report
	// Relay is the endpoint logged in to and measured; nil when none.
	Relay *probe.Endpoint
	// Cred is the login the relay accepted; nil when none was.
	Cred *probe.Credentials
	// Recommendation is nil only when a hook ended Run.
	Recommendation *Recommendation
}

// Run probes, checks the login, measures and decides, calling the hooks
// between the steps. Once ctx is done the login and the measurement are
// skipped (they would only wait for it), and the decision is still made
// from what was found, so an interrupted advise can show it as partial.
func Run(ctx context.Context, in Inputs, h Hooks) (*Result, error) {
	p := in.Prober
	rep := p.Run(ctx, in.Request)
	res := &Result{Report: rep}
	if h.Probed != nil {
		if err := h.Probed(ctx, rep); err != nil {
			return res, err
		}
	}

	insecure := in.Decide.InsecureAuth
	end, _ := ChooseRelay(rep, in.Login, insecure)
	login := in.Login && end != nil
	if end == nil && in.Login && in.OrNoLogin {
		end, _ = ChooseRelay(rep, false, insecure)
	}
	res.Relay = end
	if h.Relay != nil {
		if err := h.Relay(ctx, end, login); err != nil {
			return res, err
		}
	}
	if login && ctx.Err() == nil && h.Credentials != nil {
		if err := runLogin(ctx, p, end, h, res); err != nil {
			return res, err
		}
	}

	if (rep.Login == nil || rep.Login.OK) && ctx.Err() == nil && h.Measure != nil {
		opt, ok, err := h.Measure(ctx, end, res.Cred)
		if err != nil {
			return res, err
		}
		if ok && end != nil {
			rep.Measure = p.Measure(ctx, end, opt)
			if h.Measured != nil {
				if err := h.Measured(ctx, rep.Measure); err != nil {
					return res, err
				}
			}
		}
	}

	d := in.Decide
	d.Report = rep
	if d.User == "" && res.Cred != nil {
		d.User = res.Cred.User
	}
	d.FromMX = SenderMX(ctx, p, rep, d.FromDomain)
	res.Recommendation = Decide(d)
	return res, nil
}

// runLogin checks logins at end until one is accepted, or Credentials
// gives none, or LoggedIn asks for no other try. The last check is the
// report's.
func runLogin(ctx context.Context, p *probe.Prober, end *probe.Endpoint, h Hooks, res *Result) error {
	var last *probe.Login
	for {
		cred, err := h.Credentials(ctx, end, last)
		if err != nil || cred == nil {
			return err
		}
		last = p.Login(ctx, end, *cred)
		res.Report.Login = last
		if last.OK {
			res.Cred = cred
		}
		again := false
		if h.LoggedIn != nil {
			if again, err = h.LoggedIn(ctx, last); err != nil {
				return err
			}
		}
		if last.OK || !again {
			return nil
		}
	}
}

// SenderMX looks up the sender domain's MX hosts through the prober, for
// the catalog match, unless the report has them (the domain was probed as
// a recipient domain) or there is no network to ask.
func SenderMX(ctx context.Context, p *probe.Prober, rep *probe.Report, domain string) []string {
	if domain == "" || rep.Offline || ctx.Err() != nil {
		return nil
	}
	for _, d := range rep.Domains {
		if strings.EqualFold(d.Name, domain) {
			return nil // the report has them
		}
	}
	hosts, err := p.MXHosts(ctx, domain)
	if err != nil {
		return nil
	}
	return hosts
}
