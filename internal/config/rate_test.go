package config

import (
	"math"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in     string
		want   Rate
		str    string // String() of the result
		errHas string
	}{
		{in: "", want: Rate{}, str: ""},
		{in: "30/m", want: Rate{30, time.Minute}, str: "30/m"},
		{in: "1/s", want: Rate{1, time.Second}, str: "1/s"},
		{in: "500/d", want: Rate{500, 24 * time.Hour}, str: "500/d"},
		{in: "10/5m", want: Rate{10, 5 * time.Minute}, str: "10/5m"},
		{in: "2/h", want: Rate{2, time.Hour}, str: "2/h"},
		{in: " 2 / h ", want: Rate{2, time.Hour}, str: "2/h"},
		{in: "10/60m", want: Rate{10, time.Hour}, str: "10/h"},
		{in: "10/90s", want: Rate{10, 90 * time.Second}, str: "10/90s"},
		{in: "10/1m30s", want: Rate{10, 90 * time.Second}, str: "10/90s"},
		{in: "3/1500ms", want: Rate{3, 1500 * time.Millisecond}, str: "3/1.5s"},
		{in: "30", errHas: "no window"},
		{in: "0/m", errHas: "at least 1"},
		{in: "-1/m", errHas: "at least 1"},
		{in: "x/m", errHas: "count"},
		{in: "30/", errHas: "empty window"},
		{in: "30/w", errHas: "unknown window"},
		{in: "30/0m", errHas: "out of range"},
		{in: "30/1ns", errHas: "shorter than a millisecond"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), rateHint) {
					t.Fatalf("err = %v, want %q and the hint", err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			back, err := ParseRate(got.String())
			if err != nil || back != got {
				t.Errorf("String() does not parse back: %+v, %v", back, err)
			}
		})
	}
}

func TestRatePerSecond(t *testing.T) {
	if got := (Rate{30, time.Minute}).PerSecond(); got != 0.5 {
		t.Errorf("30/m = %v/s", got)
	}
	if got := rate.Limit((Rate{}).PerSecond()); got != rate.Inf {
		t.Errorf("zero Rate = %v, want rate.Inf", got)
	}
	if !(Rate{}).IsZero() || (Rate{1, time.Second}).IsZero() {
		t.Error("IsZero")
	}
	if math.IsInf((Rate{}).PerSecond(), 0) {
		t.Error("PerSecond must stay finite for x/time/rate arithmetic")
	}
}

func TestDurationText(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, "30s"},
		{10 * time.Minute, "10m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{0, "0s"},
		{1500 * time.Millisecond, "1.5s"},
	} {
		got := Duration(tt.d).String()
		if got != tt.want {
			t.Errorf("%v: got %q, want %q", tt.d, got, tt.want)
		}
		var back Duration
		if err := back.UnmarshalText([]byte(got)); err != nil || time.Duration(back) != tt.d {
			t.Errorf("%q parses back to %v, %v", got, back, err)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("30")); err == nil || !strings.Contains(err.Error(), "with a unit") {
		t.Errorf("err = %v", err)
	}
}
