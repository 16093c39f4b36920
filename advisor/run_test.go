package advisor

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/probe"
)

// relay is an in-process submission server on 127.0.0.1 that offers AUTH
// PLAIN without TLS (the tests pass InsecureAuth) and takes MAIL and RCPT.
type relay struct {
	mu     sync.Mutex
	logins []string // user names tried, in order
	mails  int
}

func (r *relay) NewSession(*smtp.Conn) (smtp.Session, error) { return &relaySession{r: r}, nil }

type relaySession struct{ r *relay }

func (s *relaySession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *relaySession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.r.mu.Lock()
		s.r.logins = append(s.r.logins, user)
		s.r.mu.Unlock()
		if user != "ann" || pass != "right" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		return nil
	}), nil
}
func (s *relaySession) Mail(string, *smtp.MailOptions) error {
	s.r.mu.Lock()
	s.r.mails++
	s.r.mu.Unlock()
	return nil
}
func (s *relaySession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *relaySession) Data(io.Reader) error                 { return errors.New("no DATA in a probe") }
func (s *relaySession) Reset()                               {}
func (s *relaySession) Logout() error                        { return nil }

// runSetup serves a relay and returns Inputs that probe it, with a
// resolver on a closed port: the recipient domain's look-up fails at once
// and only the relay answers.
func runSetup(t *testing.T) (*relay, Inputs) {
	t.Helper()
	r := &relay{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := smtp.NewServer(r)
	s.Domain, s.AllowInsecureAuth = "relay.test", true
	s.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dns := closed.Addr().String()
	closed.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	p := &probe.Prober{Resolver: &resolve.Resolver{Servers: []string{dns}, Timeout: time.Second}, Timeout: 2 * time.Second}
	in := Inputs{Prober: p, Login: true,
		Request: probe.Request{Domains: []string{"example.invalid"}, Relays: []probe.RelaySpec{{Host: "127.0.0.1", Ports: []int{port}}}},
		Decide:  Input{InsecureAuth: true, PasswordEnv: "PW", ListSize: 10}}
	return r, in
}

// TestRunOrder: the steps come in the one order, each hook between them;
// a refused login is asked again, the accepted one is measured and goes
// into the decision with its password source.
func TestRunOrder(t *testing.T) {
	r, in := runSetup(t)
	var steps []string
	h := Hooks{
		Probed: func(_ context.Context, rep *probe.Report) error { steps = append(steps, "probed"); return nil },
		Relay: func(_ context.Context, end *probe.Endpoint, login bool) error {
			steps = append(steps, "relay "+strconv.FormatBool(end != nil && login))
			return nil
		},
		Credentials: func(_ context.Context, _ *probe.Endpoint, last *probe.Login) (*probe.Credentials, error) {
			steps = append(steps, "credentials")
			if last == nil {
				return &probe.Credentials{User: "ann", Secret: "wrong", InsecureAuth: true}, nil
			}
			return &probe.Credentials{User: "ann", Secret: "right", InsecureAuth: true}, nil
		},
		LoggedIn: func(_ context.Context, l *probe.Login) (bool, error) {
			steps = append(steps, "login "+strconv.FormatBool(l.OK))
			return true, nil
		},
		Measure: func(_ context.Context, end *probe.Endpoint, cred *probe.Credentials) (probe.MeasureOptions, bool, error) {
			steps = append(steps, "measure")
			if cred == nil || cred.Secret != "right" {
				t.Errorf("measure with %+v, want the accepted login", cred)
			}
			return probe.MeasureOptions{Cred: cred, From: "ann@example.test", MaxSessions: 2, MaxTransactions: 3, WindowBudget: -1}, true, nil
		},
		Measured: func(context.Context, *probe.Measurement) error { steps = append(steps, "measured"); return nil },
	}
	res, err := Run(context.Background(), in, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"probed", "relay true", "credentials", "login false", "credentials", "login true", "measure", "measured"}
	if !slices.Equal(steps, want) {
		t.Fatalf("steps %q, want %q", steps, want)
	}
	if res.Cred == nil || res.Report.Login == nil || !res.Report.Login.OK || res.Report.Measure == nil || res.Report.Measure.Transactions != 3 {
		t.Fatalf("result %+v, login %+v, measure %+v", res, res.Report.Login, res.Report.Measure)
	}
	rec := res.Recommendation
	if !rec.OK || rec.Config == nil || len(rec.Config.Relay) != 1 || rec.Config.Relay[0].Username != "ann" || rec.Config.Relay[0].PasswordEnv != "PW" {
		t.Fatalf("recommendation %+v config %+v", rec, rec.Config)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.logins[:2], []string{"ann", "ann"}) || r.mails < 3 {
		t.Errorf("the relay saw logins %q and %d MAIL", r.logins, r.mails)
	}
}

// TestRunStops: an error from a hook ends Run at once, returned as it is,
// and nothing after it runs; a refused login is not measured; without a
// login the password source is not the config's.
func TestRunStops(t *testing.T) {
	_, in := runSetup(t)
	stop := errors.New("stop")
	var after []string
	h := Hooks{
		Credentials: func(context.Context, *probe.Endpoint, *probe.Login) (*probe.Credentials, error) { return nil, stop },
		Measure: func(context.Context, *probe.Endpoint, *probe.Credentials) (probe.MeasureOptions, bool, error) {
			after = append(after, "measure")
			return probe.MeasureOptions{}, false, nil
		},
	}
	res, err := Run(context.Background(), in, h)
	if !errors.Is(err, stop) || res.Recommendation != nil || len(after) > 0 || res.Report.Login != nil {
		t.Fatalf("err %v, recommendation %+v, then %q", err, res.Recommendation, after)
	}

	h.Credentials = func(context.Context, *probe.Endpoint, *probe.Login) (*probe.Credentials, error) {
		return &probe.Credentials{User: "ann", Secret: "wrong", InsecureAuth: true}, nil
	}
	res, err = Run(context.Background(), in, h)
	if err != nil || len(after) > 0 || res.Report.Login == nil || res.Report.Login.OK || res.Cred != nil || res.Recommendation == nil {
		t.Fatalf("refused: err %v, then %q, login %+v, cred %+v", err, after, res.Report.Login, res.Cred)
	}

	h.Credentials = func(context.Context, *probe.Endpoint, *probe.Login) (*probe.Credentials, error) { return nil, nil }
	res, err = Run(context.Background(), in, h)
	if err != nil || !slices.Equal(after, []string{"measure"}) || res.Report.Measure != nil {
		t.Fatalf("no login: err %v, then %q, measure %+v", err, after, res.Report.Measure)
	}
	if c := res.Recommendation.Config; c == nil || len(c.Relay) != 1 || c.Relay[0].Username != "" || c.Relay[0].PasswordEnv != "" {
		t.Fatalf("no login: config %+v", c)
	}
}
