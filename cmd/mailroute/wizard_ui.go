package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/charmbracelet/huh"
	"github.com/charmbracelet/lipgloss"
	"github.com/fatih/color"
	"golang.org/x/term"
)

// The wizard's questions, asked with huh: as a form on a terminal, or line
// by line (huh's accessible mode) when stdin is not a terminal or when
// --accessible asks for it, which screen readers read well.

// errStopped means the person stopped the wizard: Ctrl-C, Esc, or the end
// of the answers on stdin.
var errStopped = errors.New("stopped")

type ui struct {
	ctx        context.Context
	out        io.Writer
	stdin      *os.File // nil when stdin is not a file (in-process tests)
	in         *lineInput
	accessible bool // line by line
	terminal   bool // stdin is a terminal: a hidden password can be asked
	theme      *huh.Theme
	restore    func() // puts the terminal back as it was, after an interrupt
}

func newUI(ctx context.Context, stdin io.Reader, out io.Writer, accessible bool) *ui {
	u := &ui{ctx: ctx, out: out, restore: func() {}}
	if f, ok := stdin.(*os.File); ok {
		u.stdin = f
		u.terminal = term.IsTerminal(int(f.Fd()))
		if st, err := term.GetState(int(f.Fd())); err == nil && u.terminal {
			// A hidden prompt turns echo off; an interrupt must not leave
			// the terminal that way.
			u.restore = func() { _ = term.Restore(int(f.Fd()), st) }
		}
	}
	u.in = &lineInput{r: stdin, f: u.stdin}
	u.accessible = accessible || !u.terminal || !isTerminal(out)
	u.theme = wizardTheme(color.NoColor)
	return u
}

// wizardTheme is huh's 16-colour theme, which follows the terminal's own
// palette, or with NO_COLOR (or no terminal) a theme without any colour,
// where the chosen button is marked instead.
func wizardTheme(plain bool) *huh.Theme {
	if !plain {
		return huh.ThemeBase16()
	}
	t := huh.ThemeBase()
	btn := lipgloss.NewStyle().Padding(0, 1).MarginRight(1)
	t.Focused.FocusedButton = btn.Bold(true).SetString("›")
	t.Focused.BlurredButton = btn
	t.Focused.TextInput.Placeholder = lipgloss.NewStyle()
	t.Blurred = t.Focused
	t.Blurred.Base = t.Blurred.Base.BorderStyle(lipgloss.HiddenBorder())
	t.Blurred.Card = t.Blurred.Base
	t.Help.ShortKey, t.Help.ShortDesc, t.Help.ShortSeparator = lipgloss.NewStyle(), lipgloss.NewStyle(), lipgloss.NewStyle()
	t.Help.FullKey, t.Help.FullDesc, t.Help.FullSeparator = lipgloss.NewStyle(), lipgloss.NewStyle(), lipgloss.NewStyle()
	t.Help.Ellipsis = lipgloss.NewStyle()
	return t
}

// run asks one field. In accessible mode huh blocks in a read of stdin
// that nothing interrupts, so the form runs in a goroutine and the wait
// here ends on Ctrl-C as well as on an answer.
func (u *ui) run(f huh.Field, description string) error {
	if u.ctx.Err() != nil {
		return errStopped
	}
	form := huh.NewForm(huh.NewGroup(f)).WithTheme(u.theme).WithAccessible(u.accessible).WithOutput(u.out)
	if u.accessible {
		// huh's accessible mode shows no description: say it first.
		for _, l := range strings.Split(description, "\n") {
			for _, w := range wrap(l, 76) {
				fmt.Fprintf(u.out, "  %s\n", w)
			}
		}
		form = form.WithInput(u.in)
	} else {
		form = form.WithInput(u.stdin).WithShowHelp(true)
	}
	mark := u.in.mark()
	done := make(chan error, 1)
	go func() { done <- form.RunWithContext(u.ctx) }()
	select {
	case err := <-done:
		switch {
		case errors.Is(err, huh.ErrUserAborted), u.ctx.Err() != nil, u.in.endedSince(mark):
			return errStopped
		case err != nil:
			return problem(fmt.Errorf("the question could not be shown: %w", err))
		}
		return nil
	case <-u.ctx.Done():
		return errStopped
	}
}

// input asks for a line. def is taken for an empty answer; validate sees
// the answer after that.
func (u *ui) input(title, description, def string, validate func(string) error) (string, error) {
	var v string
	check := func(s string) error {
		s = strings.TrimSpace(s)
		if s == "" {
			s = def
		}
		if validate == nil {
			return nil
		}
		return validate(s)
	}
	in := huh.NewInput().Title(title).Value(&v).Validate(check)
	if u.accessible {
		if def != "" {
			in.Title(fmt.Sprintf("%s [%s]:", title, def))
		} else {
			in.Title(title + ":")
		}
	} else {
		in.Description(description).Placeholder(def)
	}
	if err := u.run(in, description); err != nil {
		return "", err
	}
	v = strings.TrimSpace(v)
	if v == "" {
		v = def
	}
	u.echo(title, v)
	return v, nil
}

// password asks for a secret without echo; only on a terminal.
func (u *ui) password(title, description string) (string, error) {
	if !u.terminal {
		return "", usage(errors.New("no password source, and stdin is not a terminal to ask on"),
			"give --password-env VAR or --password-cmd CMD (or --no-login if the relay needs no login)")
	}
	var v string
	in := huh.NewInput().Title(title).EchoMode(huh.EchoModePassword).Value(&v).Validate(func(s string) error {
		if s == "" {
			return errors.New("the password is empty")
		}
		return nil
	})
	if u.accessible {
		in.Title(title + ":")
	} else {
		in.Description(description)
	}
	if err := u.run(in, description); err != nil {
		return "", err
	}
	u.echo(title, "(hidden)")
	return v, nil
}

// confirm asks yes or no.
func (u *ui) confirm(title, description string, def bool) (bool, error) {
	v := def
	c := huh.NewConfirm().Title(title).Value(&v).Affirmative("Yes").Negative("No")
	if !u.accessible {
		c.Description(description)
	}
	if err := u.run(c, description); err != nil {
		return false, err
	}
	u.echo(title, yesNo(v))
	return v, nil
}

// echo keeps the answer on screen: a finished huh form erases itself, and
// answers piped in are not echoed by any terminal.
func (u *ui) echo(title, answer string) {
	switch {
	case !u.accessible:
		fmt.Fprintf(u.out, "%s %s\n", bold.Sprint(strings.TrimSuffix(title, "?")+":"), answer)
	case !u.terminal:
		fmt.Fprintf(u.out, "  → %s\n", answer)
	}
}

// lineInput hands huh's accessible prompts one byte per read. huh makes a
// new bufio.Scanner for every question, and a scanner reads ahead: with
// whole blocks, the first question would swallow the answers to the next
// ones. It also notes the end of input, which huh takes as "use the
// default" and the wizard takes as "stop".
type lineInput struct {
	r io.Reader
	f *os.File

	mu    sync.Mutex
	n     int64
	ended bool
}

func (l *lineInput) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := l.r.Read(p[:1])
	l.mu.Lock()
	l.n += int64(n)
	if err != nil {
		l.ended = true
	}
	l.mu.Unlock()
	return n, err
}

// Fd lets huh read a hidden password straight from the terminal.
func (l *lineInput) Fd() uintptr {
	if l.f == nil {
		return ^uintptr(0)
	}
	return l.f.Fd()
}

func (l *lineInput) mark() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// endedSince: the input ended with nothing read since mark, so the last
// question got no answer.
func (l *lineInput) endedSince(mark int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended && l.n == mark
}
