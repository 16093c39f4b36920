package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/testpki"
)

func TestDescribeFields(t *testing.T) {
	fields := DescribeFields()
	byKey := map[string]Field{}
	var keys []string
	for _, f := range fields {
		if f.Doc == "" {
			t.Errorf("%s has no doc", f.Key)
		}
		if _, dup := byKey[f.Key]; dup {
			t.Errorf("%s twice", f.Key)
		}
		byKey[f.Key] = f
		keys = append(keys, f.Key)
	}
	if keys[0] != "mode" || keys[len(keys)-1] != "unsubscribe.mailto" {
		t.Errorf("order: first %q, last %q", keys[0], keys[len(keys)-1])
	}
	for key, want := range map[string]Field{
		"relay":                {Type: "array of tables"},
		"relay.port":           {Type: "integer", Default: "587"},
		"relay.rate":           {Type: "rate or array of rates"},
		"relay.insecure_auth":  {Type: "boolean", Default: "false"},
		"retry.backoff":        {Type: "duration", Default: "30s"},
		"dkim":                 {Type: "table"},
		"dkim.headers":         {Type: "array of strings", Default: "From, To, Subject, Date, Message-ID, MIME-Version, Content-Type"},
		"evidence.measured_at": {Type: "datetime"},
	} {
		got, ok := byKey[key]
		if !ok || got.Type != want.Type || got.Default != want.Default {
			t.Errorf("%s: got %+v, want type %q default %q", key, got, want.Type, want.Default)
		}
	}
}

func fullConfig(t *testing.T) *Config {
	t.Helper()
	c := &Config{
		Mode:     ModeRelay,
		Threads:  4,
		Rate:     Rates{{30, time.Minute}, {500, 24 * time.Hour}},
		Helo:     "mail.example.com",
		From:     "news@example.com",
		Resolver: "192.0.2.53:53",
		Relay: []Relay{
			{Host: "smtp.example.com", Port: 465, Username: "me@example.com", PasswordEnv: "SMTP_PASSWORD", Threads: 2, Rate: Rates{{100, time.Hour}}},
			{Host: "backup.example.net", Username: "u", PasswordCmd: `pass show "smtp \"backup\""`, CAFile: writeFile(t, "ca.pem", "x", 0o644)},
		},
		Direct: Direct{PerDomainThreads: 3},
		Retry:  Retry{Attempts: 7, Within: Duration(time.Hour)},
		DKIM:   &DKIM{Domain: "example.com", Selector: "s1", KeyFile: testpki.WriteKey(t, "ed25519", "pkcs8", 0o600)},
		Evidence: Evidence{
			MeasuredAt:     time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
			Source:         "smtp.example.com:465",
			SessionLimit:   3,
			Window:         Duration(time.Minute),
			PublishedLimit: "500/day (help page)",
			Notes:          []string{"three sessions worked; a fourth got 421", `quotes " and \ backslashes`},
		},
	}
	c.ApplyDefaults()
	return c
}

func writeFile(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteConfigRoundTrip(t *testing.T) {
	minimal := &Config{Relay: []Relay{{Host: "smtp.example.com"}}}
	minimal.ApplyDefaults()
	direct := &Config{Mode: ModeDirect}
	direct.ApplyDefaults()
	for name, c := range map[string]*Config{"full": fullConfig(t), "minimal": minimal, "direct": direct} {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			if err := Write(&b, c, []string{"written by a test", "", "second line"}); err != nil {
				t.Fatal(err)
			}
			got, _, err := Parse([]byte(b.String()), "w.toml")
			if err != nil {
				t.Fatalf("%v\n%s", err, b.String())
			}
			if !reflect.DeepEqual(normalizeTimes(got), normalizeTimes(c)) {
				t.Errorf("round trip differs\n got %+v\nwant %+v\n%s", got, c, b.String())
			}
		})
	}
}

func TestWriteConfigComments(t *testing.T) {
	c := &Config{Relay: []Relay{{Host: "smtp.example.com", Username: "u", PasswordEnv: "P"}}}
	c.ApplyDefaults()
	var b strings.Builder
	if err := Write(&b, c, []string{"mailroute advise, 2025-03-04"}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# mailroute advise, 2025-03-04\n\n",
		"# how mail leaves:",
		"# default: relay\nmode = \"relay\"\n",
		"# rate = \"\"\n",
		"[[relay]]\n",
		"host = \"smtp.example.com\"\n",
		"# password_cmd = \"\"\n",
		"# insecure_auth = false\n",
		"# [dkim]\n",
		"# key_file = \"\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if i, j := strings.Index(out, "[evidence]"), strings.LastIndex(out, "\n["); i < 0 || i != j+1 {
		t.Errorf("[evidence] is not the last table")
	}
	for i, l := range strings.Split(out, "\n") {
		if len(l) > 80 {
			t.Errorf("line %d is %d long: %q", i+1, len(l), l)
		}
	}
	// No relays: an example table, all commented out, still parses.
	d := &Config{Mode: ModeDirect}
	d.ApplyDefaults()
	b.Reset()
	Write(&b, d, nil)
	if !strings.Contains(b.String(), "# [[relay]]\n") {
		t.Errorf("no commented [[relay]] example:\n%s", b.String())
	}
}

func TestScanKeyLines(t *testing.T) {
	src := `# comment
mode = "relay" # trailing
notes = [
  "x = 1",
  'y = [',
]
doc = """
fake = 1
"""
[[relay]]
host = "a"
[[ relay ]]
"host" = "b"
[evidence]
inline = { a = 1,
  b = 2 }
after = 1
`
	kl := scanKeyLines([]byte(src))
	for path, want := range map[string]int{
		"mode": 2, "notes": 3, "doc": 7, "fake": 0, "x": 0,
		"relay[0]": 10, "relay[0].host": 11, "relay[1].host": 13, "relay[1].port": 12,
		"evidence.after": 17, "evidence.b": 14,
	} {
		if got := kl.line(path); got != want {
			t.Errorf("%s: line %d, want %d", path, got, want)
		}
	}
	if a, b := kl.next("relay.host"), kl.next("relay.host"); a != 11 || b != 13 {
		t.Errorf("next: %d, %d", a, b)
	}
}

// TestExampleConfigs loads the examples in testdata/config (also the fuzz
// seeds) and writes each back out unchanged in meaning.
func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/config/*.toml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, warns, err := Parse(data, f)
		if err != nil || len(warns) > 0 {
			t.Fatalf("%s: %v %v", f, warns, err)
		}
		var b strings.Builder
		if err := Write(&b, c, nil); err != nil {
			t.Fatal(err)
		}
		c2, _, err := Parse([]byte(b.String()), "again")
		if err != nil || !reflect.DeepEqual(normalizeTimes(c), normalizeTimes(c2)) {
			t.Errorf("%s: round trip: %v", f, err)
		}
	}
}
