package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version, VCS revision and Go version of this build (the same as --version)",
		UsageText: "mailroute version",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usage(fmt.Errorf("unexpected argument %q", c.Args().First()), "mailroute version takes no arguments")
			}
			_, err := fmt.Fprintln(c.App.Writer, versionLine(debug.ReadBuildInfo()))
			return err
		},
	}
}

// versionLine says which build this is, for a bug report: the module
// version ("(devel)" when built from a checkout), the VCS revision the go
// command stamped ("unknown" under go run and go test, which stamp none)
// and the Go version, e.g.
// "mailroute v1.2.0, revision 0123456789ab (modified), go1.26.8 linux/amd64".
func versionLine(bi *debug.BuildInfo, ok bool) string {
	version, rev, modified := "(devel)", "unknown", false
	if ok {
		if v := bi.Main.Version; v != "" {
			version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		rev += " (modified)"
	}
	return fmt.Sprintf("mailroute %s, revision %s, %s %s/%s", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
