package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/internal/auth"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/probe"
	"github.com/mailroute/mailroute/send/list"
	"github.com/mailroute/mailroute/send/message"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "predict before sending whether receivers will accept the mail: SPF, DKIM, DMARC, bulk-sender rules",
		UsageText: "mailroute check --config FILE --message FILE [--list FILE.csv] [--resolver IP[:PORT]] [--json]\n" +
			"                [--sending-ip IP]... [--ip-echo NAME@SERVER]... [--timeout 5s]",
		Description: `check judges the planned mailing as Gmail, Yahoo and Microsoft will: SPF (RFC 7208) of the
envelope sender's domain for the addresses the mail leaves from (relay mode: the relay's, and the
provider's documented include where the catalog knows it; direct mode: this machine's public
address), the DKIM key published for [dkim] against key_file, and the From domain's DMARC policy
with the alignment the route yields. With --list it counts recipients per receiving provider and
applies their bulk-sender rules. Nothing is sent.

Exit status: 0 nothing found that gets the mail refused or junked, 1 something will, 2 bad input.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "the mailing's config `FILE`"},
			&cli.StringFlag{Name: "message", Usage: "message template `FILE`"},
			&cli.StringFlag{Name: "list", Usage: "recipient list `FILE.csv`: counted per receiving provider for the bulk-sender rules"},
			&cli.StringFlag{Name: "email-column", Value: "email", Usage: "the list's address column `NAME`"},
			&cli.StringFlag{Name: "resolver", Usage: "DNS server `IP[:PORT]` (default: the config's resolver, else /etc/resolv.conf)"},
			&cli.StringSliceFlag{Name: "sending-ip", Usage: "the `IP` the mail leaves from, as receivers see it (repeatable); default: the relay's addresses, or in direct mode this machine's public one from a DNS echo service"},
			&cli.StringSliceFlag{Name: "ip-echo", Usage: "DNS echo service `NAME[/TYPE]@SERVER` that tells this machine its public address (direct mode)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "time for each group of DNS look-ups"},
			&cli.BoolFlag{Name: "json", Usage: "print the findings as one JSON document on stdout"},
		},
		Action: runCheck,
	}
}

// checkDoc is check --json.
type checkDoc struct {
	OK       bool                   `json:"ok"`
	Problems []string               `json:"problems"`
	Plan     checkPlanDoc           `json:"plan"`
	Findings []advisor.CheckFinding `json:"findings"`
	Facts    *advisor.AuthFacts     `json:"facts"`
}

type checkPlanDoc struct {
	Mode      config.Mode `json:"mode"`
	Envelope  string      `json:"envelope_from"`
	From      string      `json:"from"`
	Addrs     []string    `json:"sending_addrs,omitempty"`
	AddrsFrom string      `json:"sending_addrs_from,omitempty"`
	Relay     string      `json:"relay,omitempty"`
	Provider  string      `json:"provider,omitempty"`
	Resolver  string      `json:"resolver"`
}

func runCheck(c *cli.Context) error {
	if c.NArg() > 0 {
		return usage(fmt.Errorf("unexpected argument %q", c.Args().First()), "every input is a flag: --config, --message, --list")
	}
	for _, f := range []struct{ name, hint string }{
		{"config", "write one with 'mailroute advise --write FILE' or 'mailroute wizard'"},
		{"message", "pass the message template as --message FILE"},
	} {
		if c.String(f.name) == "" {
			return usage(fmt.Errorf("--%s is required", f.name), f.hint)
		}
	}
	if c.Duration("timeout") <= 0 {
		return usage(fmt.Errorf("--timeout %s: must be positive", c.Duration("timeout")), "")
	}
	cfg, warnings, err := config.Load(c.String("config"))
	if err != nil {
		return configProblem(err)
	}
	for _, w := range warnings {
		fmt.Fprintf(c.App.ErrWriter, "mailroute: warning: %s: %s\n", c.String("config"), w)
	}
	mailing, err := readMailing(cfg, c.String("message"), c.String("list"), c.String("email-column"))
	if err != nil {
		return err
	}
	res, err := resolverFromFlag(firstNonEmpty(c.String("resolver"), cfg.Resolver))
	if err != nil {
		return err
	}
	sendingIPs, err := parseSendingIPs(c.StringSlice("sending-ip"))
	if err != nil {
		return err
	}
	echo, err := identityFromFlags(c)
	if err != nil {
		return err
	}
	res.Timeout = min(2*time.Second, c.Duration("timeout")/2)
	doc, err := authCheck(c.Context, cfg, mailing, res, sendingIPs, echo, c.Duration("timeout"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		printCheck(c.App.Writer, doc)
	}
	if !doc.OK {
		return problem(nil)
	}
	return nil
}

// authCheck judges a loaded mailing: SPF, DKIM and DMARC, and the bulk
// rules when it has a list. DNS gets timeout per group of look-ups. Shared
// by check and send --dry-run.
func authCheck(ctx context.Context, cfg *config.Config, mailing *mailing, res *resolve.Resolver, sendingIPs []netip.Addr, echo probe.IdentityOptions, timeout time.Duration) (*checkDoc, error) {
	plan := &advisor.AuthPlan{Mode: cfg.Mode, Envelope: mailing.envelope, From: mailing.from, DKIM: cfg.DKIM}
	if cfg.DKIM != nil {
		signer, err := message.NewSigner(cfg.DKIM)
		if err != nil {
			return nil, configProblem(err)
		}
		plan.DKIMKey = signer.Public()
	}
	ctx, cancel := context.WithTimeout(ctx, 4*timeout)
	defer cancel()
	sendingAddrs(ctx, res, cfg, plan, sendingIPs, echo, timeout)
	facts := gatherAuth(ctx, res, plan)
	findings, outcome := advisor.JudgeAuth(plan, facts)
	if mailing.list != nil {
		findings = append(findings, bulkFindings(ctx, res, cfg, plan, facts, mailing, outcome)...)
	}

	doc := &checkDoc{OK: true, Problems: []string{}, Findings: findings, Facts: facts, Plan: checkPlanDoc{
		Mode: cfg.Mode, Envelope: plan.Envelope, From: plan.From, AddrsFrom: plan.AddrsFrom, Relay: plan.RelayHost, Resolver: strings.Join(res.Servers, ", "),
	}}
	for _, a := range plan.Addrs {
		doc.Plan.Addrs = append(doc.Plan.Addrs, a.String())
	}
	if plan.Provider != nil {
		doc.Plan.Provider = plan.Provider.Name
	}
	for _, f := range findings {
		if f.Verdict == advisor.Fail {
			doc.OK = false
			doc.Problems = append(doc.Problems, f.Name)
		}
	}
	return doc, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func parseSendingIPs(vs []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, v := range vs {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			return nil, usage(fmt.Errorf("--sending-ip %q: not an IP address", v), "give the address receivers see, e.g. --sending-ip 192.0.2.25")
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// sendingAddrs fills in where the mail will leave from: the relay's
// addresses in relay mode (and its catalog entry), this machine's public
// address in direct mode (--sending-ip, else a DNS echo service as probe
// --identity asks).
func sendingAddrs(ctx context.Context, res *resolve.Resolver, cfg *config.Config, plan *advisor.AuthPlan, given []netip.Addr, echo probe.IdentityOptions, timeout time.Duration) {
	if len(given) > 0 {
		plan.Addrs, plan.AddrsFrom = given, "--sending-ip"
		if cfg.Mode == config.ModeRelay && len(cfg.Relay) > 0 {
			plan.RelayHost = cfg.Relay[0].Host
			if m := advisor.Find(plan.RelayHost, "", nil); m != nil {
				plan.Provider = m.Provider
			}
		}
		return
	}
	if cfg.Mode == config.ModeRelay {
		if len(cfg.Relay) == 0 {
			return
		}
		// Every relay of the config shares the work: mail may leave from
		// any of them.
		var errs []string
		for _, r := range cfg.Relay {
			if a, err := netip.ParseAddr(r.Host); err == nil {
				plan.Addrs = append(plan.Addrs, a)
				continue
			}
			addrs, err := res.Addrs(ctx, r.Host)
			if err != nil {
				errs = append(errs, err.Error())
			}
			for _, a := range addrs {
				if !containsAddr(plan.Addrs, a) {
					plan.Addrs = append(plan.Addrs, a)
				}
			}
		}
		plan.RelayHost = cfg.Relay[0].Host
		plan.AddrsFrom = "relay " + plan.RelayHost
		if m := advisor.Find(plan.RelayHost, "", nil); m != nil {
			plan.Provider = m.Provider
		}
		plan.AddrsErr = strings.Join(errs, "; ")
		return
	}
	echo.DNSBL = []string{}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := (&probe.Prober{Resolver: res, Timeout: timeout}).Identity(ictx, echo)
	if a, err := netip.ParseAddr(id.PublicIP); err == nil {
		plan.Addrs, plan.AddrsFrom = []netip.Addr{a}, "this machine's public address, from "+id.Source
		return
	}
	plan.AddrsErr = strings.Join(id.Unknown, "; ")
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// gatherAuth asks DNS for the SPF, DKIM and DMARC facts of a plan, all at
// once: they are independent.
func gatherAuth(ctx context.Context, res *resolve.Resolver, plan *advisor.AuthPlan) *advisor.AuthFacts {
	f := &advisor.AuthFacts{}
	done := make(chan struct{}, 3)
	go func() {
		if len(plan.Addrs) > 0 || plan.Provider != nil {
			helo := plan.Envelope[strings.LastIndexByte(plan.Envelope, '@')+1:]
			f.SPF = auth.CheckSPF(ctx, res, plan.Envelope, helo, plan.Addrs)
			if plan.Provider != nil && plan.Provider.SPFInclude != "" {
				f.SPF.Include = plan.Provider.SPFInclude
				f.SPF.IncludeFound, f.SPF.IncludePath, _ = auth.FindInclude(ctx, res, f.SPF.Domain, plan.Provider.SPFInclude)
			}
		}
		done <- struct{}{}
	}()
	go func() {
		if plan.DKIM != nil {
			f.DKIM = auth.LookupDKIM(ctx, res, plan.DKIM.Selector, plan.DKIM.Domain)
		}
		done <- struct{}{}
	}()
	go func() {
		f.DMARC = auth.LookupDMARC(ctx, res, plan.From[strings.LastIndexByte(plan.From, '@')+1:])
		done <- struct{}{}
	}()
	for range 3 {
		<-done
	}
	return f
}

// mailing is what check reads of the message and the list.
type mailing struct {
	envelope, from string
	unsubscribe    bool // the rendered message carries List-Unsubscribe-Post (RFC 8058)
	list           *listCounts
}

// readMailing renders the message for the list's first recipient (or a
// sample without a list) to learn its From and headers, and counts the
// list's recipients by domain.
func readMailing(cfg *config.Config, messagePath, listPath, emailColumn string) (*mailing, error) {
	tmpl, err := message.LoadTemplate(messagePath, "")
	if err != nil {
		return nil, usage(fmt.Errorf("--message: %w", err), "the message is header fields (From and Subject at least), an empty line, and the body")
	}
	if err := tmpl.SetUnsubscribe(cfg.Unsubscribe); err != nil {
		return nil, configProblem(err)
	}
	m := &mailing{}
	rcpt := &list.Recipient{Email: "user@example.com", Addr: "user@example.com", Domain: "example.com", Fields: map[string]string{}}
	if listPath != "" {
		lc, first, header, err := countList(listPath, list.Options{EmailColumn: emailColumn, SkipBadRows: true})
		if err != nil {
			return nil, configProblem(err)
		}
		if err := tmpl.Check(header); err != nil {
			return nil, usage(flatten(err), "the template may only use the list's columns")
		}
		m.list, rcpt = lc, first
	}
	r, err := tmpl.Render(rcpt, message.RenderOptions{})
	if err != nil {
		hint := ""
		if listPath == "" {
			hint = "the message uses merge fields: give the list with --list"
		}
		return nil, usage(fmt.Errorf("rendering %s: %w", messagePath, err), hint)
	}
	m.from = r.From
	m.envelope = firstNonEmpty(cfg.From, r.From)
	m.unsubscribe = message.HasOneClick(r.Data)
	return m, nil
}

// listCounts is the list's recipients by domain.
type listCounts struct {
	Total   int
	Domains map[string]int
}

func countList(path string, opt list.Options) (*listCounts, *list.Recipient, []string, error) {
	lr, err := list.Open(path, opt)
	if err != nil {
		return nil, nil, nil, err
	}
	defer lr.Close()
	lc := &listCounts{Domains: map[string]int{}}
	var first *list.Recipient
	for {
		r, err := lr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, nil, nil, err
		}
		if first == nil {
			first = r
		}
		lc.Total++
		lc.Domains[r.Domain]++
	}
	if first == nil {
		return nil, nil, nil, &list.Error{File: path, Message: "no recipients", Hint: "the list needs a header row and at least one row with an address"}
	}
	return lc, first, lr.Header(), nil
}
