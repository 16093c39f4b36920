// Package list reads a mailing's recipient list (CSV): it checks every
// row's address, finds duplicate rows in memory that does not grow with
// the list (dedupe.go), and hands the good rows to the mailing one by one.
// It is separate from package send so that `check` and the engine share
// one reader, and the message renderer can take a Recipient without the
// delivery engine.
package list

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mailroute/mailroute/internal/address"
)

// Options says how to read a recipient list.
type Options struct {
	// EmailColumn is the header name of the address column, matched without
	// regard to case; default "email".
	EmailColumn string
	// SkipBadRows lets Validate succeed when some rows are bad; they are
	// then left out of the mailing. Without it, any bad row is an error.
	SkipBadRows bool
	// HeaderFields maps each column the message template puts into a
	// header field to that field's name (the message Template's HeaderFields).
	// A line break in such a column makes the row bad: Render would refuse it
	// mid-mailing, since "x\r\nBcc: ..." would forge header fields.
	HeaderFields map[string]string
}

// Recipient is one good row of the list.
type Recipient struct {
	Line   int    // line of the row in the file (1-based; the header is line 1)
	Email  string // the address as written, less surrounding spaces (spreadsheets leave them)
	Addr   string // normalized: local part as written, @, the domain in lower-case ASCII (IDN → punycode)
	Domain string // the normalized domain
	// Fields holds every column by header name, for the message template;
	// the address column holds Email.
	Fields map[string]string

	checked bool // Addr came from the list reader's checks (Render trusts it)
}

// Checked reports whether Addr came from the list reader's checks: Render
// trusts it, and checks the Addr of a Recipient made by other code.
func (r *Recipient) Checked() bool { return r.checked }

// BadRow is a row left out of the mailing, and why.
type BadRow struct {
	Line   int
	Reason string
}

// maxBadRows caps the bad rows Stats keeps; all are counted.
const maxBadRows = 1000

// Stats is what one validation pass found.
type Stats struct {
	Header   []string // the column names, as written
	Rows     int      // data rows, good and bad
	Good     int
	Bad      []BadRow // the first 1000
	BadCount int      // all of them
	Domains  int      // distinct recipient domains among the good rows

	dups map[int]int // duplicate line → first line, for Open
}

// Error is a problem with the list as a whole: it can't be read, has no
// address column, or (without SkipBadRows) has bad rows.
type Error struct {
	File    string
	Line    int // 0 when the problem is not on one line
	Message string
	Hint    string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	}
	return e.File + ": " + e.Message
}

// Validate reads the whole list and reports what it found. Memory stays
// flat: duplicates are found with a fixed-size filter (dedupe.go) and
// nothing is kept per row. Without SkipBadRows, bad rows (or no good row at all) are an error; the
// stats are returned with it.
func Validate(path string, opt Options) (*Stats, error) {
	st := &Stats{}
	var seen dupFilter
	domains := map[uint64]struct{}{}
	err := eachGoodAndBad(path, opt, func(rcpt *Recipient) {
		st.Good++
		domains[hashString(rcpt.Domain)] = struct{}{}
		seen.add(rcpt)
	}, st)
	if err != nil {
		return nil, err
	}
	// Duplicates are bad rows too, merged into Bad in line order.
	var dupBad []BadRow
	st.dups, err = seen.duplicates(path, opt, func(line, first int, addr string) {
		if len(dupBad) < maxBadRows {
			dupBad = append(dupBad, BadRow{Line: line, Reason: dupReason(first, addr)})
		}
	})
	if err != nil {
		return st, err
	}
	if len(st.dups) > 0 {
		st.Good -= len(st.dups)
		st.BadCount += len(st.dups)
		st.Bad = append(st.Bad, dupBad...)
		slices.SortFunc(st.Bad, func(a, b BadRow) int { return a.Line - b.Line })
		st.Bad = st.Bad[:min(len(st.Bad), maxBadRows)]
	}
	st.Rows = st.Good + st.BadCount
	st.Domains = len(domains)
	switch {
	case st.BadCount > 0 && !opt.SkipBadRows:
		b := st.Bad[0]
		return st, &Error{File: path, Line: b.Line,
			Message: fmt.Sprintf("%s (%d bad rows in all)", b.Reason, st.BadCount),
			Hint:    "fix those rows, or leave them out with --skip-bad-rows"}
	case st.Good == 0:
		return st, &Error{File: path, Message: "no recipients", Hint: "the list needs a header row and at least one row with an address"}
	}
	return st, nil
}

// Reader streams the good rows of a list. It never holds more than one
// row, plus the lines of duplicate rows.
type Reader struct {
	path     string
	f        *os.File
	cr       *csv.Reader
	header   []string
	emailCol int
	dups     map[int]int // line → the earlier line with the same address (see dedupe.go)
	onBad    func(BadRow)
	lean     bool // Recipients without Fields: a pass before sending
	// inHeader[i] is the header field column i goes into; "" for none.
	inHeader []string
}

// Open opens a list and reads its header row. The address column must be
// there; the error lists the columns found. It reads the file once or twice
// first to find duplicate rows (see dedupe.go), which Next then skips.
func Open(path string, opt Options) (*Reader, error) {
	dups, err := findDuplicates(path, opt)
	if err != nil {
		return nil, err
	}
	return openList(path, opt, dups)
}

// Open opens the list these stats came from, skipping the duplicates
// Validate found without looking for them again.
func (st *Stats) Open(path string, opt Options) (*Reader, error) {
	return openList(path, opt, st.dups)
}

func openList(path string, opt Options, dups map[int]int) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	// Spreadsheet programs write a UTF-8 byte order mark; it is not part of
	// the first column's name.
	if bom, _ := br.Peek(3); string(bom) == "\xef\xbb\xbf" {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // counts are checked here, to report the row rather than stop
	cr.ReuseRecord = true
	r := &Reader{path: path, f: f, cr: cr, dups: dups}
	if err := r.readHeader(opt); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func (r *Reader) readHeader(opt Options) error {
	rec, err := r.cr.Read()
	if err == io.EOF {
		return &Error{File: r.path, Message: "empty file", Hint: "the first row names the columns, e.g. email,name"}
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return &Error{File: r.path, Line: pe.StartLine, Message: "header row: " + pe.Err.Error()}
		}
		return err
	}
	want := opt.EmailColumn
	if want == "" {
		want = "email"
	}
	r.emailCol = -1
	seen := map[string]bool{}
	for i, name := range rec {
		name = strings.TrimSpace(name)
		if !utf8.ValidString(name) {
			return &Error{File: r.path, Line: 1, Message: "header row is not valid UTF-8", Hint: "save the file as UTF-8"}
		}
		if seen[name] {
			return &Error{File: r.path, Line: 1, Message: fmt.Sprintf("column %q appears twice", name), Hint: "give every column its own name; the message template uses them"}
		}
		seen[name] = true
		r.header = append(r.header, name)
		r.inHeader = append(r.inHeader, opt.HeaderFields[name])
		if r.emailCol < 0 && strings.EqualFold(name, want) {
			r.emailCol = i
		}
	}
	if r.emailCol < 0 {
		return &Error{File: r.path, Line: 1,
			Message: fmt.Sprintf("no %q column; the columns are %s", want, QuoteColumns(r.header)),
			Hint:    "name the address column with --email-column"}
	}
	return nil
}

// QuoteColumns writes column names quoted and comma-separated, for
// messages that list the columns.
func QuoteColumns(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// Header returns the column names, as written.
func (r *Reader) Header() []string { return r.header }

// Next returns the next good row, or io.EOF after the last. It skips the rows
// Validate reports as bad, by the same rules, so both passes agree.
func (r *Reader) Next() (*Recipient, error) {
	for {
		rec, err := r.cr.Read()
		if err == io.EOF {
			return nil, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// The reader has consumed the broken row; carry on after it.
			r.bad(pe.StartLine, csvReason(pe))
			continue
		}
		if err != nil {
			return nil, err
		}
		line, _ := r.cr.FieldPos(0)
		rcpt, reason := r.check(rec, line)
		if reason != "" {
			r.bad(line, reason)
			continue
		}
		return rcpt, nil
	}
}

func csvReason(pe *csv.ParseError) string {
	switch {
	case errors.Is(pe.Err, csv.ErrQuote) && pe.Line > pe.StartLine:
		return fmt.Sprintf("a quoted field opened on this row is still open at line %d (%v); the rows between are swallowed", pe.Line, pe.Err)
	case errors.Is(pe.Err, csv.ErrBareQuote), errors.Is(pe.Err, csv.ErrQuote):
		return pe.Err.Error() + `; quote the whole field and double the quotes inside: "say ""hi"""`
	}
	return pe.Err.Error()
}

func (r *Reader) bad(line int, reason string) {
	if r.onBad != nil {
		r.onBad(BadRow{Line: line, Reason: reason})
	}
}

// check decides whether a row is good, and builds its Recipient.
func (r *Reader) check(rec []string, line int) (*Recipient, string) {
	if len(rec) != len(r.header) {
		return nil, fmt.Sprintf("has %d fields; the header has %d", len(rec), len(r.header))
	}
	for i, v := range rec {
		if !utf8.ValidString(v) {
			return nil, "not valid UTF-8 (save the file as UTF-8)"
		}
		if h := r.inHeader[i]; h != "" && strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Sprintf("field %q holds a line break, and the message puts it into the %s header field", r.header[i], h)
		}
	}
	email := strings.TrimSpace(rec[r.emailCol])
	addr, domain, reason := address.Normalize(email)
	if reason != "" {
		return nil, reason
	}
	if first, dup := r.dups[line]; dup {
		return nil, dupReason(first, addr)
	}
	if r.lean {
		return &Recipient{Line: line, Email: email, Addr: addr, Domain: domain, checked: true}, ""
	}
	fields := make(map[string]string, len(rec))
	for i, v := range rec {
		fields[r.header[i]] = v
	}
	fields[r.header[r.emailCol]] = email // trimmed, as the template should see it
	return &Recipient{Line: line, Email: email, Addr: addr, Domain: domain, Fields: fields, checked: true}, ""
}

func dupReason(first int, addr string) string {
	return fmt.Sprintf("duplicate of line %d (%s)", first, addr)
}

// eachGoodAndBad is a pass before sending: fn sees every good row (without
// its fields), and st, if not nil, gets the header and every bad row.
func eachGoodAndBad(path string, opt Options, fn func(*Recipient), st *Stats) error {
	r, err := openList(path, opt, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	r.lean = true
	if st != nil {
		st.Header = r.header
		r.onBad = func(b BadRow) {
			st.BadCount++
			if len(st.Bad) < maxBadRows {
				st.Bad = append(st.Bad, b)
			}
		}
	}
	for {
		rcpt, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		fn(rcpt)
	}
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// Digest is the SHA-256 of the list file, in hex. The journal keeps it to
// refuse resuming a mailing with a different list.
func Digest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
