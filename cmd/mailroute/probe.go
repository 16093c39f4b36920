package main

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"github.com/mailroute/mailroute/internal/resolve"
	"github.com/mailroute/mailroute/internal/smtpclient"
	"github.com/mailroute/mailroute/probe"
)

// probeFlags are shared by probe and advise.
func probeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "to", Usage: "recipient `DOMAIN` or address whose MX hosts to probe on port 25 (repeatable); none: large providers"},
		&cli.StringSliceFlag{Name: "relay", Usage: "relay `HOST[:PORT]`; without a port: 465, 587, 2525 and 25"},
		&cli.StringFlag{Name: "from", Usage: "your `ADDRESS`: its domain's submission server is looked for (SRV, smtp./mail.)"},
		&cli.StringFlag{Name: "resolver", Usage: "DNS server `IP[:PORT]` instead of /etc/resolv.conf"},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "connect timeout per endpoint"},
		&cli.StringFlag{Name: "tls-ca", Usage: "extra CA certificates `FILE` (PEM) to trust, besides the system roots"},
		&cli.StringFlag{Name: "helo", Usage: "`NAME` to send in EHLO (default: this machine's host name)"},
		&cli.BoolFlag{Name: "json", Usage: "print the whole report as JSON on stdout"},
		&cli.StringSliceFlag{Name: "ip-echo", Usage: "DNS echo service `NAME[/TYPE]@SERVER` that tells this machine its public address (repeatable; default: OpenDNS and Google)"},
		&cli.StringSliceFlag{Name: "dnsbl", Usage: "blocklist `ZONE` to look the public address up in (repeatable; default: zen.spamhaus.org)"},
		traceFlag(),
	}
}

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "test outbound port 25 and a relay's submission ports, and say what happens on each",
		UsageText: "mailroute probe [--to DOMAIN|ADDRESS]... [--relay HOST[:PORT]] [--from ADDRESS] [--resolver IP[:PORT]] [--timeout 5s] [--tls-ca FILE] [--json] [--trace]",
		Description: `Examples:
   mailroute probe                                   # port 25 to large providers' MX hosts
   mailroute probe --to example.com --to bob@example.org
   mailroute probe --relay smtp.example.com          # 465, 587, 2525 and 25
   mailroute probe --from you@example.com --json     # find your provider's submission server
   mailroute probe --identity                        # and this machine's public address, PTR, blocklists

Exit status: 0 something can take mail, 1 nothing can, 2 bad input.`,
		Flags: append(probeFlags(),
			&cli.BoolFlag{Name: "identity", Usage: "also find this machine's public address (DNS echo services), its reverse name and blocklist listings"}),
		Action: runProbe,
	}
}

// proberFromFlags builds the Prober and Request from flags; every input
// error is a usage error (exit 2) with a hint.
func proberFromFlags(c *cli.Context) (*probe.Prober, probe.Request, error) {
	var req probe.Request
	fail := func(err error) (*probe.Prober, probe.Request, error) {
		var ie *probe.InputError
		var ce *cmdError
		if errors.As(err, &ce) {
			return nil, req, err
		}
		if errors.As(err, &ie) {
			return nil, req, usage(err, ie.Hint)
		}
		return nil, req, usage(err, "")
	}
	timeout := c.Duration("timeout")
	if timeout <= 0 {
		return fail(fmt.Errorf("--timeout %s: must be positive", timeout))
	}
	doms, err := probe.ParseTo(c.StringSlice("to"))
	if err != nil {
		return fail(err)
	}
	req.Domains = doms
	for _, v := range c.StringSlice("relay") {
		spec, err := probe.ParseRelay(v)
		if err != nil {
			return fail(err)
		}
		req.Relays = append(req.Relays, spec)
	}
	if v := c.String("from"); v != "" {
		d, err := probe.ParseFrom(v)
		if err != nil {
			return fail(err)
		}
		req.FromDomain = d
	}
	res, err := resolverFromFlag(c.String("resolver"))
	if err != nil {
		return fail(err)
	}
	// A DNS attempt gets at most half the timeout, so two attempts fit in it.
	res.Timeout = min(2*time.Second, timeout/2)
	roots, err := rootsFromFile(c.String("tls-ca"))
	if err != nil {
		return nil, req, usage(err, "give a readable PEM file with one or more CA certificates")
	}
	p := &probe.Prober{Resolver: res, Timeout: timeout, Roots: roots, Helo: heloName(c.String("helo")), Trace: traceFromFlag(c)}
	return p, req, nil
}

func resolverFromFlag(v string) (*resolve.Resolver, error) {
	if v == "" {
		r, err := resolve.FromResolvConf("/etc/resolv.conf")
		if err != nil {
			return nil, usage(err, "name a DNS server with --resolver IP")
		}
		return r, nil
	}
	r, err := resolve.New(v)
	if err != nil {
		return nil, usage(fmt.Errorf("--resolver: %w", err), "write an IP address, optionally with a port: 192.0.2.53 or [2001:db8::53]:53")
	}
	return r, nil
}

// rootsFromFile is smtpclient.Roots, its errors named after the flag.
func rootsFromFile(file string) (*x509.CertPool, error) {
	pool, err := smtpclient.Roots(file)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	return pool, nil
}

// heloName is the EHLO name: the flag, else the host name if it looks like
// a domain (RFC 5321 §4.1.1.1 wants an FQDN), else "localhost".
func heloName(flag string) string {
	if flag != "" {
		return flag
	}
	if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") {
		return h
	}
	return "localhost"
}

// traceFlag is --trace, of probe, advise, wizard and send.
func traceFlag() cli.Flag {
	return &cli.BoolFlag{Name: "trace", Usage: "show every SMTP conversation on stderr, swaks-style (AUTH lines and message content hidden)"}
}

// traceFromFlag is the trace --trace asks for, on stderr; nil without it.
func traceFromFlag(c *cli.Context) *smtpclient.Trace {
	if !c.Bool("trace") {
		return nil
	}
	return smtpclient.NewTrace(c.App.ErrWriter)
}

func runProbe(c *cli.Context) error {
	p, req, err := proberFromFlags(c)
	if err != nil {
		return err
	}
	if c.Bool("identity") || c.IsSet("ip-echo") || c.IsSet("dnsbl") {
		if req.IdentityOptions, err = identityFromFlags(c); err != nil {
			return err
		}
		req.Identity = true
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt)
	defer stop()
	// The progress line would land in the middle of the trace.
	live := isTerminal(c.App.ErrWriter) && p.Trace == nil
	if live {
		p.Progress = func(done, total int, e *probe.Endpoint) {
			fmt.Fprintf(c.App.ErrWriter, "\rprobing… %d/%d endpoints", done, total)
		}
	}
	rep := p.Run(ctx, req)
	if live {
		fmt.Fprint(c.App.ErrWriter, "\r\033[K")
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(c.App.Writer, rep)
	}
	if ctx.Err() != nil && c.Context.Err() == nil {
		return problem(errors.New("interrupted: the report above is partial"))
	}
	if !rep.CanSend() {
		return problem(nil)
	}
	return nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
