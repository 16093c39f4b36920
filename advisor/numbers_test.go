package advisor

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailroute/mailroute/internal/config"
	"github.com/mailroute/mailroute/probe"
)

func TestHeadroom(t *testing.T) {
	for limit, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 10: 9} {
		if got := headroom(limit); got != want {
			t.Errorf("headroom(%d) = %d, want %d", limit, got, want)
		}
	}
}

func TestWithMargin(t *testing.T) {
	for _, c := range []struct {
		n    int
		w    time.Duration
		want string
	}{
		{30, time.Minute, "25/m"},
		{30, 58 * time.Second, "25/m"}, // a measured window just short of a minute reads as one
		{5, 10 * time.Second, "4/10s"}, // the lab's relay
		{5, 9300 * time.Millisecond, "4/10s"},
		{5, 11 * time.Second, "4/11s"}, // not close to a round window: whole seconds, rounded up
		{5, 17400 * time.Millisecond, "4/20s"},
		{2000, 24 * time.Hour, "1700/d"},
		{2, time.Minute, "1/m"},
		{1, time.Second, "1/1.2s"}, // one per second can't lose 15%: stretch the window
		{50, time.Hour, "42/h"},
		{7, 97 * time.Second, "5/2m"},
		{7, 200 * time.Minute, "5/200m"},
	} {
		got := withMargin(c.n, c.w)
		if got.String() != c.want {
			t.Errorf("withMargin(%d, %s) = %s, want %s", c.n, c.w, got, c.want)
		}
		if got.PerSecond() >= float64(c.n)/c.w.Seconds() {
			t.Errorf("withMargin(%d, %s) = %s is not below the limit", c.n, c.w, got)
		}
		if _, err := config.ParseRate(got.String()); err != nil {
			t.Errorf("%s does not parse: %v", got, err)
		}
	}
}

func TestExactRate(t *testing.T) {
	for _, c := range []struct {
		n    int
		w    time.Duration
		want string
	}{
		{5, 10 * time.Second, "5/10s"},
		{5, 10170 * time.Millisecond, "5/11s"}, // anvil's 10 s, measured: rounded up, never down
		{30, 58 * time.Second, "30/m"},
		{1, 900 * time.Millisecond, "1/s"},
	} {
		got := exactRate(c.n, c.w)
		if got.String() != c.want {
			t.Errorf("exactRate(%d, %s) = %s, want %s", c.n, c.w, got, c.want)
		}
		if got.Window < c.w {
			t.Errorf("exactRate(%d, %s) = %s: a shorter window than measured", c.n, c.w, got)
		}
	}
}

func TestRelayThreads(t *testing.T) {
	sg := Lookup("sendgrid")
	for _, c := range []struct {
		name   string
		list   int
		kind   string
		prov   *Provider
		meas   *probe.Measurement
		want   int
		source string
	}{
		{"measured 3, no list: headroom", 0, "", nil, &probe.Measurement{SessionLimit: 3}, 2, "measured"},
		{"measured 2: all of it", 0, "", nil, &probe.Measurement{SessionLimit: 2}, 2, "measured"},
		{"measured 1", 5000, "", nil, &probe.Measurement{SessionLimit: 1}, 1, "measured"},
		{"measured 10, small list", 100, "", nil, &probe.Measurement{SessionLimit: 10}, 1, "list size"},
		{"measured 10, big list on an unknown relay", 100000, "", nil, &probe.Measurement{SessionLimit: 10}, 5, "list size"},
		{"measured 4, big list", 100000, "", nil, &probe.Measurement{SessionLimit: 4}, 3, "measured"},
		{"capped measurement", 0, "", nil, &probe.Measurement{SessionLimit: 8, SessionCapped: true}, 8, "measured"},
		{"nothing known", 0, "", nil, nil, 2, "default"},
		{"ISP relay, big list", 50000, "isp", nil, nil, 3, "list size"},
		{"mailbox, small list", 40, "mailbox", nil, nil, 1, "list size"},
		{"sending service, big list", 100000, "esp", sg, nil, 10, "list size"},
		{"sending service, no list: catalog allows, default wants", 0, "esp", sg, nil, 2, "default"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := relayThreads(c.list, c.kind, c.prov, c.meas)
			if got.Value != c.want || got.Source != c.source || got.Reason == "" {
				t.Errorf("got %+v, want %d from %s", got, c.want, c.source)
			}
		})
	}
}

func TestRelayRate(t *testing.T) {
	m365, ws, brevo := Lookup("microsoft-365"), Lookup("google-workspace"), Lookup("brevo")
	for _, c := range []struct {
		name   string
		list   int
		prov   *Provider
		meas   *probe.Measurement
		want   string
		source string
		says   string
	}{
		{"measured burst and window", 0, nil, &probe.Measurement{Transactions: 30, Window: probe.Duration(time.Minute)}, "30/m", "measured", "accepts 30 messages per"},
		{"measured: capped burst is no limit", 0, nil, &probe.Measurement{Transactions: 200, TransactionsCapped: true}, "", "default", "no limit was measured"},
		{"measured: per session, not per time", 0, nil, &probe.Measurement{Transactions: 20, PerSession: true}, "", "default", "20 messages per session"},
		{"measured: no window found", 0, nil, &probe.Measurement{Transactions: 20, WindowNote: "not accepted again within 2m"}, "", "default", "longer --measure-time"},
		{"catalog per minute, list fits the day", 500, m365, nil, "25/m", "catalog: https://learn.microsoft.com/", "30 messages per minute"},
		{"catalog: a daily limit binds a big list", 20000, m365, nil, "8500/d", "catalog: https://learn.microsoft.com/", "10000 recipients per day"},
		{"catalog: list fits in the daily limit", 1000, ws, nil, "", "default", "the list fits in Google Workspace's 2000 messages per day"},
		{"catalog: list unknown, daily limit", 0, ws, nil, "1700/d", "catalog: https://support.google.com/a/answer/166852", "2000 messages per day"},
		{"measured and catalog: the stricter", 0, brevo, &probe.Measurement{Transactions: 100, Window: probe.Duration(time.Minute)}, "255/d", "catalog: https://help.brevo.com/", "300 messages per day"},
		{"nothing", 0, nil, nil, "", "default", "no rate limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := relayRate(c.list, c.prov, c.meas)
			if got.Rate.String() != c.want || !strings.HasPrefix(got.Source, c.source) || !strings.Contains(got.Reason, c.says) {
				t.Errorf("got %s from %q: %s; want %q from %q saying %q", got.Rate, got.Source, got.Reason, c.want, c.source, c.says)
			}
		})
	}
}

// TestConfigRoundTrip: the config the advisor makes, written by
// config.Write with the header, loads back equal, comments and all.
func TestConfigRoundTrip(t *testing.T) {
	r := rep(filtered3, allRelay, nil)
	r.Measure = &probe.Measurement{Host: "smtp.relay.invalid", Port: 465, SessionLimit: 4, Transactions: 5,
		Window: probe.Duration(9876 * time.Millisecond), LatencyMedian: probe.Duration(1234567 * time.Nanosecond),
		MeasuredAt: time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)}
	for name, in := range map[string]Input{
		"relay":  {Report: r, User: "alice@relay.invalid", PasswordEnv: "X", ListSize: 300},
		"direct": {Report: rep(open3, nil, clean())},
	} {
		t.Run(name, func(t *testing.T) {
			rec := Decide(in)
			if !rec.OK {
				t.Fatal(dump(rec))
			}
			var buf bytes.Buffer
			if err := config.Write(&buf, rec.Config, rec.Header(time.Now())); err != nil {
				t.Fatal(err)
			}
			text := buf.String()
			if !strings.HasPrefix(text, "# Generated by mailroute advise on ") || !strings.Contains(text, "# Why:") {
				t.Errorf("no header:\n%s", text)
			}
			got, warns, err := config.Parse(buf.Bytes(), "cfg.toml")
			if err != nil || len(warns) > 0 {
				t.Fatalf("%v %v\n%s", err, warns, text)
			}
			if !reflect.DeepEqual(got, rec.Config) {
				t.Errorf("round trip differs:\n got %+v\nwant %+v\n%s", got, rec.Config, text)
			}
		})
	}
}

func TestSessionCap(t *testing.T) {
	sg := &Match{Provider: Lookup("sendgrid")}
	for _, c := range []struct {
		name   string
		m      *Match
		meas   *probe.Measurement
		want   int
		source string
	}{
		{"measured", nil, &probe.Measurement{Transactions: 20, PerSession: true}, 20, "measured"},
		{"measured per window is not per session", nil, &probe.Measurement{Transactions: 20, Window: probe.Duration(time.Minute)}, 0, ""},
		{"capped measurement says nothing", nil, &probe.Measurement{Transactions: 200, PerSession: true, TransactionsCapped: true}, 0, ""},
		{"catalog", sg, nil, 5000, "catalog: https://docs.sendgrid.com/"},
		{"the lower of both", sg, &probe.Measurement{Transactions: 100, PerSession: true}, 100, "measured"},
		{"an inbound cap is not the relay's", &Match{Provider: Lookup("yahoo")}, nil, 0, ""},
		{"nothing", nil, nil, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := sessionCap(c.m, c.meas)
			if got.Value != c.want || !strings.HasPrefix(got.Source, c.source) {
				t.Errorf("got %+v, want %d from %q", got, c.want, c.source)
			}
		})
	}
}
