package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// unknownCommand is the error for a word that is not a command of parent
// ("mailroute" or "mailroute config"), with the closest command as a
// suggestion when one is close enough to be a typo.
func unknownCommand(parent, word string, cmds []*cli.Command) error {
	what := "command"
	if p, ok := strings.CutPrefix(parent, "mailroute "); ok {
		what = p + " command"
	}
	hint := fmt.Sprintf("'%s --help' lists the commands", parent)
	if s := closestCommand(word, cmds); s != "" {
		hint = fmt.Sprintf("did you mean '%s %s'? %s", parent, s, hint)
	}
	return usage(fmt.Errorf("unknown %s %q", what, word), hint)
}

// closestCommand is the visible command name nearest to word, or "" when
// none is within a typo's reach: two edits (one for short words), or word
// is the start of exactly one name. urfave/cli's own suggestion
// (Jaro-Winkler) always names something, however far; a wrong guess is
// worse than none.
func closestCommand(word string, cmds []*cli.Command) string {
	word = strings.ToLower(word)
	reach := 2
	if len(word) <= 3 {
		reach = 1
	}
	best, bestD := "", reach+1
	var prefixed []string
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, name := range c.Names() {
			if word != "" && strings.HasPrefix(name, word) {
				prefixed = append(prefixed, c.Name)
			}
			if d := editDistance(word, name); d < bestD {
				best, bestD = c.Name, d
			}
		}
	}
	if best == "" && len(prefixed) == 1 {
		best = prefixed[0]
	}
	return best
}

// editDistance is the Levenshtein distance, with a transposition ("sned")
// counted as one edit (optimal string alignment).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// flagUsage is the usage error for a bad flag of the command path
// ("mailroute send"): with the nearest flag when the flag is unknown and
// one is within a typo's reach (--dryrun → --dry-run).
func flagUsage(err error, path string, flags []cli.Flag) error {
	hint := "run '" + path + " --help' for the flags"
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return usage(err, hint)
	}
	name = strings.TrimPrefix(name, "-")
	var cmds []*cli.Command // closestCommand compares names: flags are names too
	for _, f := range flags {
		cmds = append(cmds, &cli.Command{Name: f.Names()[0], Aliases: f.Names()[1:]})
	}
	if s := closestCommand(name, cmds); s != "" && len(s) > 1 {
		hint = fmt.Sprintf("did you mean --%s? %s", s, hint)
	}
	return usage(err, hint)
}
