package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/mailroute/mailroute/internal/lab"
)

// TestAdvisePasswordPrompt: with --user and no password source, advise asks
// on the terminal without echoing, and the password appears nowhere in the
// output. Everything it connects to is 127.0.0.1:1 (closed), so it ends as
// "offline" quickly.
func TestAdvisePasswordPrompt(t *testing.T) {
	bin := lab.Mailroute(t) // builds the binary; needs no lab
	cmd := exec.Command(bin, "advise", "--to", "alpha.invalid", "--resolver", "127.0.0.1:1", "--timeout", "1s",
		"--user", "me@alpha.invalid", "--ip-echo", "myip.invalid@127.0.0.1:1", "--dnsbl", "zen.invalid")
	// Bubble Tea (linked in for the wizard) asks the terminal for its
	// colours when the program starts and waits 5 s for an answer this pty
	// never gives; TERM=dumb tells it not to ask.
	cmd.Env = append(os.Environ(), "TERM=dumb")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer tty.Close()

	// out is written by the reader and read by the test (also on its
	// timeout paths, while the reader may still write): locked.
	var out lockedBuffer
	done := make(chan error, 1)
	prompted := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		once := false
		for {
			n, err := tty.Read(buf)
			out.Write(buf[:n])
			if !once && strings.Contains(out.String(), "password for me@alpha.invalid: ") {
				once = true
				close(prompted)
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-prompted:
	case <-time.After(20 * time.Second):
		t.Fatalf("no prompt; output so far:\n%s", out.String())
	}
	// The prompt is printed just before echo is turned off: typing in
	// between would be echoed by the terminal, not by mailroute. Wait for
	// the terminal to stop echoing, as a person's typing naturally does.
	awaitNoEcho(t, tty, 5*time.Second)
	if _, err := io.WriteString(tty, "s3cret-typed\n"); err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	text := out.String() // the reader may still run if it timed out: hence the lock
	if strings.Contains(text, "s3cret-typed") {
		t.Errorf("the typed password was echoed or printed:\n%s", text)
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 1 || !strings.Contains(text, "offline") {
		t.Errorf("exit %v, want 1 (offline):\n%s", werr, text)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
