package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets testscript run mailroute in-process as a command.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"mailroute": func() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the CLI scripts in testdata/*.txt. They talk only to
// 127.0.0.1 (a closed port as the resolver) or not at all.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata"})
}
