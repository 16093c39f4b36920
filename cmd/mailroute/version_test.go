package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// versionLine with what go build stamps from a checkout, and with nothing
// (go run, go test, or no build info at all).
func TestVersionLine(t *testing.T) {
	goVer := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	stamped := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/mailroute/mailroute", Version: "v1.2.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{stamped, true, "mailroute v1.2.0, revision 0123456789ab (modified), " + goVer},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "mailroute (devel), revision unknown, " + goVer},
		{nil, false, "mailroute (devel), revision unknown, " + goVer},
	} {
		if got := versionLine(tc.bi, tc.ok); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
