package quota

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Ledger keeps the times of the messages one account sent, on disk, so
// that a quota holds across runs and across lists: a "500/d" relay does not
// get 500 more because the mailing was stopped and started again, or a
// second list was sent the same day (README.md, "Limits and quotas").
//
// Every run on this machine that uses the account shares the file. It is
// only read and written under an exclusive flock of a lock file beside it,
// so two runs at once see each other's messages the moment their slots are
// taken, and never overshoot together.
//
// The file is a sequence of 8-byte little-endian records: a positive value
// is a message counted at that Unix time in nanoseconds, a negative one
// gives back the slot taken at its absolute value (the message never reached
// the server). Records are appended (O_APPEND) and synced; a run that finds
// more than pruneAt records rewrites the file with only the events still
// inside its longest window (temporary file, fsync, rename).
type Ledger struct {
	pruneAt int64 // records; pruneAt unless a test sets it
	path    string
	lockf   *os.File
	f       *os.File
	ino     uint64
	off     int64 // bytes of f already read
	tail    []byte
}

// pruneAt is how many records a ledger file may hold before a run rewrites
// it with the recent ones: 64 KiB read at the start of a run at most.
const pruneAt = 8192

const recordSize = 8

// StateDir is where ledgers live: $XDG_STATE_HOME/mailroute/quota, by
// default ~/.local/state/mailroute/quota (XDG Base Directory spec).
func StateDir() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home directory for the quota ledger: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "mailroute", "quota"), nil
}

// FileName is the ledger's file name for an account key such as
// "relay smtp.example.com:587 alice@example.com": readable, and unique
// through a short hash of the whole key.
func FileName(key string) string {
	var b strings.Builder
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '@':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 80 {
			break
		}
	}
	sum := sha256.Sum256([]byte(key))
	return b.String() + "-" + hex.EncodeToString(sum[:4]) + ".ledger"
}

// OpenLedger opens (creating, 0600 in a 0700 directory) the ledger of key
// in dir.
func OpenLedger(dir, key string) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileName(key))
	lockf, err := os.OpenFile(strings.TrimSuffix(path, ".ledger")+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	l := &Ledger{path: path, lockf: lockf, pruneAt: pruneAt}
	if err := l.lock(); err != nil {
		lockf.Close()
		return nil, err
	}
	defer l.unlock()
	if err := l.reopen(); err != nil {
		lockf.Close()
		return nil, err
	}
	return l, nil
}

// Path is the ledger's file.
func (l *Ledger) Path() string { return l.path }

// Close closes the files; the ledger stays on disk.
func (l *Ledger) Close() error {
	err := l.lockf.Close()
	if l.f != nil {
		err = errors.Join(err, l.f.Close())
	}
	return err
}

func (l *Ledger) lock() error {
	for {
		err := syscall.Flock(int(l.lockf.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

func (l *Ledger) unlock() { _ = syscall.Flock(int(l.lockf.Fd()), syscall.LOCK_UN) }

func (l *Ledger) reopen() error {
	if l.f != nil {
		l.f.Close()
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.off, l.tail = f, 0, nil
	l.ino = inode(fi)
	return nil
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// ledgerEvent is one record.
type ledgerEvent struct {
	at     time.Time
	cancel bool
}

// sync reads the whole ledger (at the start of a run).
func (l *Ledger) sync() ([]ledgerEvent, error) {
	if err := l.lock(); err != nil {
		return nil, err
	}
	defer l.unlock()
	return l.readNew()
}

// readNew returns the records appended since the last read, by any run.
// When another run has rewritten the file (pruned it), it is read from the
// start: the caller's merge drops events it already holds. Called locked.
func (l *Ledger) readNew() ([]ledgerEvent, error) {
	if fi, err := os.Stat(l.path); err != nil || inode(fi) != l.ino {
		if err := l.reopen(); err != nil {
			return nil, err
		}
	}
	buf, err := io.ReadAll(io.NewSectionReader(l.f, l.off, 1<<40))
	if err != nil {
		return nil, err
	}
	l.off += int64(len(buf))
	buf = append(l.tail, buf...)
	n := len(buf) / recordSize * recordSize
	// A torn record (a run killed in the middle of a write) is kept as a
	// tail; the next write starts on a record boundary again (append).
	l.tail = append([]byte(nil), buf[n:]...)
	out := make([]ledgerEvent, 0, n/recordSize)
	for i := 0; i < n; i += recordSize {
		v := int64(binary.LittleEndian.Uint64(buf[i:]))
		switch {
		case v > 0:
			out = append(out, ledgerEvent{at: time.Unix(0, v)})
		case v < 0:
			out = append(out, ledgerEvent{at: time.Unix(0, -v), cancel: true})
		}
	}
	return out, nil
}

// append records a message counted at at. keep is the caller's longest
// window: a file grown past pruneAt records is rewritten with only the
// events inside it. Called locked, after readNew.
func (l *Ledger) append(at time.Time, keep time.Duration) error {
	if err := l.write(at.UnixNano(), true); err != nil {
		return err
	}
	if l.off/recordSize > l.pruneAt {
		return l.prune(at.Add(-keep))
	}
	return nil
}

// write appends one record; sync: and waits for the disk. The slot's
// record is synced; the later move to its count time is not (lost in a
// crash, the slot's own, slightly earlier, time stays).
func (l *Ledger) write(v int64, sync bool) error {
	var b [recordSize]byte
	binary.LittleEndian.PutUint64(b[:], uint64(v))
	if len(l.tail) > 0 {
		// Pad a torn record away so that ours starts on a boundary.
		pad := make([]byte, recordSize-len(l.tail))
		if _, err := l.f.Write(pad); err != nil {
			return err
		}
		l.off += int64(len(pad))
		l.tail = nil
	}
	if _, err := l.f.Write(b[:]); err != nil {
		return err
	}
	l.off += recordSize
	if !sync {
		return nil
	}
	return l.f.Sync()
}

// prune rewrites the file with the events after from (and no cancels:
// each cancel is applied). Called locked.
func (l *Ledger) prune(from time.Time) error {
	save, saveTail := l.off, l.tail
	l.off, l.tail = 0, nil
	all, err := l.readNew()
	if err != nil {
		l.off, l.tail = save, saveTail
		return err
	}
	var kept []int64
	for _, e := range all {
		v := e.at.UnixNano()
		if e.cancel {
			for i := len(kept) - 1; i >= 0; i-- {
				if kept[i] == v {
					kept = append(kept[:i], kept[i+1:]...)
					break
				}
			}
			continue
		}
		if e.at.After(from) {
			kept = append(kept, v)
		}
	}
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(kept)*recordSize)
	for _, v := range kept {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(v))
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return err
	}
	if err := l.reopen(); err != nil {
		return err
	}
	// Everything in the new file is already known to this run.
	l.off = int64(len(buf))
	return nil
}
