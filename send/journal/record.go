package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is where one recipient stands. The journal keeps it on disk so
// that a re-run resumes instead of sending twice.
//
//	pending ──▶ sending ──▶ data_sent ──▶ sent
//	               │             │
//	               │             └──(no reply)──▶ unknown
//	               └──▶ deferred(n, next_at) │ failed(reason)
//
// "sending" is committed (fsync) before RCPT TO names the recipient;
// "data_sent" is committed before the final dot is written. So after a
// crash, "sending" means the message cannot have been accepted (safe to send
// again) and "data_sent" means it may have been (RFC 1047: the reply to the
// dot was lost), which a re-run reports as unknown. A recipient taken ahead
// by a worker is recorded data_sent at once, in place of sending, so that
// its dot never waits for the disk: a crash can leave a few such recipients
// unknown although nothing was sent to them (see send's maxLookahead).
type State uint8

// The states of a recipient. The numbers are stored on disk: append only.
const (
	StatePending  State = iota // not tried yet (no record)
	StateSending               // an attempt started; the dot was not written
	StateDataSent              // the final dot was (or was about to be) written; no reply yet
	StateSent                  // the server accepted the message (2xx after the dot)
	StateDeferred              // a temporary failure; tried again later or by a re-run
	StateFailed                // a permanent failure; never tried again
	StateUnknown               // the connection was lost after the dot: maybe delivered
)

var stateNames = [...]string{"pending", "sending", "data_sent", "sent", "deferred", "failed", "unknown"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// MarshalText makes a State appear by name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state back by name, so a --json report decodes.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown state %q", b)
}

// Final reports whether a re-run leaves the recipient alone (without
// --retry-unknown).
func (s State) Final() bool { return s == StateSent || s == StateFailed || s == StateUnknown }

// Record is a recipient's entry in the journal.
type Record struct {
	State    State
	Run      uint32    // the run that wrote it (1, 2, … per journal)
	Attempts int       // tries in all runs
	NextAt   time.Time // deferred: when a retry is due
	Updated  time.Time
	Addr     string // the recipient, as normalized from the list
	Domain   string // recipient domain, for the report (not stored: taken from Addr)
	Reason   string // the server's words (failed, deferred) or its acceptance line (sent)
	Fallback bool   // the last session fell back to plaintext after a failed TLS handshake
}

// maxReason caps the stored server words; a reply longer than this is noise.
const maxReason = 512

const recordVersion = 1

func (r *Record) appendBinary(b []byte) []byte {
	b = append(b, recordVersion, byte(r.State))
	b = binary.BigEndian.AppendUint32(b, r.Run)
	b = binary.BigEndian.AppendUint32(b, uint32(min(r.Attempts, 1<<31)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(r.NextAt)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(r.Updated)))
	var flags byte
	if r.Fallback {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(r.Addr)))
	b = append(b, r.Addr...) // the domain is not stored: it is the part after the @
	reason := r.Reason
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	b = binary.AppendUvarint(b, uint64(len(reason)))
	return append(b, reason...)
}

var errBadRecord = errors.New("journal: damaged record")

func (r *Record) unmarshal(b []byte) error {
	const fixed = 2 + 4 + 4 + 8 + 8 + 1
	if len(b) < fixed || b[0] != recordVersion {
		return errBadRecord
	}
	r.State = State(b[1])
	r.Run = binary.BigEndian.Uint32(b[2:])
	r.Attempts = int(binary.BigEndian.Uint32(b[6:]))
	r.NextAt = fromUnixNano(int64(binary.BigEndian.Uint64(b[10:])))
	r.Updated = fromUnixNano(int64(binary.BigEndian.Uint64(b[18:])))
	r.Fallback = b[26]&1 != 0
	b = b[fixed:]
	var ok bool
	if r.Addr, b, ok = readString(b); !ok {
		return errBadRecord
	}
	if i := strings.LastIndexByte(r.Addr, '@'); i >= 0 {
		r.Domain = r.Addr[i+1:]
	}
	if r.Reason, _, ok = readString(b); !ok {
		return errBadRecord
	}
	return nil
}

func readString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
