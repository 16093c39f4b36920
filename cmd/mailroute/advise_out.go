package main

import (
	"fmt"
	"io"

	"github.com/fatih/color"

	"github.com/mailroute/mailroute/advisor"
	"github.com/mailroute/mailroute/probe"
)

// printAdvice writes the human recommendation: the answer first, then why,
// what was measured, what is not known, and where the config went.
// fatih/color prints colour only when stdout is a terminal.
func printAdvice(w io.Writer, rec *advisor.Recommendation, rep *probe.Report, written string, wantWrite bool) {
	head := color.New(color.Bold)
	if rec.OK {
		head.Fprintln(w, "Recommendation")
		color.New(color.FgGreen).Fprintf(w, "  %s\n", rec.Summary)
	} else {
		head.Fprintln(w, "No way to send found")
		color.New(color.FgRed).Fprintf(w, "  %s\n", rec.Summary)
	}

	fmt.Fprintln(w)
	head.Fprintln(w, "Why")
	width := 0
	for _, s := range rec.Steps {
		width = max(width, len(s.Topic))
	}
	for _, s := range rec.Steps {
		decision := s.Decision
		switch s.Topic {
		case "threads":
			decision += " (" + rec.Threads.Source + ")"
		case "rate":
			decision += " (" + rec.Rate.Source + ")"
		}
		fmt.Fprintf(w, "  %-*s  %s: %s\n", width, s.Topic, bold.Sprint(decision), s.Reason)
	}

	if m := rep.Measure; m != nil {
		fmt.Fprintln(w)
		head.Fprintf(w, "Measured at %s:%d (%s, no message sent)\n", m.Host, m.Port, m.Elapsed)
		for _, l := range measurementLines(m) {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if len(rec.Unknown) > 0 {
		fmt.Fprintln(w)
		head.Fprintln(w, "Not known")
		for _, u := range rec.Unknown {
			color.New(color.FgYellow).Fprintf(w, "  - %s\n", u)
		}
	}
	if len(rec.Todo) > 0 {
		fmt.Fprintln(w)
		head.Fprintln(w, "What to do")
		for _, t := range rec.Todo {
			fmt.Fprintf(w, "  - %s\n", t)
		}
	}
	if !rec.OK {
		return
	}
	switch {
	case written != "":
		fmt.Fprintln(w)
		head.Fprintln(w, "Config")
		fmt.Fprintf(w, "  written to %s (readable only by you); check it with: mailroute config check %s\n", written, written)
	case !wantWrite:
		fmt.Fprintln(w)
		head.Fprintln(w, "Config")
		fmt.Fprintln(w, "  not written: add --write FILE to save it as commented TOML")
	}
}

// measurementLines are the measured numbers with the server's words.
func measurementLines(m *probe.Measurement) []string {
	var out []string
	switch {
	case m.SessionCapped:
		out = append(out, fmt.Sprintf("sessions: %d at once, none refused (the measurement's cap)", m.SessionLimit))
	case m.SessionLimit > 0:
		s := fmt.Sprintf("sessions: %d at once; the next was refused", m.SessionLimit)
		if m.SessionReply != "" {
			s += fmt.Sprintf(": %q", m.SessionReply)
		}
		out = append(out, s)
	}
	switch {
	case m.TransactionsCapped:
		out = append(out, fmt.Sprintf("messages: %d in a burst, none refused (the measurement's cap)", m.Transactions))
	case m.Transactions > 0:
		s := fmt.Sprintf("messages: %d in a burst; the next was refused", m.Transactions)
		if m.TransactionReply != "" {
			s += fmt.Sprintf(": %q", m.TransactionReply)
		}
		out = append(out, s)
	}
	switch {
	case m.PerSession:
		out = append(out, "the cap is per session: a new session may send again at once")
	case m.Window > 0:
		w := fmt.Sprintf("window: %d messages per %s", m.Transactions, m.Window)
		if m.WindowPrecision > 0 {
			w += fmt.Sprintf(" (± %s)", m.WindowPrecision)
		}
		out = append(out, w+"; then the count starts over")
	case m.WindowNote != "":
		out = append(out, "window: "+m.WindowNote)
	}
	if m.LatencyMedian > 0 {
		out = append(out, fmt.Sprintf("latency: median %s, 90th percentile %s", m.LatencyMedian, m.LatencyP90))
	}
	if m.Error != "" {
		out = append(out, "error: "+m.Error)
	}
	if len(out) == 0 {
		out = append(out, "nothing was measured")
	}
	return out
}

// findingLabel is each severity's word and colour: green good news, yellow
// something to walk around, red a wall on this path.
var findingLabel = map[advisor.Severity]struct {
	word string
	c    *color.Color
}{
	advisor.SevOK:      {"ok", color.New(color.FgGreen, color.Bold)},
	advisor.SevInfo:    {"note", color.New(color.Bold)},
	advisor.SevWarning: {"warning", color.New(color.FgYellow, color.Bold)},
	advisor.SevProblem: {"problem", color.New(color.FgRed, color.Bold)},
}

// printFindings writes the plain-words findings: the severity as a word
// (read aloud well, and clear without colour), the title, what it means,
// and what to do.
func printFindings(w io.Writer, fs []advisor.Finding) {
	const width = 70
	for _, f := range fs {
		l := findingLabel[f.Severity]
		fmt.Fprintf(w, "  %s %s\n", l.c.Sprintf("%-8s", l.word), bold.Sprint(f.Title))
		for _, line := range wrap(f.Meaning, width) {
			fmt.Fprintf(w, "           %s\n", line)
		}
		for i, line := range wrap(f.Action, width-12) {
			if i == 0 {
				fmt.Fprintf(w, "           What to do: %s\n", line)
			} else {
				fmt.Fprintf(w, "                       %s\n", line)
			}
		}
	}
}
