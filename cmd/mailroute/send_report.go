package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/send"
)

// writeReport prints the report for people: a run's, or a dry run's plan
// (writePlan). send.Report is the data; --json writes it as it is.
func writeReport(w io.Writer, r *send.Report) error {
	var b strings.Builder
	c := r.Counts
	if r.Plan != nil {
		writePlan(&b, r.Plan, r)
		_, err := io.WriteString(w, b.String())
		return err
	}
	if r.Interrupted {
		b.WriteString("interrupted: the run was stopped before the end of the list\n")
	}
	fmt.Fprintf(&b, "%d recipients: %d sent, %d deferred, %d failed, %d unknown", r.Recipients, c.Sent, c.Deferred, c.Failed, c.Unknown)
	if c.Pending > 0 {
		// Pending: not sent yet, whether never tried or held back by a
		// refusal that was not the recipient's fault (see refusals).
		fmt.Fprintf(&b, ", %d pending", c.Pending)
	}
	b.WriteString("\n")
	t := r.ThisRun
	took := time.Duration(r.Seconds * float64(time.Second))
	if took >= time.Second {
		took = took.Round(time.Second / 10)
	} else {
		took = took.Round(time.Millisecond)
	}
	fmt.Fprintf(&b, "this run: %d sent, %d deferred, %d failed, %d unknown in %s (%.1f msg/s)\n",
		t.Sent, t.Deferred, t.Failed, t.Unknown, took, r.PerSecond)
	if r.BadRows > 0 {
		fmt.Fprintf(&b, "%d bad rows left out of the list\n", r.BadRows)
	}
	if r.TLSFallbacks > 0 {
		fmt.Fprintf(&b, "%d recipients sent in plaintext after a failed TLS handshake (opportunistic TLS)\n", r.TLSFallbacks)
	}
	for _, u := range r.MTASTSUnread {
		fmt.Fprintf(&b, "MTA-STS policy not readable, mail sent as without it: %s\n", u)
	}
	if len(r.Domains) > 1 {
		b.WriteString("\nby domain:\n")
		for _, d := range r.Domains {
			fmt.Fprintf(&b, "  %-30s sent %d, deferred %d, failed %d, unknown %d\n", d.Domain, d.Sent, d.Deferred, d.Failed, d.Unknown)
		}
	}
	if len(r.Refusals) > 0 {
		b.WriteString("\nrefusals:\n")
		for _, x := range r.Refusals {
			who := x.Target
			if x.Provider != "" {
				who = x.Provider + " (" + x.Target + ")"
			}
			fmt.Fprintf(&b, "  %6d × %s: %s [%s]\n", x.Count, who, x.Words, x.Fault)
			if x.Paused {
				fmt.Fprintf(&b, "         left alone for the rest of the run; %d recipients held back, still pending\n", x.Held)
			} else if x.Held > 0 {
				fmt.Fprintf(&b, "         %d recipients held back, still pending\n", x.Held)
			}
			if x.Fix != "" {
				fmt.Fprintf(&b, "         fix: %s\n", x.Fix)
			}
			fmt.Fprintf(&b, "         e.g. %s\n", x.Example)
		}
	}
	if len(r.Reasons) > 0 {
		b.WriteString("\ntop reasons:\n")
		for _, x := range r.Reasons {
			fmt.Fprintf(&b, "  %6d %-8s %s\n", x.Count, x.State, x.Reason)
		}
	}
	if c.Deferred+c.Unknown+c.Pending > 0 {
		b.WriteString("\n")
	}
	if c.Deferred+c.Pending > 0 {
		var what []string
		if c.Deferred > 0 {
			what = append(what, fmt.Sprintf("%d deferred", c.Deferred))
		}
		if c.Pending > 0 {
			what = append(what, fmt.Sprintf("%d pending", c.Pending))
		}
		fmt.Fprintf(&b, "run the same command again to send to the %s", strings.Join(what, " and "))
		if r.NextRetry != nil && r.NextRetry.After(r.Finished) {
			fmt.Fprintf(&b, " (servers asked to wait: best after %s)", r.NextRetry.Local().Format("15:04:05"))
		}
		b.WriteString("; sent and failed ones are not sent again\n")
	}
	if c.Unknown > 0 {
		fmt.Fprintf(&b, "%d recipients may or may not have the message (connection lost after the final dot, RFC 1047); add --retry-unknown to send to them again\n", c.Unknown)
		for _, a := range r.UnknownRecipients {
			fmt.Fprintf(&b, "  unknown: %s\n", a)
		}
		if c.Unknown > len(r.UnknownRecipients) {
			fmt.Fprintf(&b, "  … and %d more (the journal has them all)\n", c.Unknown-len(r.UnknownRecipients))
		}
	}
	if r.Journal != "" {
		fmt.Fprintf(&b, "journal: %s\n", r.Journal)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writePlan is the text of a dry run.
func writePlan(b *strings.Builder, p *send.Plan, r *send.Report) {
	fmt.Fprintf(b, "dry run: nothing was sent\n")
	fmt.Fprintf(b, "%d recipients in %d %s", r.Recipients, p.Domains, plural(p.Domains, "domain", "domains"))
	if r.BadRows > 0 {
		fmt.Fprintf(b, " (%d bad rows left out)", r.BadRows)
	}
	b.WriteString("\n")
	fmt.Fprintf(b, "would send %d %s", p.WouldSend, plural(p.WouldSend, "message", "messages"))
	if p.AlreadyDone > 0 {
		fmt.Fprintf(b, "; %d already done in the journal", p.AlreadyDone)
	}
	b.WriteString("\n")
	if p.WouldFail > 0 {
		fmt.Fprintf(b, "would fail %d (see reasons below)\n", p.WouldFail)
	}
	if p.DNSTrouble > 0 {
		fmt.Fprintf(b, "%d recipients' domains could not be resolved now (would be deferred)\n", p.DNSTrouble)
	}
	if r.Mode == config.ModeDirect {
		fmt.Fprintf(b, "mode direct: %d sessions in all", p.Threads)
	} else {
		fmt.Fprintf(b, "mode relay: %d sessions in all", p.Threads)
	}
	if p.Rate != "" {
		fmt.Fprintf(b, ", at most %s", p.Rate)
	}
	b.WriteString("\n")
	for _, rl := range p.Relays {
		fmt.Fprintf(b, "  relay %s tls=%s auth=%s threads=%d", rl.Addr, rl.TLS, rl.Auth, rl.Threads)
		if rl.Rate != "" {
			fmt.Fprintf(b, " rate=%s", rl.Rate)
		}
		b.WriteString("\n")
	}
	if p.MTASTSCount > 0 {
		more := ""
		if p.MTASTSCount > len(p.MTASTS) {
			more = fmt.Sprintf(" and %d more", p.MTASTSCount-len(p.MTASTS))
		}
		fmt.Fprintf(b, "MTA-STS enforced by %d %s (verified TLS to the MX hosts their policy names, or deferred): %s%s\n",
			p.MTASTSCount, plural(p.MTASTSCount, "domain", "domains"), strings.Join(p.MTASTS, ", "), more)
	}
	if p.Estimate != nil {
		writeEstimate(b, p.Estimate, p.WouldSend, r.Finished)
	}
	if len(r.Reasons) > 0 {
		b.WriteString("reasons:\n")
		for _, x := range r.Reasons {
			fmt.Fprintf(b, "  %6d %s\n", x.Count, x.Reason)
		}
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// writeEstimate is the estimate's line of a dry run.
func writeEstimate(b *strings.Builder, est *send.Estimate, n int, now time.Time) {
	if est.AtOnce {
		fmt.Fprintf(b, "time: the limits let all %d %s go at once; threads and the server's replies set the pace\n", n, plural(n, "message", "messages"))
	} else {
		d := time.Duration(est.Seconds * float64(time.Second))
		fmt.Fprintf(b, "time: about %s at the least (last message %s), set by %s; threads and the server's replies can only make it longer\n",
			aboutDuration(d), aroundTime(est.LastMessage, now), est.Limit)
	}
	if len(est.Used) > 0 {
		fmt.Fprintf(b, "already used (quota ledger): %s\n", strings.Join(est.Used, ", "))
	}
}

// aboutDuration writes d as a person would say it: "40 s", "25 min",
// "3 h", "2 h 30 min", "2 days".
func aboutDuration(d time.Duration) string {
	switch {
	case d < 90*time.Second:
		return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
	case d < 10*time.Hour:
		d = d.Round(10 * time.Minute)
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	case d < 36*time.Hour:
		return fmt.Sprintf("%d h", int(d.Round(time.Hour)/time.Hour))
	}
	days := int(d.Round(time.Hour*24) / (24 * time.Hour))
	return fmt.Sprintf("%d days", days)
}

// aroundTime writes when t is, seen at now: "around 23:10", "tomorrow
// around 09:14", or "on Tue 1 Dec around 09:14".
func aroundTime(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	clock := t.Format("15:04")
	switch {
	case t.Format(time.DateOnly) == now.Format(time.DateOnly):
		return "around " + clock
	case t.Format(time.DateOnly) == now.AddDate(0, 0, 1).Format(time.DateOnly):
		return "tomorrow around " + clock
	case t.Year() == now.Year():
		return "on " + t.Format("Mon 2 Jan") + " around " + clock
	}
	return "on " + t.Format("Mon 2 Jan 2006") + " around " + clock
}
