package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/probe"
)

// adviseFlagsOnly are advise's flags beyond the probe's; the wizard has
// them too, each answering one of its questions.
func adviseFlagsOnly() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "user", Usage: "login `NAME` for the relay (checked with AUTH, nothing is sent)"},
		&cli.StringFlag{Name: "password-env", Usage: "environment `VARIABLE` holding the password (default: a hidden prompt on a terminal)"},
		&cli.StringFlag{Name: "password-cmd", Usage: "`COMMAND` whose first line of output is the password (run with sh -c)"},
		&cli.BoolFlag{Name: "insecure-auth", Usage: "allow the login on a relay port without TLS (the password crosses the network in clear)"},
		&cli.BoolFlag{Name: "measure", Usage: "measure the relay's session and rate limits (opens sessions and transactions, never sends a message)"},
		&cli.DurationFlag{Name: "measure-time", Value: 2 * time.Minute, Usage: "how long the measurement may wait to find the relay's rate window"},
		&cli.IntFlag{Name: "list-size", Usage: "number of `RECIPIENTS` in the mailing, to size the threads"},
		&cli.StringFlag{Name: "write", Usage: "write the recommended config to `FILE` (commented TOML, mode 0600)"},
		&cli.BoolFlag{Name: "force", Usage: "with --write: replace FILE if it exists"},
	}
}

func adviseCommand() *cli.Command {
	flags := append(probeFlags(), adviseFlagsOnly()...)
	return &cli.Command{
		Name:  "advise",
		Usage: "probe, then recommend direct delivery or a relay, with threads and rate from evidence, and write the config",
		UsageText: "mailroute advise [probe flags] [--user U] [--password-env VAR | --password-cmd CMD] [--insecure-auth]\n" +
			"                 [--measure] [--measure-time 2m] [--list-size N] [--write FILE] [--force] [--json]\n" +
			"                 [--ip-echo NAME@SERVER]... [--dnsbl ZONE]...",
		Description: `Examples:
   mailroute advise --to example.com                      # direct or not? (port 25, PTR, blocklists)
   mailroute advise --relay smtp.example.com --user me@example.com --password-env SMTP_PW \
                    --measure --list-size 2000 --write mailroute.toml

--measure opens sessions and transactions (MAIL, RCPT, RSET) to find the relay's
limits; it never sends a message. The password is never printed or written: the
config names where it comes from (password_env or password_cmd).

Exit status: 0 a way to send was found, 1 nothing can send (or the login was
refused), 2 bad input.`,
		Flags:  flags,
		Action: runAdvise,
	}
}

// adviseArgs are the advise flags, checked before anything is probed.
type adviseArgs struct {
	user, passEnv, passCmd string
	insecure, measure      bool
	measureTime            time.Duration
	listSize               int
	write                  string
	force                  bool
	identity               probe.IdentityOptions
}

func adviseFlags(c *cli.Context) (*adviseArgs, error) { return parseAdviseArgs(c, false) }

// parseAdviseArgs reads and checks the advise flags. For the wizard a
// password source without --user is fine (the login name is asked, or
// defaults to the sender address), --force may stand alone (the file name
// is asked), and an existing --write file is a question, not an error.
func parseAdviseArgs(c *cli.Context, wizard bool) (*adviseArgs, error) {
	a := &adviseArgs{user: c.String("user"), passEnv: c.String("password-env"), passCmd: c.String("password-cmd"),
		insecure: c.Bool("insecure-auth"), measure: c.Bool("measure"), measureTime: c.Duration("measure-time"),
		listSize: c.Int("list-size"), write: c.String("write"), force: c.Bool("force")}
	switch {
	case !wizard && a.user == "" && (a.passEnv != "" || a.passCmd != ""):
		return nil, usage(errors.New("--password-env and --password-cmd need --user"), "add --user NAME: the login the password belongs to")
	case a.passEnv != "" && a.passCmd != "":
		return nil, usage(errors.New("--password-env and --password-cmd both given"), "keep one: where the password comes from")
	case !wizard && a.user == "" && a.insecure:
		return nil, usage(errors.New("--insecure-auth needs --user"), "it allows a login without TLS; there is no login without --user")
	case a.measureTime <= 0:
		return nil, usage(fmt.Errorf("--measure-time %s: must be positive", a.measureTime), "e.g. --measure-time 2m; the window search stops after it")
	case a.listSize < 0:
		return nil, usage(fmt.Errorf("--list-size %d: must not be negative", a.listSize), "the number of recipients in the mailing")
	case !wizard && a.force && a.write == "":
		return nil, usage(errors.New("--force needs --write FILE"), "--force lets --write replace an existing file")
	}
	if a.write != "" {
		if _, err := os.Lstat(a.write); err == nil && !a.force && !wizard {
			return nil, usage(fmt.Errorf("--write %s: the file exists", a.write), "add --force to replace it, or write to another file")
		}
		// Found now, not after minutes of probing and measuring.
		if st, err := os.Stat(filepath.Dir(a.write)); err != nil || !st.IsDir() {
			return nil, usage(fmt.Errorf("--write %s: no directory %s", a.write, filepath.Dir(a.write)), "create the directory first, or write elsewhere")
		}
	}
	id, err := identityFromFlags(c)
	if err != nil {
		return nil, err
	}
	a.identity = id
	return a, nil
}

// parseEcho reads NAME[/TYPE]@SERVER.
func parseEcho(v string) (probe.EchoService, error) {
	name, server, ok := strings.Cut(v, "@")
	if !ok || name == "" || server == "" {
		return probe.EchoService{}, fmt.Errorf("--ip-echo %q: want NAME@SERVER", v)
	}
	typ := dns.TypeA
	if n, t, ok := strings.Cut(name, "/"); ok {
		typ = dns.StringToType[strings.ToUpper(t)]
		if !slices.Contains([]uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT}, typ) {
			return probe.EchoService{}, fmt.Errorf("--ip-echo %q: type %q: want A, AAAA or TXT", v, t)
		}
		name = n
	}
	return probe.EchoService{Name: name, Type: typ, Server: server}, nil
}

// secret gets the password: from the variable, the command, or a hidden
// prompt on a terminal. It is kept only in memory, for the login and the
// measurement.
func (a *adviseArgs) secret(c *cli.Context, relayHost string) (string, error) {
	if a.user == "" {
		return "", nil
	}
	if v, ok, err := a.secretFromSource(c, relayHost); ok || err != nil {
		return v, err
	}
	f, ok := c.App.Reader.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usage(errors.New("--user given but no password: stdin is not a terminal, so there is no prompt"), "give --password-env VAR or --password-cmd CMD")
	}
	fmt.Fprintf(c.App.ErrWriter, "password for %s: ", a.user)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.App.ErrWriter)
	if err != nil {
		return "", usage(fmt.Errorf("reading the password: %w", err), "")
	}
	return string(b), nil
}

// secretFromSource reads the password from --password-env or
// --password-cmd; ok is false when neither was given.
func (a *adviseArgs) secretFromSource(c *cli.Context, relayHost string) (secret string, ok bool, err error) {
	switch {
	case a.passEnv != "":
		v, set := os.LookupEnv(a.passEnv)
		if !set || v == "" {
			state := map[bool]string{true: "is empty", false: "is not set"}[set]
			return "", false, usage(fmt.Errorf("--password-env %s: the environment variable %s", a.passEnv, state), "export it first, e.g. read -rs "+a.passEnv+" && export "+a.passEnv)
		}
		return v, true, nil
	case a.passCmd != "":
		r := config.Relay{Host: relayHost, PasswordCmd: a.passCmd}
		v, err := r.Secret(c.Context)
		if err != nil {
			return "", false, usage(err, "run the command yourself: its first line of output must be the password")
		}
		return v, true, nil
	}
	return "", false, nil
}

func runAdvise(c *cli.Context) error {
	a, err := adviseFlags(c)
	if err != nil {
		return err
	}
	p, req, err := proberFromFlags(c)
	if err != nil {
		return err
	}
	req.Identity, req.IdentityOptions = true, a.identity
	relayHost := "the relay"
	if len(req.Relays) > 0 {
		relayHost = req.Relays[0].Host
	}
	secret, err := a.secret(c, relayHost)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt)
	defer stop()
	stderr := c.App.ErrWriter
	live := isTerminal(stderr)
	if live {
		p.Progress = func(done, total int, e *probe.Endpoint) {
			fmt.Fprintf(stderr, "\rprobing… %d/%d endpoints", done, total)
		}
	}
	fromDomain := req.FromDomain
	if _, d, ok := strings.Cut(a.user, "@"); ok && fromDomain == "" {
		fromDomain = strings.ToLower(d)
	}
	var cred *probe.Credentials
	if a.user != "" {
		cred = &probe.Credentials{User: a.user, Secret: secret, InsecureAuth: a.insecure}
	}
	res, err := advisor.Run(ctx, advisor.Inputs{Prober: p, Request: req, Login: a.user != "",
		Decide: advisor.Input{ListSize: a.listSize, FromDomain: fromDomain, User: a.user,
			PasswordEnv: a.passEnv, PasswordCmd: a.passCmd, InsecureAuth: a.insecure, CAFile: c.String("tls-ca")}},
		a.hooks(c, cred, live))
	if err != nil {
		return err
	}
	rep, rec := res.Report, res.Recommendation
	loginOK := rep.Login == nil || rep.Login.OK

	written := ""
	var werr error
	if rec.OK && a.write != "" && ctx.Err() == nil {
		if werr = writeConfigFile(a.write, rec.Config, rec.Header(time.Now()), a.force); werr == nil {
			written = a.write
		}
	}
	// How receivers will judge mail from the sender over this route
	// (check.go): SPF and DMARC of its domain.
	authFs := asFindings(adviceAuth(ctx, p, rec, rep, firstNonEmpty(c.String("from"), a.user), a.identity))
	if c.Bool("json") {
		if err := printAdviceJSON(c.App.Writer, rec, rep, written, authFs); err != nil {
			return err
		}
	} else {
		printAdvice(c.App.Writer, rec, rep, written, a.write != "")
		if fs := append(advisor.Explain(rep), authFs...); len(fs) > 0 {
			fmt.Fprintln(c.App.Writer)
			bold.Fprintln(c.App.Writer, "What was found, in plain words")
			printFindings(c.App.Writer, fs)
		}
	}
	switch {
	case werr != nil:
		return werr
	case ctx.Err() != nil && c.Context.Err() == nil:
		return problem(errors.New("interrupted: the advice above is partial and nothing was written"))
	case !loginOK:
		l := rep.Login
		words := l.Reply
		if words == "" {
			words = l.Error
		}
		return &cmdError{code: exitProblem, err: fmt.Errorf("login to %s:%d as %s refused: %s", l.Host, l.Port, a.user, words),
			hint: "check the user name and the password (many providers want an app password for SMTP)"}
	case !rec.OK:
		return problem(nil)
	}
	return nil
}

// hooks show advise's steps on stderr: the probe's progress line is
// cleared, the login given by the flags is checked once (a refusal ends
// advise with exit 1, after the advice), and --measure is the consent to
// measure.
func (a *adviseArgs) hooks(c *cli.Context, cred *probe.Credentials, live bool) advisor.Hooks {
	stderr := c.App.ErrWriter
	var meter *measureView
	return advisor.Hooks{
		Probed: func(context.Context, *probe.Report) error {
			if live {
				fmt.Fprint(stderr, "\r\033[K")
			}
			return nil
		},
		Credentials: func(_ context.Context, _ *probe.Endpoint, last *probe.Login) (*probe.Credentials, error) {
			if last != nil {
				return nil, nil
			}
			return cred, nil
		},
		Measure: func(_ context.Context, end *probe.Endpoint, cred *probe.Credentials) (opt probe.MeasureOptions, ok bool, err error) {
			switch {
			case !a.measure:
				return opt, false, nil
			case end == nil:
				fmt.Fprintln(stderr, "mailroute: nothing to measure: no relay port can take the mail")
				return opt, false, nil
			}
			meter, opt = startMeasure(stderr, end, a.measureOptions(c, cred))
			return opt, true, nil
		},
		Measured: func(context.Context, *probe.Measurement) error { meter.done(); return nil },
	}
}

// measureOptions are advise's: the sender from --from or the login name,
// the recipient from the first --to address.
func (a *adviseArgs) measureOptions(c *cli.Context, cred *probe.Credentials) probe.MeasureOptions {
	from := c.String("from")
	if from == "" && strings.Contains(a.user, "@") {
		from = a.user
	}
	to := ""
	for _, t := range c.StringSlice("to") {
		if strings.Contains(t, "@") {
			to = t
			break
		}
	}
	return probe.MeasureOptions{WindowBudget: a.measureTime, From: from, To: to, Cred: cred}
}

// measureView shows the relay measurement's progress on w. Asking
// nothing is deliberate: --measure (or the wizard's question) is the
// consent. On a terminal each phase's status is rewritten in place;
// elsewhere (logs, pipes) only each phase's last status is printed, one
// line each.
type measureView struct {
	w           io.Writer
	live        bool
	phase, last string
}

// startMeasure announces the measurement of end and returns opt with its
// Progress shown on w; done ends the display once it is over.
func startMeasure(w io.Writer, end *probe.Endpoint, opt probe.MeasureOptions) (*measureView, probe.MeasureOptions) {
	fmt.Fprintf(w, "measuring the relay's limits; no message is sent (%s:%d, at most %s)\n", end.Host, end.Port, opt.WindowBudget)
	v := &measureView{w: w, live: isTerminal(w)}
	opt.Progress = v.progress
	return v, opt
}

func (v *measureView) progress(s string) {
	ph, _, _ := strings.Cut(s, ":")
	switch {
	case v.live && ph != v.phase && v.phase != "":
		fmt.Fprintf(v.w, "\n  %s", s)
	case v.live:
		fmt.Fprintf(v.w, "\r\033[K  %s", s)
	case ph != v.phase && v.last != "":
		fmt.Fprintf(v.w, "  %s\n", v.last)
	}
	v.phase, v.last = ph, s
}

func (v *measureView) done() {
	switch {
	case v.live && v.last != "":
		fmt.Fprintln(v.w)
	case v.last != "":
		fmt.Fprintf(v.w, "  %s\n", v.last)
	}
}

// writeConfigFile writes the config so that an interrupted run leaves no
// half-written file: a temporary file in the same directory (same file
// system, so the final step is atomic), mode 0600 from the start because it
// may name a password source, synced, then linked (refusing to replace an
// existing file) or, with force, renamed over the target.
func writeConfigFile(path string, cfg *config.Config, header []string, force bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return problem(fmt.Errorf("--write %s: %w", path, err))
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed; the leftover name after a link
	err = f.Chmod(0o600)
	if err == nil {
		err = config.Write(f, cfg, header)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return problem(fmt.Errorf("--write %s: %w", path, err))
	}
	if force {
		err = os.Rename(tmp, path)
	} else if err = os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return usage(fmt.Errorf("--write %s: the file exists", path), "add --force to replace it")
	} else if err != nil {
		// No hard links here (some file systems): check, then rename.
		if _, serr := os.Lstat(path); serr == nil {
			return usage(fmt.Errorf("--write %s: the file exists", path), "add --force to replace it")
		}
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return problem(fmt.Errorf("--write %s: %w", path, err))
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the new name survives a crash too (best effort)
		d.Close()
	}
	return nil
}

// adviceJSON is the --json document: the recommendation, the config in its
// TOML key names, and the whole probe report with the login check and the
// measurement. The password is in none of them.
type adviceJSON struct {
	Recommendation *advisor.Recommendation `json:"recommendation"`
	Config         map[string]any          `json:"config,omitempty"`
	Written        string                  `json:"written,omitempty"`
	Report         *probe.Report           `json:"report"`
	// Findings are the report's facts in plain words (advisor.Explain).
	Findings []advisor.Finding `json:"findings"`
}

func printAdviceJSON(w interface{ Write([]byte) (int, error) }, rec *advisor.Recommendation, rep *probe.Report, written string, more []advisor.Finding) error {
	doc := adviceJSON{Recommendation: rec, Written: written, Report: rep, Findings: append(advisor.Explain(rep), more...)}
	if rec.Config != nil {
		// Through TOML so the keys are the config file's own names.
		var b bytes.Buffer
		if err := toml.NewEncoder(&b).Encode(rec.Config); err != nil {
			return err
		}
		if _, err := toml.Decode(b.String(), &doc.Config); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// identityFromFlags reads --ip-echo and --dnsbl (shared by probe, advise
// and the wizard); absent flags keep probe's defaults.
func identityFromFlags(c *cli.Context) (probe.IdentityOptions, error) {
	id := probe.DefaultIdentityOptions()
	if v := c.StringSlice("ip-echo"); len(v) > 0 {
		id.Echo = nil
		for _, s := range v {
			e, err := parseEcho(s)
			if err != nil {
				return id, usage(err, "write NAME@SERVER or NAME/TYPE@SERVER, e.g. myip.opendns.com@resolver1.opendns.com or o-o.myaddr.l.google.com/TXT@ns1.google.com")
			}
			id.Echo = append(id.Echo, e)
		}
	}
	if v := c.StringSlice("dnsbl"); len(v) > 0 {
		id.DNSBL = nil
		for _, z := range v {
			z = strings.TrimSuffix(strings.TrimSpace(z), ".")
			if _, ok := dns.IsDomainName(z); !ok || z == "" || strings.ContainsAny(z, " /@") {
				return id, usage(fmt.Errorf("--dnsbl %q: not a DNS zone", z), "e.g. --dnsbl zen.spamhaus.org")
			}
			id.DNSBL = append(id.DNSBL, z)
		}
	}
	return id, nil
}
