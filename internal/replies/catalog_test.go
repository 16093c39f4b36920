package replies

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCatalog(t *testing.T) {
	es, err := loadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) < 20 {
		t.Errorf("only %d entries", len(es))
	}
	providers := map[string]int{}
	for _, e := range es {
		providers[e.Provider]++
		if e.Source == "" || e.Cause == "" || e.Words == "" || e.Fix == "" || e.Read == "" {
			t.Errorf("%s: needs source, cause, words, fix and read: %+v", e.ID, e)
		}
		if d, _ := time.Parse(time.DateOnly, e.Read); d.After(time.Now()) {
			t.Errorf("%s: read in the future (%s)", e.ID, e.Read)
		}
	}
	for _, p := range []string{"Gmail", "Microsoft", "Yahoo", "Spamhaus"} {
		if providers[p] == 0 {
			t.Errorf("no entry for %s", p)
		}
	}
}

// Every entry's example, as its source quotes it, classifies as that entry
// (and not as an earlier, broader one).
func TestCatalogExamples(t *testing.T) {
	for _, e := range Catalog() {
		r, ok := parseExample(e.Example)
		if !ok {
			t.Errorf("%s: example %q is not \"code [enhanced] text\"", e.ID, e.Example)
			continue
		}
		if len(e.Codes) > 0 {
			r.Code = e.Codes[0]
		}
		if len(e.Commands) > 0 {
			r.Command = e.Commands[0]
		}
		v := Classify(r)
		if v.Cause != e.Cause || v.Fault != e.Fault || v.Provider != e.Provider || v.Source != e.Source {
			t.Errorf("%s: example classifies as %s/%s/%s (%s)", e.ID, v.Provider, v.Fault, v.Cause, v.Source)
		}
		if v.Permanent != (r.Code >= 500) {
			t.Errorf("%s: permanent %v for %d", e.ID, v.Permanent, r.Code)
		}
	}
}

// parseExample splits "550 5.7.26 words" into a Reply.
func parseExample(s string) (Reply, bool) {
	code, rest, _ := strings.Cut(s, " ")
	n, err := strconv.Atoi(code)
	if err != nil || n < 400 || n > 599 {
		return Reply{}, false
	}
	r := Reply{Code: n, Text: rest, Command: "DATA"}
	if f, text, _ := strings.Cut(rest, " "); f != "" {
		if _, ok := parseEnhanced(f); ok {
			r.Enhanced, r.Text = f, text
		}
	}
	return r, true
}

func TestCheckCatalogRejects(t *testing.T) {
	good := Entry{ID: "a", Provider: "P", Text: []string{"x"}, Fault: Sender, Cause: "c", Words: "w", Fix: "f",
		Source: "https://x.invalid/", Read: "2026-11-29", Example: "550 x"}
	if err := checkCatalog([]Entry{good}); err != nil {
		t.Fatalf("good entry refused: %v", err)
	}
	for name, edit := range map[string]func(*Entry){
		"no id":        func(e *Entry) { e.ID = "" },
		"no source":    func(e *Entry) { e.Source = "" },
		"RFC source":   func(e *Entry) { e.Source = "RFC 3463" },
		"no cause":     func(e *Entry) { e.Cause = "" },
		"no words":     func(e *Entry) { e.Words = "" },
		"no fix":       func(e *Entry) { e.Fix = "" },
		"no read":      func(e *Entry) { e.Read = "" },
		"bad read":     func(e *Entry) { e.Read = "29/11/2026" },
		"bad fault":    func(e *Entry) { e.Fault = "mystery" },
		"unknown":      func(e *Entry) { e.Fault = Unknown },
		"no matcher":   func(e *Entry) { e.Text = nil },
		"code alone":   func(e *Entry) { e.Text, e.Codes = nil, []int{550} },
		"empty text":   func(e *Entry) { e.Text = []string{" "} },
		"bad code":     func(e *Entry) { e.Codes = []int{250} },
		"bad enhanced": func(e *Entry) { e.Enhanced = []string{"5.07.1"} },
		"bad regexp":   func(e *Entry) { e.Regexp = "(" },
		"no example":   func(e *Entry) { e.Example = "" },
	} {
		e := good
		edit(&e)
		if err := checkCatalog([]Entry{e}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkCatalog([]Entry{good, good}); err == nil {
		t.Error("duplicate id accepted")
	}
}

func TestParseCatalogUnknownKeys(t *testing.T) {
	const bad = `
[[reply]]
id = "a"
provider = "P"
text = ["x"]
fault = "sender"
cause = "c"
words = "w"
fix = "f"
source = "https://x.invalid/"
read = "2026-11-29"
example = "550 x"
sauce = "typo"
`
	if _, err := parseCatalog([]byte(bad)); err == nil || !strings.Contains(err.Error(), "sauce") {
		t.Errorf("unknown key: err = %v", err)
	}
	if _, err := parseCatalog([]byte("[[reply]\n")); err == nil {
		t.Error("broken TOML accepted")
	}
}
