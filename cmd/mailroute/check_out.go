package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/probe"
)

// maxMXLookups caps the recipient domains whose MX check looks up to find
// who receives their mail (a Google- or Microsoft-hosted company domain);
// the largest domains come first, so the cap costs the least accuracy.
const maxMXLookups = 50

// bulkFindings counts the list per receiving provider and applies their
// bulk-sender rules.
func bulkFindings(ctx context.Context, res *resolve.Resolver, cfg *config.Config, plan *advisor.AuthPlan, facts *advisor.AuthFacts, m *mailing, o advisor.Outcome) []advisor.CheckFinding {
	counts := map[string]advisor.BulkCount{}
	type dc struct {
		domain string
		n      int
	}
	var others []dc
	for d, n := range m.list.Domains {
		if r := advisor.BulkReceiverByDomain(d); r != nil {
			c := counts[r.ID]
			c.ByDomain += n
			counts[r.ID] = c
			continue
		}
		others = append(others, dc{d, n})
	}
	slices.SortFunc(others, func(a, b dc) int { return cmp.Or(b.n-a.n, strings.Compare(a.domain, b.domain)) })
	bp := advisor.BulkPlan{OneClick: m.unsubscribe, Direct: cfg.Mode == config.ModeDirect}
	if len(others) > maxMXLookups {
		for _, x := range others[maxMXLookups:] {
			bp.Unclassified++
			bp.UnclassifiedRcpts += x.n
		}
		others = others[:maxMXLookups]
	}
	found := make([]*advisor.BulkReceiver, len(others))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, x := range others {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			mx, err := res.MX(ctx, x.domain)
			if err != nil || len(mx.Hosts) == 0 {
				return
			}
			found[i] = advisor.BulkReceiverByMX(mx.Hosts[0].Host)
		})
	}
	wg.Wait()
	for i, r := range found {
		if r != nil {
			c := counts[r.ID]
			c.ByMX += others[i].n
			c.MXDomains = append(c.MXDomains, others[i].domain)
			counts[r.ID] = c
		}
	}

	switch {
	case cfg.Mode == config.ModeRelay:
		bp.TLS, bp.TLSOK = "the relay's own delivery (check can't see it); mailroute to the relay: "+string(cfg.Relay[0].TLS), cfg.Relay[0].TLS != config.TLSNone
	case cfg.Direct.TLS == config.TLSNone:
		bp.TLS = "direct.tls = \"none\": never"
	default:
		bp.TLS, bp.TLSOK = "direct.tls = \""+string(cfg.Direct.TLS)+"\" (the large providers offer STARTTLS)", true
	}
	if bp.Direct {
		bp.FCrDNS = fcrdns(ctx, res, plan.Addrs)
	}
	return advisor.JudgeBulk(counts, bp, facts, o)
}

// fcrdns says whether the first sending address has a PTR whose name
// resolves back to it.
func fcrdns(ctx context.Context, res *resolve.Resolver, addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "no: the sending address is unknown"
	}
	a := addrs[0]
	names, err := res.PTR(ctx, a)
	if err != nil {
		if !resolve.IsNotFound(err) {
			return "unknown: " + err.Error()
		}
		return "no: " + err.Error()
	}
	for _, n := range names {
		back, err := res.Addrs(ctx, n)
		if err == nil && containsAddr(back, a) {
			return "yes: " + a.String() + " → " + n + " → " + a.String()
		}
	}
	return "no: " + a.String() + " → " + strings.Join(names, ", ") + ", which does not resolve back to it"
}

// printCheck writes the findings for a person.
func printCheck(w io.Writer, d *checkDoc) {
	p := d.Plan
	fmt.Fprintf(w, "Checking the mailing as receivers will judge it\n")
	fmt.Fprintf(w, "  envelope sender %s (SPF), From %s (DMARC)\n", p.Envelope, p.From)
	route := "direct to each recipient's MX"
	if p.Mode == config.ModeRelay {
		route = "through the relay " + p.Relay
		if p.Provider != "" {
			route += " (" + p.Provider + ")"
		}
	}
	fmt.Fprintf(w, "  route: %s; leaves from %s\n", route, cmp.Or(strings.Join(p.Addrs, ", "), "an unknown address"))
	for _, f := range d.Findings {
		fmt.Fprintf(w, "\n%-7s %-6s %s\n", f.Verdict, shortName(f), f.Title)
		for _, e := range f.Evidence {
			fmt.Fprintf(w, "               %s\n", e)
		}
		if f.Verdict == advisor.Pass {
			continue
		}
		if f.Meaning != "" {
			fmt.Fprintf(w, "  means:       %s\n", f.Meaning)
		}
		if f.Fix != "" {
			fmt.Fprintf(w, "  fix:         %s\n", f.Fix)
		}
		if len(f.Sources) > 0 {
			fmt.Fprintf(w, "  see:         %s\n", strings.Join(f.Sources, " "))
		}
	}
	fmt.Fprintln(w)
	if d.OK {
		fmt.Fprintf(w, "Nothing found that gets this mail refused or junked.\n")
		return
	}
	fmt.Fprintf(w, "Receivers will refuse or junk this mail: %s. Fix the findings marked fail, then run check again.\n", strings.Join(slices.Compact(d.Problems), ", "))
}

func shortName(f advisor.CheckFinding) string {
	if strings.HasPrefix(f.Check, "bulk:") {
		return "bulk"
	}
	return f.Name
}

// dryRunTimeout bounds each group of DNS look-ups of the check a dry run
// makes: it is a summary, and the dry run must stay quick offline.
const dryRunTimeout = 2 * time.Second

// dryRunCheck is the one line send --dry-run prints: each finding's verdict
// and the check command that explains them.
func dryRunCheck(ctx context.Context, cfg *config.Config, configPath, message, list, emailColumn string) string {
	cmd := "mailroute check --config " + configPath + " --message " + message + " --list " + list
	mailing, err := readMailing(cfg, message, list, emailColumn)
	if err != nil {
		return "check: not run (" + err.Error() + "); try " + cmd
	}
	res, err := resolverFromFlag(cfg.Resolver)
	if err != nil {
		return "check: not run (" + err.Error() + "); try " + cmd
	}
	res.Timeout = dryRunTimeout / 2
	d, err := authCheck(ctx, cfg, mailing, res, nil, probe.DefaultIdentityOptions(), dryRunTimeout)
	if err != nil {
		return "check: not run (" + err.Error() + "); try " + cmd
	}
	return checkSummary(d, cmd)
}

func checkSummary(d *checkDoc, cmd string) string {
	parts := make([]string, len(d.Findings))
	for i, f := range d.Findings {
		parts[i] = f.Name + " " + string(f.Verdict)
	}
	verdict := "nothing found that gets the mail refused or junked"
	if !d.OK {
		verdict = "receivers will refuse or junk this mail"
	}
	return "check: " + strings.Join(parts, ", ") + ": " + verdict + "; details: " + cmd
}

// adviceAuth judges mail from the sender's address over the recommended
// route, for advise and the wizard: the same findings as check, without a
// message or a list (so no DKIM, which the advisor's config does not set up,
// and no bulk rules). The public address the probe found is the sending
// address in direct mode. Nil when the address or the route is unknown.
func adviceAuth(ctx context.Context, p *probe.Prober, rec *advisor.Recommendation, rep *probe.Report, from string, echo probe.IdentityOptions) []advisor.CheckFinding {
	if rec == nil || rec.Config == nil || !strings.Contains(from, "@") || rep.Offline || ctx.Err() != nil {
		return nil
	}
	var ips []netip.Addr
	if rec.Config.Mode == config.ModeDirect && rep.Identity != nil {
		if a, err := netip.ParseAddr(rep.Identity.PublicIP); err == nil {
			ips = []netip.Addr{a}
		}
	}
	m := &mailing{envelope: firstNonEmpty(rec.Config.From, from), from: from}
	d, err := authCheck(ctx, rec.Config, m, p.Resolver, ips, echo, p.Timeout)
	if err != nil {
		return nil
	}
	return d.Findings
}

// asFindings turns check's findings into advise's form.
func asFindings(cs []advisor.CheckFinding) []advisor.Finding {
	out := make([]advisor.Finding, len(cs))
	for i, c := range cs {
		out[i] = c.AsFinding()
	}
	return out
}
