package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// configErrors flattens what Parse returns into its *Errors.
func configErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var out []*Error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %v (%T) is not an *Error", e, e)
		}
		out = append(out, ce)
	}
	walk(err)
	return out
}

func TestParseConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want func(*Config) any
		val  any
	}{
		{"mode", "[relay]\nhost = \"smtp.example.com\"\n", func(c *Config) any { return c.Mode }, ModeRelay},
		{"threads", "[relay]\nhost = \"h.example\"\n", func(c *Config) any { return c.Threads }, 2},
		{"single table is one relay", "[relay]\nhost = \"h.example\"\n", func(c *Config) any { return len(c.Relay) }, 1},
		{"port 587", "[relay]\nhost = \"h.example\"\n", func(c *Config) any { return c.Relay[0].Port }, 587},
		{"starttls", "[relay]\nhost = \"h.example\"\n", func(c *Config) any { return c.Relay[0].TLS }, TLSStartTLS},
		{"465 implicit", "[relay]\nhost = \"h.example\"\nport = 465\n", func(c *Config) any { return c.Relay[0].TLS }, TLSImplicit},
		{"implicit 465", "[relay]\nhost = \"h.example\"\ntls = \"implicit\"\n", func(c *Config) any { return c.Relay[0].Port }, 465},
		{"auth none", "[relay]\nhost = \"h.example\"\n", func(c *Config) any { return c.Relay[0].Auth }, "none"},
		{"auth plain", "[relay]\nhost = \"h.example\"\nusername = \"u\"\npassword_env = \"P\"\n", func(c *Config) any { return c.Relay[0].Auth }, "plain"},
		{"direct", "mode = \"direct\"\n", func(c *Config) any { return c.Direct }, Direct{PerDomainThreads: 2, TLS: TLSOpportunistic, Port: 25, MaxMXHosts: 5, AddressFamily: FamilyAny}},
		{"retry", "mode = \"direct\"\n", func(c *Config) any { return c.Retry },
			Retry{Attempts: 5, Backoff: Duration(30 * time.Second), MaxBackoff: Duration(10 * time.Minute), Within: Duration(30 * time.Minute), Unreachable: Duration(2 * time.Minute)}},
		{"arrays", "[[relay]]\nhost = \"a.example\"\n[[relay]]\nhost = \"b.example\"\nport = 2525\n",
			func(c *Config) any { return []string{c.Relay[0].Addr(), c.Relay[1].Addr()} }, []string{"a.example:587", "b.example:2525"}},
		{"rate", "rate = \"10/5m\"\n[relay]\nhost = \"h.example\"\nrate = \"1/s\"\n",
			func(c *Config) any { return []Rates{c.Rate, c.Relay[0].Rate} }, []Rates{{{10, 5 * time.Minute}}, {{1, time.Second}}}},
		{"rates", "rate = [\"30/m\", \"300/h\", \"500/d\"]\n[relay]\nhost = \"h.example\"\nrate = [\"20/10s\"]\n",
			func(c *Config) any { return []Rates{c.Rate, c.Relay[0].Rate} },
			[]Rates{{{30, time.Minute}, {300, time.Hour}, {500, 24 * time.Hour}}, {{20, 10 * time.Second}}}},
		{"no rate", "rate = \"\"\nmode = \"direct\"\n", func(c *Config) any { return c.Rate.IsZero() }, true},
		{"BOM", "\ufeffmode = \"direct\"\n", func(c *Config) any { return c.Mode }, ModeDirect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := Parse([]byte(tt.src), "c.toml")
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.want(c); !reflect.DeepEqual(got, tt.val) {
				t.Errorf("got %#v, want %#v", got, tt.val)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		key     string
		line    int
		msg     string // substring of Message
		hint    string // substring of Hint
		nErrors int    // 0: don't check
		snippet bool
	}{
		{name: "unknown key", src: "mode = \"relay\"\nbogus = 1\n[relay]\nhost = \"h.example\"\n", key: "bogus", line: 2, msg: "unknown key", hint: "config describe"},
		{name: "typo suggests", src: "[relay]\nhots = \"h.example\"\n", key: "relay.hots", line: 2, hint: `did you mean "relay.host"`},
		{name: "unknown key in second relay", src: "[[relay]]\nhost = \"a.example\"\n\n[[relay]]\nhost = \"b.example\"\nprot = 25\n", key: "relay.prot", line: 6, hint: `"relay.port"`},
		{name: "unknown key in inline table", src: "mode = \"direct\"\nrelay = {host = \"h.example\", bogus = 1}\n", key: "relay.bogus", line: 2},
		{name: "unknown table once", src: "mode = \"direct\"\n[zzz]\na = 1\nb = 2\n", key: "zzz", line: 2, nErrors: 1},
		{name: "type", src: "threads = \"two\"\n", key: "threads", line: 1, msg: "expected integer", hint: "concurrent SMTP sessions"},
		{name: "type in relay", src: "[relay]\nhost = \"h.example\"\nport = \"587\"\n", key: "relay.port", line: 3, msg: "string"},
		{name: "bad rate", src: "mode = \"direct\"\n\nrate = \"30\"\n", key: "rate", line: 3, msg: `bad rate "30": no window`, hint: "COUNT/WINDOW", snippet: true},
		{name: "bad duration", src: "mode = \"direct\"\n[retry]\nbackoff = \"soon\"\n", key: "retry.backoff", line: 3, msg: "bad duration", hint: "30s"},
		{name: "syntax", src: "mode = \"direct\"\nthreads = \n", line: 2, snippet: true},
		{name: "mode", src: "mode = \"smtp\"\n", key: "mode", line: 1, msg: "unknown mode", hint: `"direct" or "relay"`},
		{name: "no relay", src: "threads = 1\n", key: "relay", msg: "at least one", hint: "mode = \"direct\""},
		{name: "no host", src: "[relay]\nport = 25\n", key: "relay.host", line: 1, msg: "missing"},
		{name: "host with port", src: "[relay]\nhost = \"h.example:25\"\n", key: "relay.host", line: 2, msg: "port in it"},
		{name: "port range", src: "[relay]\nhost = \"h.example\"\nport = 70000\n", key: "relay.port", line: 3, msg: "out of range"},
		{name: "relay tls", src: "[relay]\nhost = \"h.example\"\ntls = \"opportunistic\"\n", key: "relay.tls", line: 3, msg: "direct mode"},
		{name: "tls enum", src: "[relay]\nhost = \"h.example\"\ntls = \"ssl\"\n", key: "relay.tls", line: 3, hint: "implicit"},
		{name: "auth enum", src: "[relay]\nhost = \"h.example\"\nauth = \"gssapi\"\n", key: "relay.auth", line: 3, msg: "unknown mechanism"},
		{name: "auth needs username", src: "[relay]\nhost = \"h.example\"\nauth = \"login\"\npassword_env = \"P\"\n", key: "relay.username", line: 1, msg: "needs a username"},
		{name: "no secret", src: "[relay]\nhost = \"h.example\"\nusername = \"u\"\n", key: "relay.password_env", msg: "no password source"},
		{name: "two secrets", src: "[relay]\nhost = \"h.example\"\nusername = \"u\"\npassword_env = \"P\"\npassword_cmd = \"pass x\"\n", key: "relay.password_env", line: 4, msg: "more than one"},
		{name: "clear password", src: "[relay]\nhost = \"h.example\"\nport = 25\ntls = \"none\"\nusername = \"u\"\npassword_env = \"P\"\n", key: "relay.tls", line: 4,
			msg: "refusing to send a password in clear", hint: `set tls = "starttls" or insecure_auth = true`},
		{name: "explicit zero threads", src: "threads = 0\nmode = \"direct\"\n", key: "threads", line: 1, msg: "at least 1"},
		{name: "too many threads", src: "threads = 101\nmode = \"direct\"\n", key: "threads", line: 1, msg: "out of range"},
		{name: "relay threads sum", src: "threads = 3\n[[relay]]\nhost = \"a.example\"\nthreads = 2\n[[relay]]\nhost = \"b.example\"\nthreads = 2\n", key: "threads", line: 1, msg: "add up to 4"},
		{name: "negative messages per session", src: "[relay]\nhost = \"h.example\"\nmessages_per_session = -5\n", key: "relay.messages_per_session", line: 3, msg: "negative", hint: "no cap"},
		{name: "second relay key is indexed", src: "[[relay]]\nhost = \"a.example\"\n[[relay]]\nhost = \"b.example\"\nport = 0\nauth = \"x\"\n", key: "relay[1].auth", line: 6},
		{name: "direct tls", src: "mode = \"direct\"\n[direct]\ntls = \"implicit\"\n", key: "direct.tls", line: 3},
		{name: "backoff order", src: "mode = \"direct\"\n[retry]\nbackoff = \"5m\"\nmax_backoff = \"1m\"\n", key: "retry.max_backoff", line: 4, msg: "shorter than backoff"},
		{name: "from", src: "mode = \"direct\"\nfrom = \"Bob <bob@example.com>\"\n", key: "from", line: 2, msg: "bad address"},
		{name: "resolver", src: "mode = \"direct\"\nresolver = \"dns.example\"\n", key: "resolver", line: 2, msg: "IP"},
		{name: "dkim key missing", src: "mode = \"direct\"\n[dkim]\ndomain = \"example.com\"\nselector = \"s1\"\nkey_file = \"/nonexistent/k.pem\"\n", key: "dkim.key_file", line: 5},
		{name: "dkim fields", src: "mode = \"direct\"\n[dkim]\nkey_file = \"k.pem\"\n", key: "dkim.domain", line: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := Parse([]byte(tt.src), "c.toml")
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			errs := configErrors(t, err)
			if tt.nErrors > 0 && len(errs) != tt.nErrors {
				t.Errorf("%d errors, want %d: %v", len(errs), tt.nErrors, err)
			}
			e := errs[0]
			if e.File != "c.toml" || (tt.key != "" && e.Key != tt.key) || (tt.line != 0 && e.Line != tt.line) ||
				!strings.Contains(e.Message, tt.msg) || !strings.Contains(e.Hint, tt.hint) || (tt.snippet && e.Snippet == "") {
				t.Errorf("got %+v\nwant key %q line %d msg ~%q hint ~%q snippet %v", *e, tt.key, tt.line, tt.msg, tt.hint, tt.snippet)
			}
			if !strings.HasPrefix(e.Error(), "c.toml:") {
				t.Errorf("Error() = %q, want it to start with the file", e.Error())
			}
		})
	}
}

func TestConfigErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "c.toml", Line: 3, Key: "relay.port", Message: "bad"}, "c.toml:3: relay.port: bad"},
		{Error{File: "c.toml", Key: "relay", Message: "bad"}, "c.toml: relay: bad"},
		{Error{Key: "threads", Message: "bad"}, "threads: bad"},
		{Error{File: "c.toml", Line: 2, Message: "bad"}, "c.toml:2: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	src := "mode = \"direct\"\n[[relay]]\nhost = \"h.example\"\nport = 465\ntls = \"starttls\"\nusername = \"u\"\npassword = \"hunter2\"\n"
	_, warns, err := Parse([]byte(src), "c.toml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range warns {
		got = append(got, w.String())
	}
	want := []string{"line 2: relay: relay tables are ignored", "line 5: relay.tls: port 465", "line 7: relay.password: plaintext password"}
	if len(got) != len(want) {
		t.Fatalf("warnings %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %q, want prefix %q", got[i], want[i])
		}
	}
}

func TestLoadConfigPasswordPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	src := "[relay]\nhost = \"h.example\"\nusername = \"u\"\npassword = \"hunter2\"\n"
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(path)
	errs := configErrors(t, err)
	if e := errs[0]; e.Line != 4 || e.Message != path+" is readable by others and holds a password" || e.Hint != "chmod 600 "+path {
		t.Errorf("got %+v", e)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	c, warns, err := Load(path)
	if err != nil || len(warns) != 1 || c.Relay[0].Password != "hunter2" {
		t.Errorf("after chmod 600: %v, %v", warns, err)
	}
	if _, _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := &Config{Relay: []Relay{{Host: "a.example"}, {Host: "b.example", Port: 99999}}}
	c.ApplyDefaults()
	err := c.Validate()
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "relay[1].port" || ce.File != "" || ce.Line != 0 {
		t.Fatalf("got %#v", err)
	}
	c.Relay[1].Port = 25
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultsMatchTags keeps the `default` tags (what users read) and
// ApplyDefaults (what runs) in step, for every tag that is a plain value.
func TestDefaultsMatchTags(t *testing.T) {
	c := &Config{Relay: []Relay{{}}, DKIM: &DKIM{}}
	c.ApplyDefaults()
	checked := 0
	for _, f := range DescribeFields() {
		if f.Default == "" || strings.Contains(f.Default, " ") && f.Type != "array of strings" {
			continue // prose defaults ("this machine's host name")
		}
		v := lookupKey(reflect.ValueOf(c).Elem(), strings.Split(f.Key, "."))
		got := ""
		switch x := v.Interface().(type) {
		case []string:
			got = strings.Join(x, ", ")
		case Duration:
			got = x.String()
		default:
			got = strings.TrimSpace(strings.Trim(strings.TrimSpace(renderValue(x)), `"`))
		}
		if got != f.Default {
			t.Errorf("%s: ApplyDefaults gives %q, the tag says %q", f.Key, got, f.Default)
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("only %d defaults checked", checked)
	}
}

func renderValue(v any) string {
	s, _ := encodeKey("k", v)
	return strings.TrimPrefix(s, "k = ")
}

func lookupKey(v reflect.Value, path []string) reflect.Value {
	for _, p := range path {
		v = reflect.Indirect(v)
		if v.Kind() == reflect.Slice {
			v = v.Index(0)
		}
		for sf, fv := range v.Fields() {
			if tomlName(sf) == p {
				v = fv
				break
			}
		}
	}
	return v
}

func TestSecret(t *testing.T) {
	t.Setenv("MAILROUTE_TEST_PW", "s3cret")
	t.Setenv("MAILROUTE_TEST_EMPTY", "")
	ctx := context.Background()
	tests := []struct {
		name    string
		r       Relay
		want    string
		errHas  string
		errLack string
	}{
		{name: "env", r: Relay{PasswordEnv: "MAILROUTE_TEST_PW"}, want: "s3cret"},
		{name: "env unset", r: Relay{Host: "h", PasswordEnv: "MAILROUTE_TEST_UNSET"}, errHas: "MAILROUTE_TEST_UNSET is not set"},
		{name: "env empty", r: Relay{PasswordEnv: "MAILROUTE_TEST_EMPTY"}, errHas: "MAILROUTE_TEST_EMPTY is empty"},
		{name: "cmd first line", r: Relay{PasswordCmd: "printf '  pw1  \\nsecond\\n'"}, want: "pw1"},
		{name: "cmd fails", r: Relay{PasswordCmd: "printf 'le%s\\n' aked; echo 'no such entry' >&2; exit 3"}, errHas: "no such entry", errLack: "leaked"},
		{name: "cmd echoes secret to stderr", r: Relay{PasswordCmd: "printf 'top%s\\n' secret; printf 'got top%s' secret >&2; exit 1"}, errHas: "got ***", errLack: "topsecret"},
		{name: "cmd empty", r: Relay{PasswordCmd: "true"}, errHas: "empty first line"},
		{name: "password", r: Relay{Password: "pw"}, want: "pw"},
		{name: "none", r: Relay{Host: "h"}, errHas: "no password source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.Secret(ctx)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) || tt.errLack != "" && strings.Contains(err.Error(), tt.errLack) {
					t.Fatalf("err = %v, want it to contain %q and not %q", err, tt.errHas, tt.errLack)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSecretCanceled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := Relay{Host: "h", PasswordCmd: "sleep 5; echo late"}
	if _, err := r.Secret(ctx); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestRelayAddr(t *testing.T) {
	for _, tt := range []struct {
		r    Relay
		want string
	}{
		{Relay{Host: "smtp.example.com", Port: 465}, "smtp.example.com:465"},
		{Relay{Host: "2001:db8::1", Port: 587}, "[2001:db8::1]:587"},
	} {
		if got := tt.r.Addr(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.toml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add([]byte("[relay]\nhost = \"h\"\n"))
	f.Add([]byte("[[relay]]\nhost = 'a'\nnotes = [\n\"x = 1\",\n]\n[[relay]]\nzz = 1\n"))
	f.Add([]byte("rate = \"10/5m\"\n[retry]\nbackoff = 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := Parse(data, "f.toml")
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			_ = err.Error()
			return
		}
		// A config that loads must write and load again.
		var b strings.Builder
		if err := Write(&b, c, []string{"fuzz"}); err != nil {
			t.Fatalf("Write: %v", err)
		}
		c2, _, err := Parse([]byte(b.String()), "again.toml")
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, b.String())
		}
		if !reflect.DeepEqual(normalizeTimes(c), normalizeTimes(c2)) {
			t.Fatalf("round trip differs:\n%+v\n%+v", c, c2)
		}
	})
}

// normalizeTimes makes time.Time values comparable with DeepEqual after a
// TOML round trip, which keeps the instant and offset but not the *Location.
func normalizeTimes(c *Config) *Config {
	cc := *c
	cc.Evidence.MeasuredAt = cc.Evidence.MeasuredAt.UTC()
	return &cc
}
