package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/urfave/cli/v2"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:      "config",
		Usage:     "check a config file, or describe every config key",
		UsageText: "mailroute config check FILE | mailroute config describe [--json]",
		Description: `Examples:
   mailroute config check mailroute.toml      # is it right? the password source too
   mailroute config describe                  # every key, its type, default and meaning
   mailroute config describe --json`,
		Subcommands: []*cli.Command{
			{
				Name:      "check",
				Usage:     "load FILE as mailroute send would, and say what is wrong with it",
				UsageText: "mailroute config check FILE",
				Description: `Every error is printed with its file:line, key and a hint; warnings too.
The password source of each relay is checked (the environment variable is
set, the command runs) without printing the password.

Examples:
   mailroute config check mailroute.toml
   MAILROUTE_PASSWORD=... mailroute config check mailroute.toml

Exit status: 0 the file is good, 2 it is not.`,
				Action:       runConfigCheck,
				OnUsageError: subUsage("config check"),
			},
			{
				Name:      "describe",
				Usage:     "list every config key: its type, default and meaning",
				UsageText: "mailroute config describe [--json]",
				Description: `Examples:
   mailroute config describe
   mailroute config describe --json | jq -r '.[].key'`,
				Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the keys as a JSON array"}},
				Action:       runConfigDescribe,
				OnUsageError: subUsage("config describe"),
			},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return unknownCommand("mailroute config", c.Args().First(), c.Command.Subcommands)
			}
			return usage(errors.New("config needs a command"), "use 'mailroute config check FILE' or 'mailroute config describe'")
		},
	}
}

// subUsage keeps urfave/cli from printing the whole help page on a bad flag.
func subUsage(name string) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		return flagUsage(err, "mailroute "+name, c.Command.Flags)
	}
}

// secretCheckTimeout bounds the password commands run by config check.
const secretCheckTimeout = 15 * time.Second

func runConfigCheck(c *cli.Context) error {
	if c.Args().Len() != 1 {
		return usage(errors.New("config check needs one FILE"), "mailroute config check mailroute.toml")
	}
	path := c.Args().First()
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	// Every problem in one run: the file's, then each password source of
	// what could be read of it.
	cfg, warnings, err := config.Check(path)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "mailroute: warning: %s: %s\n", path, w)
	}
	bad := err != nil
	if err != nil {
		printConfigErrors(stderr, err)
	}
	if cfg == nil {
		return &cmdError{code: exitUsage} // the errors are printed
	}
	for i := range cfg.Relay {
		r := &cfg.Relay[i]
		if r.Auth == "" || r.Auth == "none" {
			continue
		}
		ctx, cancel := context.WithTimeout(c.Context, secretCheckTimeout)
		// Only whether the password is there matters; the value is dropped.
		_, err := r.Secret(ctx)
		cancel()
		if err != nil {
			bad = true
			fmt.Fprintf(stderr, "mailroute: error: %s: %v\n", path, err)
			fmt.Fprintf(stderr, "mailroute: hint: %s\n", secretHint(r))
		}
	}
	if bad {
		return &cmdError{code: exitUsage}
	}
	fmt.Fprintf(stdout, "%s: ok: %s\n", path, describeConfig(cfg))
	return nil
}

func secretHint(r *config.Relay) string {
	switch {
	case r.PasswordEnv != "":
		return fmt.Sprintf("export %s before sending (the password itself stays out of the file)", r.PasswordEnv)
	case r.PasswordCmd != "":
		return "run the command yourself to see why it fails; its first line of output must be the password"
	}
	return `set password_env = "VARIABLE" or password_cmd = "COMMAND"`
}

// printConfigErrors prints each problem of a (joined) config error as its
// own error line, with its hint and, for syntax errors, the snippet.
func printConfigErrors(w io.Writer, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintf(w, "mailroute: error: %s\n", e)
		var ce *config.Error
		if errors.As(e, &ce) {
			if ce.Snippet != "" {
				for _, l := range strings.Split(ce.Snippet, "\n") {
					fmt.Fprintf(w, "    %s\n", l)
				}
			}
			if ce.Hint != "" {
				fmt.Fprintf(w, "mailroute: hint: %s\n", ce.Hint)
			}
		}
	}
}

// describeConfig is a good config in one line, so "ok" says what it means.
func describeConfig(cfg *config.Config) string {
	parts := []string{fmt.Sprintf("mode %s", cfg.Mode), fmt.Sprintf("%d threads", cfg.Threads)}
	if !cfg.Rate.IsZero() {
		parts = append(parts, "rate "+cfg.Rate.String())
	}
	for _, r := range cfg.Relay {
		s := fmt.Sprintf("relay %s tls=%s", r.Addr(), r.TLS)
		switch {
		case r.Auth == "none":
			s += " no login"
		case r.PasswordEnv != "":
			s += fmt.Sprintf(" login %s (password from $%s, which is set)", r.Username, r.PasswordEnv)
		case r.PasswordCmd != "":
			s += fmt.Sprintf(" login %s (password from a command, which ran)", r.Username)
		default:
			s += fmt.Sprintf(" login %s (password in the file)", r.Username)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func runConfigDescribe(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usage(fmt.Errorf("unexpected argument %q", c.Args().First()), "config describe takes no arguments")
	}
	fields := config.DescribeFields()
	w := c.App.Writer
	if c.Bool("json") {
		type field struct {
			Key     string `json:"key"`
			Type    string `json:"type"`
			Default string `json:"default,omitempty"`
			Doc     string `json:"doc"`
		}
		out := make([]field, len(fields))
		for i, f := range fields {
			out[i] = field(f)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for i, f := range fields {
		if i > 0 && !strings.Contains(f.Key, ".") {
			fmt.Fprintln(w) // a blank line before each top-level key and table
		}
		head := fmt.Sprintf("%s (%s", f.Key, f.Type)
		if f.Default != "" {
			head += ", default " + f.Default
		}
		bold.Fprintln(w, head+")")
		for _, l := range wrap(f.Doc, 72) {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	return nil
}

func wrap(s string, width int) []string {
	var lines []string
	var cur string
	for _, word := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(word) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += word
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
