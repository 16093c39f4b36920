package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MailrouteImport is the package Mailroute builds.
const MailrouteImport = "github.com/mailroute/mailroute/cmd/mailroute"

var build struct {
	once sync.Once
	path string
	err  error
}

// Mailroute builds the mailroute command once per test process and returns the binary's
// path (see buildDir for where). Extra build flags may be given
// in MAILROUTE_BUILD_FLAGS (space-separated, e.g. "-race").
func Mailroute(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := buildDir()
		if err != nil {
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

// buildDir is Root/bin-<pid> for root (swept by the next lab Start). Tests
// that only need the binary (pty tests, no lab) also run as other users, for
// whom Root may belong to root: they build in their own temp dir, named by
// pid, and sweep the entries of dead pids there.
func buildDir() (string, error) {
	dir := filepath.Join(Root, fmt.Sprintf("bin-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err == nil {
		// Root may have been created by a non-root run; the lab needs it traversable.
		_ = os.Chmod(Root, 0o755)
		return dir, writeOwner(dir)
	}
	base := filepath.Join(os.TempDir(), fmt.Sprintf("mailroute-bin-%d", os.Getuid()))
	if ents, err := os.ReadDir(base); err == nil {
		for _, e := range ents {
			if pid, err := strconv.Atoi(e.Name()); err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
				_ = os.RemoveAll(filepath.Join(base, e.Name()))
			}
		}
	}
	dir = filepath.Join(base, strconv.Itoa(os.Getpid()))
	return dir, os.MkdirAll(dir, 0o700)
}

// goTool finds the go command: PATH first, else the usual install location (root's
// non-login shells often lack it in PATH).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// Result is what one mailroute run in the lab printed and how it exited.
type Result struct {
	Stdout []byte
	Stderr string
	Code   int // exit code; 1 ("the job ran and found a problem") is a result, not a failure
	Took   time.Duration
}

// RunOptions are the optional parts of a run: its directory, extra
// environment (NAME=value), standard input, and time limit (default 3 min).
type RunOptions struct {
	Dir     string
	Env     []string
	Stdin   io.Reader
	Timeout time.Duration
}

// RunMailroute runs the mailroute binary inside the namespace with args and
// extra environment. Only a failure to run at all fails the test.
func (l *Lab) RunMailroute(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	return l.RunMailrouteWith(t, RunOptions{Env: env}, args...)
}

// RunMailrouteWith is RunMailroute with a directory, input and time limit.
func (l *Lab) RunMailrouteWith(t testing.TB, opt RunOptions, args ...string) Result {
	t.Helper()
	if opt.Timeout <= 0 {
		opt.Timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), opt.Timeout)
	defer cancel()
	cmd := l.Command(ctx, Mailroute(t), args...)
	cmd.Dir, cmd.Env, cmd.Stdin = opt.Dir, append(os.Environ(), opt.Env...), opt.Stdin
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	res := Result{Stdout: out, Stderr: stderr.String(), Took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mailroute %s: %v", strings.Join(args, " "), err)
	}
	return res
}
