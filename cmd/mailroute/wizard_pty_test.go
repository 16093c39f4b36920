package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/mailroute/mailroute/internal/lab"
)

// ptyRun is a program on a pseudo-terminal, driven like a person: wait for
// a question's text, then type the answer.
type ptyRun struct {
	t    testing.TB
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	raw  []byte // everything the program wrote
	seen int    // how far expect has read, in the cleaned text
	done chan error
	// more has a token after each read of output; eof is closed when the
	// reading ends, after the program's last output (EIO on Linux once
	// the last holder of the pty's other end has closed it).
	more chan struct{}
	eof  chan struct{}
}

func startPTY(t testing.TB, cmd *exec.Cmd) *ptyRun {
	t.Helper()
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 100})
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	r := &ptyRun{t: t, cmd: cmd, tty: tty, done: make(chan error, 1), more: make(chan struct{}, 1), eof: make(chan struct{})}
	go func() {
		defer close(r.eof)
		buf := make([]byte, 4096)
		answered := 0 // the output before this was searched for terminal queries
		for {
			n, err := tty.Read(buf)
			r.mu.Lock()
			r.raw = append(r.raw, buf[:n]...)
			raw := string(r.raw)
			r.mu.Unlock()
			answered = r.answerQueries(raw, answered)
			select {
			case r.more <- struct{}{}:
			default: // a token is waiting already: expect will read it all
			}
			if err != nil {
				return // EIO once the program has exited
			}
		}
	}()
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		tty.Close()
	})
	return r
}

// answerQueries answers as a terminal does: Bubble Tea (through termenv)
// asks for the background colour and the cursor position when it starts,
// and waits up to 5 s for an answer that a silent pty never gives.
// It returns how far raw has been answered: a query cut in two by a read
// is answered once it is whole.
func (r *ptyRun) answerQueries(raw string, from int) int {
	answers := map[string]string{"\x1b]11;?": "\x1b]11;rgb:0000/0000/0000\x07", "\x1b[6n": "\x1b[1;1R"}
	next := max(from, len(raw)-8)
	for {
		at, q := -1, ""
		for query := range answers {
			if i := strings.Index(raw[from:], query); i >= 0 && (at < 0 || i < at) {
				at, q = i, query
			}
		}
		if at < 0 {
			return max(next, from)
		}
		_, _ = io.WriteString(r.tty, answers[q])
		from += at + len(q)
		next = max(next, from)
	}
}

// ansi matches the escape sequences a terminal program writes: CSI (cursor,
// colour, erase, modes), OSC, and two-byte escapes.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]`)

func (r *ptyRun) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ansi.ReplaceAllString(string(r.raw), "")
}

// expect waits until s appears after what was already seen: it looks
// again each time output arrives, and gives up at the deadline or when the
// program's output has ended without it.
func (r *ptyRun) expect(s string, timeout time.Duration) {
	r.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for ended := false; ; {
		text := r.text()
		if i := strings.Index(text[r.seen:], s); i >= 0 {
			r.seen += i + len(s)
			return
		}
		if ended {
			r.t.Fatalf("the output ended without %q; the screen:\n%s", s, screen(r.rawBytes()))
		}
		select {
		case <-r.more:
		case <-r.eof:
			ended = true // one more look: the last read came with it
		case <-deadline.C:
			r.t.Fatalf("waited %s for %q; the screen so far:\n%s", timeout, s, screen(r.rawBytes()))
		}
	}
}

// awaitNoEcho waits until the terminal no longer echoes: a form has put it
// in raw mode, or a hidden prompt has turned echo off. Keys typed before
// would be echoed by the terminal itself (a password on the screen), and a
// Ctrl-C would be the terminal's signal instead of a key to the question.
// Nothing announces a change of terminal mode (a hidden prompt prints
// first, then turns echo off), so the mode is looked at until it changes.
func awaitNoEcho(t testing.TB, tty *os.File, timeout time.Duration) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil || tio.Lflag&unix.ECHO == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("the terminal still echoes %s after the question", timeout)
		}
	}
}

// typeText types like a person: a key at a time.
func (r *ptyRun) typeText(s string) {
	r.t.Helper()
	for _, c := range s {
		if _, err := io.WriteString(r.tty, string(c)); err != nil {
			r.t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func (r *ptyRun) rawBytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.raw...)
}

// wait waits for the program to exit and returns its exit code.
func (r *ptyRun) wait(timeout time.Duration) int {
	r.t.Helper()
	select {
	case err := <-r.done:
		// The last output may still be in the pty: read it all.
		select {
		case <-r.eof:
		case <-time.After(timeout):
			r.t.Fatalf("output still open %s after the exit; the screen:\n%s", timeout, screen(r.rawBytes()))
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			r.t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		r.t.Fatalf("still running after %s; the screen:\n%s", timeout, screen(r.rawBytes()))
	}
	return -1
}

// screen replays terminal output on a minimal terminal and returns what
// is left on it, scrollback included: the transcript a person sees at the
// end, without the redraws of the question forms.
func screen(raw []byte) string {
	lines := [][]rune{{}}
	row, col := 0, 0
	put := func(c rune) {
		for len(lines) <= row {
			lines = append(lines, []rune{})
		}
		l := lines[row]
		for len(l) <= col {
			l = append(l, ' ')
		}
		l[col] = c
		lines[row] = l
		col++
	}
	csi := regexp.MustCompile(`^\x1b\[([0-9;?<=>]*)[ -/]*([@-~])`)
	s := []rune(string(raw))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\r':
			col = 0
		case '\n':
			row++
			for len(lines) <= row {
				lines = append(lines, []rune{})
			}
		case '\b':
			col = max(col-1, 0)
		case 0x1b:
			rest := string(s[i:])
			if m := csi.FindStringSubmatch(rest); m != nil {
				n, _ := strconv.Atoi(strings.TrimLeft(m[1], "?"))
				switch m[2] {
				case "A":
					row = max(row-max(n, 1), 0)
				case "B":
					row += max(n, 1)
				case "C":
					col += max(n, 1)
				case "D":
					col = max(col-max(n, 1), 0)
				case "G":
					col = max(n-1, 0)
				case "K":
					if row < len(lines) {
						switch n {
						case 0:
							if col < len(lines[row]) {
								lines[row] = lines[row][:col]
							}
						case 2:
							lines[row] = []rune{}
						}
					}
				case "J":
					if n == 0 && row < len(lines) {
						if col < len(lines[row]) {
							lines[row] = lines[row][:col]
						}
						lines = lines[:row+1]
					}
				}
				i += len([]rune(m[0])) - 1
				continue
			}
			if m := ansi.FindStringIndex(rest); m != nil && m[0] == 0 {
				i += len([]rune(rest[:m[1]])) - 1
			}
		default:
			if c >= ' ' {
				put(c)
			}
		}
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(strings.TrimRight(string(l), " ") + "\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// TestWizardPTYInterrupt: Ctrl-C at a question stops the wizard with exit
// 1, says nothing was written, and writes nothing. On a terminal there is
// colour unless NO_COLOR is set. Nothing is probed before the first
// questions, so this needs no network.
func TestWizardPTYInterrupt(t *testing.T) {
	for _, mode := range []string{"form", "accessible"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"wizard", "--resolver", "127.0.0.1:1", "--timeout", "1s", "--write", "cfg.toml"}
			env := []string{"TERM=xterm-256color", "NO_COLOR="}
			if mode == "accessible" {
				args = append(args, "--accessible")
				env = append(env, "NO_COLOR=1")
			}
			cmd := exec.Command(lab.Mailroute(t), args...)
			// CI=… makes termenv (under huh) treat every output as not a
			// terminal, which is what this test is about: leave it out.
			cmd.Dir, cmd.Env = dir, append(withoutEnv(os.Environ(), "CI"), env...)
			r := startPTY(t, cmd)
			r.expect("Your email address", 20*time.Second)
			r.typeText("carol@alpha.invalid\r")
			r.expect("SMTP server", 10*time.Second)
			if mode == "form" {
				// The Ctrl-C is to reach the form as a key, in raw mode.
				awaitNoEcho(t, r.tty, 5*time.Second)
			}
			r.typeText("\x03")
			if code := r.wait(10 * time.Second); code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, screen(r.rawBytes()))
			}
			if !strings.Contains(r.text(), "stopped: nothing was written") {
				t.Errorf("no word of stopping:\n%s", screen(r.rawBytes()))
			}
			if ents, _ := os.ReadDir(dir); len(ents) > 0 {
				t.Errorf("files left: %v", ents)
			}
			if got, want := colour.MatchString(string(r.rawBytes())), mode == "form"; got != want {
				t.Errorf("colour shown: %v, want %v (NO_COLOR only in accessible mode here)", got, want)
			}
			// The terminal echoes again (a hidden prompt or a form may have
			// turned it off).
			if tio, err := unix.IoctlGetTermios(int(r.tty.Fd()), unix.TCGETS); err == nil && tio.Lflag&unix.ECHO == 0 {
				t.Error("the terminal was left without echo")
			}
		})
	}
}

// withoutEnv drops the named variables from an environment list.
func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, name) {
			out = append(out, kv)
		}
	}
	return out
}
