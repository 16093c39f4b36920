package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mailroute/mailroute/internal/quota"
)

// rateHint is appended to every rate error: the user's next step is to see
// the accepted forms.
const rateHint = `write COUNT/WINDOW, e.g. "30/m", "1/s", "500/d" or "10/5m"`

// ParseRate reads a rate written COUNT/WINDOW. WINDOW is a unit (s, m, h, d),
// a unit with a multiplier ("5m"), or a Go duration ("1m30s"). The empty
// string is the zero Rate (no limit). Errors say what is wrong and how to
// write it.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Rate{}, nil
	}
	count, win, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("bad rate %q: no window; %s", s, rateHint)
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 1 {
		return Rate{}, fmt.Errorf("bad rate %q: count %q is not a whole number of at least 1; %s", s, count, rateHint)
	}
	w, err := parseWindow(strings.TrimSpace(win))
	if err != nil {
		return Rate{}, fmt.Errorf("bad rate %q: %v; %s", s, err, rateHint)
	}
	return Rate{N: n, Window: w}, nil
}

var rateUnits = map[byte]time.Duration{
	's': time.Second,
	'm': time.Minute,
	'h': time.Hour,
	'd': 24 * time.Hour,
}

func parseWindow(w string) (time.Duration, error) {
	if w == "" {
		return 0, fmt.Errorf("empty window")
	}
	if unit, ok := rateUnits[w[len(w)-1]]; ok {
		mult := w[:len(w)-1]
		if mult == "" {
			return unit, nil
		}
		if k, err := strconv.Atoi(mult); err == nil {
			if k < 1 || k > 1e6 {
				return 0, fmt.Errorf("window %q out of range", w)
			}
			return time.Duration(k) * unit, nil
		}
	}
	d, err := time.ParseDuration(w)
	if err != nil {
		return 0, fmt.Errorf("unknown window %q (units are s, m, h, d)", w)
	}
	if d < time.Millisecond {
		return 0, fmt.Errorf("window %q is shorter than a millisecond", w)
	}
	return d, nil
}

// String writes the rate in the shortest form ParseRate reads back: the
// largest unit that divides the window. The zero Rate is "".
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	return quota.Limit{N: r.N, Window: r.Window}.String()
}

// IsZero reports whether r is the zero Rate, which means no limit.
func (r Rate) IsZero() bool { return r.N == 0 || r.Window <= 0 }

// PerSecond is the sustained rate in events per second, for
// golang.org/x/time/rate.Limit. The zero Rate gives math.MaxFloat64, which is
// exactly rate.Inf, so rate.Limit(r.PerSecond()) is right without a special
// case (0 would mean "nothing allowed").
func (r Rate) PerSecond() float64 {
	if r.IsZero() {
		return math.MaxFloat64
	}
	return float64(r.N) / r.Window.Seconds()
}

// MarshalText implements encoding.TextMarshaler (TOML writes a string).
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// String writes the duration as Go does, without the zero trailing units
// ("10m", not "10m0s") so generated files read naturally.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q; write a number with a unit, e.g. \"30s\", \"10m\" or \"1h30m\"", s)
	}
	*d = Duration(v)
	return nil
}

// Rates are limits that hold together, as ISP relays publish them: 30 a
// minute and 300 an hour and 500 a day. In TOML a single string
// (`rate = "30/m"`) or an array (`rate = ["30/m", "300/h", "500/d"]`).
// The nil Rates is no limit. README.md, "Limits and quotas", says what a rate
// means exactly.
type Rates []Rate

// IsZero reports whether r holds no limit.
func (r Rates) IsZero() bool {
	for _, x := range r {
		if !x.IsZero() {
			return false
		}
	}
	return true
}

// String writes the rates for people: "30/m, 500/d"; "" for none.
func (r Rates) String() string {
	var s []string
	for _, x := range r {
		if !x.IsZero() {
			s = append(s, x.String())
		}
	}
	return strings.Join(s, ", ")
}

// Limits converts r for the quota package.
func (r Rates) Limits() []quota.Limit {
	var out []quota.Limit
	for _, x := range r {
		if !x.IsZero() {
			out = append(out, quota.Limit{N: x.N, Window: x.Window})
		}
	}
	return out
}

// UnmarshalTOML implements toml.Unmarshaler: a string or an array of
// strings.
func (r *Rates) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		x, err := ParseRate(v)
		if err != nil {
			return err
		}
		*r = nil
		if !x.IsZero() {
			*r = Rates{x}
		}
		return nil
	case []any:
		out := Rates{}
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("bad rate: element %d is %T, not a string; %s", i+1, e, rateHint)
			}
			x, err := ParseRate(s)
			if err != nil {
				return err
			}
			if !x.IsZero() {
				out = append(out, x)
			}
		}
		*r = out
		return nil
	}
	return fmt.Errorf("bad rate: a %T; write a string such as \"30/m\" or an array such as [\"30/m\", \"500/d\"]", v)
}

// MarshalTOML implements toml.Marshaler: one rate as a string, several as
// an array, none as "".
func (r Rates) MarshalTOML() ([]byte, error) {
	var s []string
	for _, x := range r {
		if !x.IsZero() {
			s = append(s, strconv.Quote(x.String()))
		}
	}
	switch len(s) {
	case 0:
		return []byte(`""`), nil
	case 1:
		return []byte(s[0]), nil
	}
	return []byte("[" + strings.Join(s, ", ") + "]"), nil
}
