package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fatih/color"

	"github.com/mailroute/mailroute/probe"
)

// verdictColor: green is good news, yellow is a wall the user can walk
// around (use a relay), red is something wrong or hostile.
var verdictColor = map[probe.Verdict]*color.Color{
	probe.Open:        color.New(color.FgGreen, color.Bold),
	probe.Refused:     color.New(color.FgYellow, color.Bold),
	probe.Filtered:    color.New(color.FgYellow, color.Bold),
	probe.Unreachable: color.New(color.FgYellow, color.Bold),
	probe.Intercepted: color.New(color.FgRed, color.Bold),
	probe.Failed:      color.New(color.FgRed, color.Bold),
}

var (
	bold = color.New(color.Bold)
	dim  = color.New(color.Faint)
)

// printReport writes the human report: grouped by target, then the summary.
func printReport(w io.Writer, rep *probe.Report) {
	if id := rep.Identity; id != nil {
		printIdentity(w, "this machine", id)
		if id.IPv6 != nil {
			printIdentity(w, "this machine over IPv6", id.IPv6)
		}
	}
	for _, d := range rep.Domains {
		bold.Fprintf(w, "%s", d.Name)
		switch {
		case d.DNSError != nil:
			fmt.Fprintf(w, "  %s\n", color.RedString(d.DNSError.Message))
			continue
		case d.NullMX:
			fmt.Fprintf(w, "  null MX: accepts no mail\n")
			continue
		case d.Implicit:
			fmt.Fprintf(w, "  no MX: implicit MX (the domain's own address)\n")
		default:
			fmt.Fprintln(w)
		}
		if m := d.MTASTS; m != nil {
			if m.Error != "" {
				fmt.Fprintf(w, "  MTA-STS: %s\n", color.YellowString("policy not readable: "+m.Error))
			} else {
				fmt.Fprintf(w, "  MTA-STS: %s (mx: %s; id %s)\n", m.Mode, strings.Join(m.MX, " "), m.ID)
			}
		}
		for _, mx := range d.MX {
			fmt.Fprintf(w, "  MX %d %s", mx.Pref, mx.Host)
			if mx.AddrError != "" {
				fmt.Fprintf(w, "  %s", color.RedString(mx.AddrError))
			}
			fmt.Fprintln(w)
			for _, e := range d.Ends {
				if e.Host == mx.Host {
					printEndpoint(w, e, "    ")
				}
			}
		}
	}
	for _, r := range rep.Relays {
		bold.Fprintf(w, "relay %s", r.Host)
		if r.Source != "--relay" {
			fmt.Fprintf(w, " (%s)", r.Source)
		}
		if r.Error != nil {
			fmt.Fprintf(w, "  %s\n", color.RedString(r.Error.Message))
			continue
		}
		fmt.Fprintln(w)
		for _, e := range r.Ends {
			printEndpoint(w, e, "  ")
		}
	}
	if len(rep.Domains)+len(rep.Relays) > 0 {
		fmt.Fprintln(w)
	}
	bold.Fprintln(w, "Summary")
	for _, s := range rep.Summary {
		fmt.Fprintf(w, "  %s\n", s)
	}
	dim.Fprintf(w, "  (probed in %s, timeout %s, resolver %s)\n", rep.Elapsed, rep.Timeout, strings.Join(rep.Resolver, ", "))
}

func printEndpoint(w io.Writer, e *probe.Endpoint, indent string) {
	c := verdictColor[e.Verdict]
	if c == nil {
		c = color.New()
	}
	fmt.Fprintf(w, "%s%s  %s", indent, hostPort(e), c.Sprint(e.Verdict))
	fmt.Fprintf(w, "  %s", dim.Sprint(ms(e.Timings.Connect)))
	if e.Error != "" {
		fmt.Fprintf(w, "  %s", e.Error)
	}
	fmt.Fprintln(w)
	in := indent + "   "
	if e.Banner != nil {
		fmt.Fprintf(w, "%sbanner: %s\n", in, e.Banner.String())
	}
	if e.Problem != "" {
		fmt.Fprintf(w, "%s%s %s\n", in, color.RedString("problem:"), e.Problem)
	}
	for _, ev := range e.Evidence {
		fmt.Fprintf(w, "%s%s %s\n", in, color.RedString("evidence:"), ev)
	}
	for _, n := range e.Notes {
		fmt.Fprintf(w, "%snote: %s\n", in, n)
	}
	if e.Path != nil {
		fmt.Fprintf(w, "%spath: %s\n", in, e.Path.Text)
	}
	if len(e.EHLO) > 0 && e.TLSMode != "implicit" {
		fmt.Fprintf(w, "%sEHLO: %s\n", in, caps(e.EHLO))
	}
	if t := e.TLS; t != nil {
		trust := color.GreenString("verified")
		if !t.Verified {
			trust = color.RedString("not trusted: " + t.VerifyError)
		}
		fmt.Fprintf(w, "%sTLS: %s %s (%s)\n", in, t.Version, t.Cipher, ms(e.Timings.TLS))
		fmt.Fprintf(w, "%scertificate: %s, issuer %s, expires %s, %s\n", in,
			strings.Join(t.Names, " "), t.Issuer, t.NotAfter.Format(time.DateOnly), trust)
	}
	if len(e.EHLOTLS) > 0 {
		fmt.Fprintf(w, "%sEHLO after TLS: %s\n", in, caps(e.EHLOTLS))
	}
}

func hostPort(e *probe.Endpoint) string {
	mode := ""
	if e.TLSMode == "implicit" {
		mode = " (TLS)"
	}
	if strings.Contains(e.Addr, ":") {
		return fmt.Sprintf("[%s]:%d%s", e.Addr, e.Port, mode)
	}
	return fmt.Sprintf("%s:%d%s", e.Addr, e.Port, mode)
}

func caps(m map[string]string) string {
	var out []string
	for k, v := range m {
		if v != "" {
			k += "=" + v
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func ms(d probe.Duration) string { return d.String() }

// printIdentity shows what the internet thinks of this machine: the facts
// receivers check before accepting mail sent directly from it.
func printIdentity(w io.Writer, title string, id *probe.Identity) {
	bold.Fprintln(w, title)
	if id.PublicIP == "" {
		fmt.Fprintf(w, "  public address: %s\n", color.YellowString("unknown"))
	} else {
		fmt.Fprintf(w, "  public address: %s  %s\n", id.PublicIP, dim.Sprint("("+id.Source+")"))
		switch {
		case id.ForwardConfirmed:
			fmt.Fprintf(w, "  reverse name: %s (%s)\n", id.ConfirmedName, color.GreenString("forward-confirmed"))
		case len(id.PTR) > 0:
			fmt.Fprintf(w, "  reverse name: %s (%s)\n", strings.Join(id.PTR, " "), color.YellowString("does not point back"))
		default:
			fmt.Fprintf(w, "  reverse name: %s\n", color.YellowString("none"))
		}
	}
	for _, l := range id.Listings {
		var what string
		switch {
		case l.Error != "":
			what = color.YellowString("not asked: " + l.Error)
		case l.QueryRefused:
			what = color.YellowString("query refused (use your own resolver)")
		case l.Listed:
			what = color.RedString("listed: " + strings.Join(l.Meaning, "; "))
		default:
			what = color.GreenString("not listed")
		}
		fmt.Fprintf(w, "  %s: %s\n", l.Zone, what)
	}
	for _, u := range id.Unknown {
		fmt.Fprintf(w, "  unknown: %s\n", u)
	}
}
