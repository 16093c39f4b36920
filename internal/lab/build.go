package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// MailrouteImport is the package Mailroute builds.
const MailrouteImport = "github.com/mailroute/mailroute/cmd/mailroute"

var build struct {
	once sync.Once
	path string
	err  error
}

// Mailroute builds the mailroute command once per test process and returns the binary's
// path. It lives in Root/bin-<pid>, which the next lab Start removes once this process
// has exited, so nothing is left in the system temp dir. Extra build flags may be given
// in MAILROUTE_BUILD_FLAGS (space-separated, e.g. "-race").
func Mailroute(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir := filepath.Join(Root, fmt.Sprintf("bin-%d", os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			build.err = err
			return
		}
		// Root may have been created by a non-root run; the lab needs it traversable.
		_ = os.Chmod(Root, 0o755)
		if err := writeOwner(dir); err != nil {
			build.err = err
			return
		}
		path := filepath.Join(dir, "mailroute")
		args := append([]string{"build", "-o", path}, strings.Fields(os.Getenv("MAILROUTE_BUILD_FLAGS"))...)
		args = append(args, MailrouteImport)
		out, err := exec.Command(goTool(), args...).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		build.path = path
	})
	if build.err != nil {
		t.Fatalf("lab: building mailroute: %v", build.err)
	}
	return build.path
}

// goTool finds the go command: PATH first, else the usual install location (root's
// non-login shells often lack it in PATH).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
