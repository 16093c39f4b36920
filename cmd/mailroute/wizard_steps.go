package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/probe"
)

// The wizard's first steps: who sends, what the network allows, the login
// and the relay's limits. The last steps are in wizard_end.go.

func (w *wizard) heading(s string) {
	fmt.Fprintln(w.out)
	bold.Fprintln(w.out, s)
}

// given shows an answer that came from a flag, so the transcript reads
// the same however the wizard was answered.
func (w *wizard) given(title, answer, flag string) {
	fmt.Fprintf(w.out, "%s %s (%s)\n", bold.Sprint(title+":"), answer, flag)
}

// step is a numbered heading; steps that do not apply are left out, and
// the numbers follow what was shown.
func (w *wizard) step(s string) {
	w.steps++
	w.heading(fmt.Sprintf("%d. %s", w.steps, s))
}

// say prints a paragraph, wrapped for an 80-column terminal.
func (w *wizard) say(format string, args ...any) {
	for _, l := range wrap(fmt.Sprintf(format, args...), 78) {
		fmt.Fprintln(w.out, l)
	}
}

// askSender asks for the sender address, the relay if the user knows it,
// and the list size, then decides where to look for a relay.
func (w *wizard) askSender(ctx context.Context) error {
	w.step("You")
	from := w.a.from
	if from != "" {
		w.given("Your email address", from, "--from")
	} else {
		var err error
		from, err = w.ui.input("Your email address",
			"The address your mailing will come from, e.g. you@example.com. mailroute looks up how its provider takes mail.",
			"", func(s string) error { _, err := probe.ParseFrom(s); return err })
		if err != nil {
			return err
		}
	}
	d, err := probe.ParseFrom(from)
	if err != nil {
		return usage(err, "give an address such as you@example.com")
	}
	w.from, w.fromDomain, w.req.FromDomain = from, d, d
	for _, r := range w.c.StringSlice("relay") {
		w.given("Your mail provider's SMTP server", r, "--relay")
	}
	if len(w.req.Relays) == 0 && !w.a.yes {
		v, err := w.ui.input("Your mail provider's SMTP server",
			"The server your mail program sends through, e.g. smtp.example.com (a port is optional). Leave it empty and mailroute looks for it.",
			"", func(s string) error {
				if s == "" {
					return nil
				}
				_, err := probe.ParseRelay(s)
				return err
			})
		if err != nil {
			return err
		}
		if v != "" {
			spec, _ := probe.ParseRelay(v)
			w.req.Relays = []probe.RelaySpec{spec}
		}
	}
	w.listSize = w.a.listSize
	if w.c.IsSet("list-size") {
		w.given("How many recipients will the mailing have", strconv.Itoa(w.listSize), "--list-size")
	}
	if !w.c.IsSet("list-size") && !w.a.yes {
		v, err := w.ui.input("How many recipients will the mailing have",
			"A number, to size how many messages go out at once. Leave it empty if you don't know yet.",
			"", func(s string) error {
				if n, err := strconv.Atoi(s); s != "" && (err != nil || n < 0) {
					return errors.New("a number, like 2000, or nothing")
				}
				return nil
			})
		if err != nil {
			return err
		}
		w.listSize, _ = strconv.Atoi(v)
	}
	if len(w.req.Relays) == 0 {
		w.candidates(ctx)
	}
	w.req.Domains = w.domains()
	w.req.Identity, w.req.IdentityOptions = true, w.a.identity
	return nil
}

// candidates finds relays to try when the user named none: the provider
// catalog by the sender domain or its MX hosts, else the prober's own
// search (SRV records, then smtp. and mail. names).
func (w *wizard) candidates(ctx context.Context) {
	mx := advisor.SenderMX(ctx, w.p, &probe.Report{}, w.fromDomain)
	m := advisor.Find("", w.fromDomain, mx)
	if m == nil || len(m.Provider.Submission) == 0 {
		w.say("mailroute will look for %s's SMTP server: in its DNS records (SRV, where providers publish it), then under the usual names smtp.%s and mail.%s.",
			w.fromDomain, w.fromDomain, w.fromDomain)
		return
	}
	byHost := map[string]*probe.RelaySpec{}
	var hosts []string
	for _, s := range m.Provider.Submission {
		if byHost[s.Host] == nil {
			byHost[s.Host] = &probe.RelaySpec{Host: s.Host}
			hosts = append(hosts, s.Host)
		}
		byHost[s.Host].Ports = append(byHost[s.Host].Ports, s.Port)
	}
	for _, h := range hosts {
		w.req.Relays = append(w.req.Relays, *byHost[h])
	}
	w.say("Your address is at %s (matched by %s); its SMTP server is %s.", m.Provider.Name, m.By, strings.Join(hosts, " and "))
	if m.Provider.Auth != "" {
		w.say("%s wants: %s.", m.Provider.Name, m.Provider.Auth)
	}
}

// advise tests every way out, checks the login, measures the relay and
// decides, in advisor.Run's order; the hooks below show each step and ask
// their questions between them.
func (w *wizard) advise(ctx context.Context) error {
	w.startProbe()
	in := advisor.Inputs{Prober: w.p, Request: w.req, Login: !w.a.noLogin, OrNoLogin: true,
		Decide: advisor.Input{ListSize: w.listSize, FromDomain: w.fromDomain, PasswordEnv: w.a.passEnv, PasswordCmd: w.a.passCmd,
			InsecureAuth: w.a.insecure, CAFile: w.c.String("tls-ca")}}
	res, err := advisor.Run(ctx, in, advisor.Hooks{Probed: w.probed, Relay: w.relay,
		Credentials: w.credentials, LoggedIn: w.loggedIn, Measure: w.askMeasure, Measured: w.measured})
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errStopped
	}
	w.rep, w.cred, w.rec = res.Report, res.Cred, res.Recommendation
	return w.recommend()
}

// startProbe says what is tested and shows the probe's progress.
func (w *wizard) startProbe() {
	w.step("Testing the ways out of this machine")
	what := []string{"port 25 of " + strings.Join(w.req.Domains, ", ") + " (can this machine deliver directly?)"}
	for _, r := range w.req.Relays {
		what = append(what, "the SMTP server "+r.Host)
	}
	if len(w.req.Relays) == 0 {
		what = append(what, "the SMTP servers found for "+w.fromDomain)
	}
	what = append(what, "and this machine's public address (what receivers think of it)")
	w.say("Testing %s. Nothing is sent; this takes at most about %s.", strings.Join(what, ", "), 3*w.p.Timeout)

	w.liveProbe = !w.ui.accessible && isTerminal(w.out)
	w.p.Progress = func(done, total int, e *probe.Endpoint) {
		if w.liveProbe {
			fmt.Fprintf(w.out, "\r\033[Ktesting… %d/%d  %s:%d %s", done, total, e.Host, e.Port, e.Verdict)
			return
		}
		fmt.Fprintf(w.out, "  %d/%d  %s port %d: %s\n", done, total, e.Host, e.Port, verdictWords(e))
	}
}

// probed explains what the probe saw.
func (w *wizard) probed(ctx context.Context, rep *probe.Report) error {
	if w.liveProbe {
		fmt.Fprint(w.out, "\r\033[K")
	}
	if ctx.Err() != nil {
		return errStopped
	}
	w.rep = rep
	w.say("Done in %s.", time.Duration(rep.Elapsed).Round(10*time.Millisecond))
	w.heading("What was found")
	printFindings(w.out, advisor.Explain(rep))
	return nil
}

func verdictWords(e *probe.Endpoint) string {
	switch {
	case e.Usable():
		return "answers"
	case e.Problem != "":
		return string(e.Verdict) + ", but " + e.Problem
	}
	return string(e.Verdict)
}

// relay says when the relay takes mail without a login, so none is asked
// for.
func (w *wizard) relay(_ context.Context, end *probe.Endpoint, login bool) error {
	if end != nil && !login && !w.a.noLogin {
		w.say("%s offers no login, so none is asked for.", end.Host)
	}
	return nil
}

// credentials asks for the relay login; after a refusal (last) the name
// and the password may be typed again.
func (w *wizard) credentials(_ context.Context, end *probe.Endpoint, last *probe.Login) (*probe.Credentials, error) {
	if last == nil {
		w.step("Your login at " + end.Host)
		w.login = loginTry{user: w.a.user}
		if w.login.user != "" {
			w.given("Login name at "+end.Host, w.login.user, "--user")
		}
	}
	w.login.attempt++
	if w.login.user == "" || w.login.attempt > 1 {
		def := w.login.user
		if def == "" {
			def = w.from
		}
		v := def
		if w.a.yes {
			w.given("Login name at "+end.Host, v, "--yes: your address")
		} else {
			var err error
			v, err = w.ui.input("Login name at "+end.Host,
				"Usually your full email address. Type none if this server takes mail without a login.", def, nil)
			if err != nil {
				return nil, err
			}
		}
		if strings.EqualFold(v, "none") {
			return nil, nil
		}
		w.login.user = v
	}
	user := w.login.user
	secret, ok, err := w.a.secretFromSource(w.c, end.Host)
	if err != nil {
		return nil, err
	}
	w.login.typed = !ok
	if ok {
		w.given("Password for "+user, "(hidden)", map[bool]string{true: "--password-env " + w.a.passEnv, false: "--password-cmd"}[w.a.passEnv != ""])
	}
	if w.login.typed {
		if secret, err = w.ui.password("Password for "+user,
			"Typed characters are not shown. The password stays in memory, for the login check, the measurement and the test message; the config names where it comes from, never the password itself."); err != nil {
			return nil, err
		}
	}
	w.say("Checking the login at %s:%d (nothing is sent)…", end.Host, end.Port)
	return &probe.Credentials{User: user, Secret: secret, InsecureAuth: w.a.insecure}, nil
}

// loggedIn explains the login check; a refused password typed here may be
// typed again, twice.
func (w *wizard) loggedIn(ctx context.Context, l *probe.Login) (again bool, err error) {
	if ctx.Err() != nil {
		return false, errStopped
	}
	f := advisor.ExplainLogin(l)
	printFindings(w.out, []advisor.Finding{f})
	if l.OK {
		w.typedPassword = w.login.typed
		return false, nil
	}
	if w.login.typed && l.Reply != "" && w.login.attempt < 3 {
		again, err := w.ui.confirm("Try another login name or password?", "", true)
		if err != nil || again {
			return again, err
		}
	}
	words := l.Reply
	if words == "" {
		words = l.Error
	}
	return false, &cmdError{code: exitProblem, err: fmt.Errorf("login to %s:%d as %s refused: %s; nothing was written", l.Host, l.Port, w.login.user, words), hint: hintOf(f.Action)}
}

// askMeasure asks for consent to measure the relay's limits.
func (w *wizard) askMeasure(_ context.Context, end *probe.Endpoint, cred *probe.Credentials) (opt probe.MeasureOptions, ok bool, err error) {
	if end == nil {
		return opt, false, nil
	}
	where := fmt.Sprintf("%s:%d", end.Host, end.Port)
	consent := w.a.measure
	switch {
	case consent != nil:
		w.given("Measure the relay's limits now", yesNo(*consent), map[bool]string{true: "--measure", false: "--no-measure"}[*consent])
	case w.a.yes:
		consent = ptr(true)
		w.given("Measure the relay's limits now", "yes", "--yes")
	}
	if consent == nil {
		ok, err := w.ui.confirm("Measure the relay's limits now?",
			fmt.Sprintf("mailroute opens a few sessions at once and starts messages without ever sending one, to find how many sessions and messages per minute %s allows. No mail is sent. It takes up to %s.", where, w.a.measureTime), true)
		if err != nil {
			return opt, false, err
		}
		consent = &ok
	}
	if !*consent {
		w.say("Not measured: the numbers come from the provider catalog or careful defaults.")
		return opt, false, nil
	}
	w.step("Measuring " + where + "'s limits")
	w.meter, opt = startMeasure(w.out, end, probe.MeasureOptions{WindowBudget: w.a.measureTime, From: w.from, To: w.testTo(), Cred: cred})
	return opt, true, nil
}

// measured explains the measurement.
func (w *wizard) measured(ctx context.Context, m *probe.Measurement) error {
	w.meter.done()
	if ctx.Err() != nil {
		return errStopped
	}
	printFindings(w.out, []advisor.Finding{advisor.ExplainMeasure(m)})
	return nil
}

func yesNo(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] }

func (w *wizard) testTo() string {
	if w.a.testTo != "" {
		return w.a.testTo
	}
	return w.from
}

// configPath asks where to save the config until the answer is a new file
// or one the user agrees to replace.
func (w *wizard) configPath() (path string, force bool, err error) {
	path, force = w.a.write, w.a.force
	if path != "" {
		w.given("Save the config as", path, "--write")
	}
	for {
		if path == "" && w.a.yes {
			path = defaultConfigFile
			w.given("Save the config as", path, "--yes")
		}
		if path == "" {
			path, err = w.ui.input("Save the config as",
				"A commented TOML file for mailroute send, readable only by you. It names where the password comes from, never the password itself.",
				defaultConfigFile, func(s string) error {
					if st, err := os.Stat(filepath.Dir(s)); err != nil || !st.IsDir() {
						return fmt.Errorf("no directory %s", filepath.Dir(s))
					}
					return nil
				})
			if err != nil {
				return "", false, err
			}
		}
		if _, err := os.Lstat(path); err != nil || force {
			return path, force, nil
		}
		if w.a.yes {
			return "", false, usage(fmt.Errorf("%s exists, and --yes does not replace files", path), "add --force to replace it, or --write another file")
		}
		ok, err := w.ui.confirm(path+" exists. Replace it?", "The old file stays whole until the new one is complete.", false)
		if err != nil {
			return "", false, err
		}
		if ok {
			return path, true, nil
		}
		path = ""
	}
}

// hintOf makes a finding's action a hint line: lower case, no full stop.
func hintOf(action string) string {
	if action == "" {
		return ""
	}
	return strings.ToLower(action[:1]) + strings.TrimSuffix(action[1:], ".")
}
