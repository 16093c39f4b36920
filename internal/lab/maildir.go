package lab

import (
	"bufio"
	"bytes"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The MX delivers every message into one Maildir (maildir/all/), one file per recipient,
// each starting with a Delivered-To: header naming that recipient. Files appear in new/
// only once complete (Maildir writes to tmp/ and renames), so reading never sees a partial
// message.

type maildirFile struct {
	path string
	to   string // lower-cased Delivered-To address
}

func (l *Lab) maildirFiles() []maildirFile {
	base := filepath.Join(l.mx.dir, "maildir", "all")
	var files []maildirFile
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(base, sub))
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			p := filepath.Join(base, sub, e.Name())
			files = append(files, maildirFile{path: p, to: l.deliveredTo(p)})
		}
	}
	// Maildir names start with the delivery time in seconds and microseconds (R.Mn...),
	// so sorting by base name is close to delivery order.
	sort.Slice(files, func(i, j int) bool { return filepath.Base(files[i].path) < filepath.Base(files[j].path) })
	return files
}

// deliveredTo is the first Delivered-To header of a message file, read
// once: a file in new/ never changes, and tests that wait for a whole list
// ask again and again (without the memo, waiting for n recipients read
// n² files).
func (l *Lab) deliveredTo(path string) string {
	if to, ok := l.rcptOf.Load(path); ok {
		return to.(string)
	}
	to := readDeliveredTo(path)
	if to != "" {
		l.rcptOf.Store(path, to)
	}
	return to
}

// readDeliveredTo reads the first Delivered-To header of a message file.
func readDeliveredTo(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h, _ := textproto.NewReader(bufio.NewReader(f)).ReadMIMEHeader()
	return strings.ToLower(strings.TrimSpace(h.Get("Delivered-To")))
}

// Delivered counts the messages the MX has delivered, by recipient address (lower case).
func (l *Lab) Delivered() map[string]int {
	n := map[string]int{}
	for _, f := range l.maildirFiles() {
		n[f.to]++
	}
	return n
}

// Messages returns the raw delivered messages for one recipient, oldest first. Each starts
// with the headers the MX added (Return-Path, Delivered-To, Received).
func (l *Lab) Messages(addr string) [][]byte {
	addr = strings.ToLower(addr)
	var msgs [][]byte
	for _, f := range l.maildirFiles() {
		if f.to != addr {
			continue
		}
		if b, err := os.ReadFile(f.path); err == nil {
			msgs = append(msgs, b)
		}
	}
	return msgs
}

// WaitDelivered waits until at least n messages for addr are delivered (the relay delivers
// asynchronously) and fails t with the relay's queue and the logs if that takes longer
// than timeout.
func (l *Lab) WaitDelivered(t testing.TB, addr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := l.Delivered()[strings.ToLower(addr)]
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: %d of %d messages for %s delivered after %v; delivered: %s\nrelay queue:\n%s\n%s",
				got, n, addr, timeout, l.describeDelivered(), l.RelayQueue(), l.logTails(30, "relay", "mx"))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (l *Lab) describeDelivered() string {
	d := l.Delivered()
	if len(d) == 0 {
		return "nothing"
	}
	var b bytes.Buffer
	for _, k := range sortedKeys(d) {
		fmt.Fprintf(&b, "%s=%d ", k, d[k])
	}
	return strings.TrimSpace(b.String())
}
