package replies

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
)

// catalogTOML is the catalog of provider replies, kept as a readable,
// commented TOML file beside this one so a person can check every entry
// against the page it cites.
//
//go:embed catalog.toml
var catalogTOML []byte

// Entry is one known provider reply from the catalog.
type Entry struct {
	ID       string `toml:"id"`
	Provider string `toml:"provider"`
	// What to match; every field given must match. Codes and Enhanced match
	// any listed value, Commands any listed stage; Text matches when any of
	// its strings occurs in the reply's text (case-insensitive), Regexp when
	// the (case-insensitive) expression does. An entry needs Text, Regexp or
	// Enhanced: a basic code alone says too little.
	Codes    []int    `toml:"codes"`
	Enhanced []string `toml:"enhanced"`
	Commands []string `toml:"commands"`
	Text     []string `toml:"text"`
	Regexp   string   `toml:"regexp"`

	Fault Fault  `toml:"fault"`
	Cause string `toml:"cause"`
	Words string `toml:"words"`
	Fix   string `toml:"fix"`
	// Source is the page that documents the reply, Read the day it was read
	// (YYYY-MM-DD).
	Source string `toml:"source"`
	Read   string `toml:"read"`
	// Example is the reply as the source quotes it ("550 5.7.26 This mail
	// ..."); the tests check that it classifies as this entry.
	Example string `toml:"example"`
	Note    string `toml:"note"`

	re *regexp.Regexp
}

func (e *Entry) verdict() Verdict {
	return Verdict{Fault: e.Fault, Cause: e.Cause, Provider: e.Provider, Words: e.Words, Fix: e.Fix, Source: e.Source}
}

// matches reports whether r (its command normalized, st its parsed
// enhanced code when ok, low its text in lower case) is this entry's reply.
func (e *Entry) matches(r Reply, st status, ok bool, low string) bool {
	if len(e.Codes) > 0 && !slices.Contains(e.Codes, r.Code) {
		return false
	}
	if len(e.Enhanced) > 0 && (!ok || !slices.Contains(e.Enhanced, st.String())) {
		return false
	}
	if len(e.Commands) > 0 && !slices.Contains(e.Commands, r.Command) {
		return false
	}
	if len(e.Text) > 0 {
		if !slices.ContainsFunc(e.Text, func(s string) bool { return strings.Contains(low, strings.ToLower(s)) }) {
			return false
		}
	}
	if e.re != nil && !e.re.MatchString(r.Text) {
		return false
	}
	return true
}

var loadCatalog = sync.OnceValues(func() ([]Entry, error) {
	return parseCatalog(catalogTOML)
})

func parseCatalog(b []byte) ([]Entry, error) {
	var c struct {
		Reply []Entry `toml:"reply"`
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return nil, fmt.Errorf("replies: catalog.toml: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("replies: catalog.toml: unknown keys %v", und)
	}
	return c.Reply, checkCatalog(c.Reply)
}

var faults = []Fault{Recipient, Sender, Auth, Policy, Reputation, Quota, Message, Transient}

// checkCatalog enforces the catalog's rules, so a bad edit fails the tests
// instead of misclassifying replies; it also compiles the expressions.
func checkCatalog(es []Entry) error {
	ids := map[string]bool{}
	for i := range es {
		e := &es[i]
		bad := func(format string, a ...any) error {
			return fmt.Errorf("replies: catalog.toml: %s: %s", e.ID, fmt.Sprintf(format, a...))
		}
		if e.ID == "" || ids[e.ID] {
			return fmt.Errorf("replies: catalog.toml: entry %d: missing or duplicate id %q", i, e.ID)
		}
		ids[e.ID] = true
		switch {
		case !slices.Contains(faults, e.Fault):
			return bad("fault %q", e.Fault)
		case e.Cause == "" || e.Words == "" || e.Fix == "":
			return bad("needs a cause, words and a fix")
		case !strings.HasPrefix(e.Source, "https://") && !strings.HasPrefix(e.Source, "http://"):
			return bad("needs the URL of its source")
		case len(e.Text) == 0 && e.Regexp == "" && len(e.Enhanced) == 0:
			return bad("needs text, regexp or enhanced to match on")
		case e.Example == "":
			return bad("needs an example reply")
		}
		if _, err := time.Parse(time.DateOnly, e.Read); err != nil {
			return bad("read %q is not a date", e.Read)
		}
		for _, c := range e.Codes {
			if c < 400 || c > 599 {
				return bad("code %d is not a refusal", c)
			}
		}
		for _, x := range e.Enhanced {
			if st, ok := parseEnhanced(x); !ok || st.String() != x {
				return bad("enhanced %q", x)
			}
		}
		for _, t := range e.Text {
			if strings.TrimSpace(t) == "" {
				return bad("empty text")
			}
		}
		if e.Regexp != "" {
			r, err := regexp.Compile("(?i)" + e.Regexp)
			if err != nil {
				return bad("regexp: %v", err)
			}
			e.re = r
		}
	}
	return nil
}

// Catalog returns the embedded catalog, shared: callers must not modify
// it. It panics if the embedded file is malformed, which TestCatalog rules
// out.
func Catalog() []Entry {
	es, err := loadCatalog()
	if err != nil {
		panic(err)
	}
	return es
}

// matchCatalog returns the first catalog entry that matches r, or nil. The
// file's order is the priority: narrow entries come before broad ones.
func matchCatalog(r Reply, st status, ok bool) *Entry {
	es := Catalog()
	low := strings.ToLower(r.Text)
	for i := range es {
		if es[i].matches(r, st, ok, low) {
			return &es[i]
		}
	}
	return nil
}
