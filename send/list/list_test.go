package list

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/mailroute/mailroute/internal/address"
)

func TestValidateList(t *testing.T) {
	tests := []struct {
		name    string
		csv     string
		opt     Options
		good    int
		bad     []string // "LINE: reason substring"
		domains int
		errHas  string // whole-list error
	}{
		{name: "plain", csv: "email,name\nbob@example.com,Bob\nann@example.org,Ann\n", good: 2, domains: 2},
		{name: "BOM and CRLF", csv: "\ufeffEmail,name\r\nbob@example.com,Bob\r\n", good: 1, domains: 1},
		{name: "quoted newline keeps lines", csv: "email,note\nbob@example.com,\"two\nlines\"\nbad,x\n", good: 1, bad: []string{"4: bad address \"bad\""}},
		{name: "column count", csv: "email,name\nbob@example.com\nann@example.com,Ann,extra\nok@example.com,OK\n", good: 1, bad: []string{"2: has 1 fields; the header has 2", "3: has 3 fields"}},
		{name: "duplicate", csv: "email\nbob@example.com\nann@example.com\nBOB@EXAMPLE.COM\nbob@Example.com\n", good: 2,
			bad: []string{"4: duplicate of line 2", "5: duplicate of line 2"}},
		{name: "IDN duplicate", csv: "email\nj@bücher.example\nj@xn--bcher-kva.example\n", good: 1, bad: []string{"3: duplicate of line 2"}},
		{name: "invalid UTF-8", csv: "email,name\nbob@example.com,\xff\xfe\nok@example.com,OK\n", good: 1, bad: []string{"2: not valid UTF-8"}},
		{name: "bare quote", csv: "email,name\nbob@example.com,say \"hi\"\nann@example.com,Ann\n", good: 1, bad: []string{"2: bare \""}},
		{name: "unclosed quote", csv: "email,name\nok@example.com,OK\nbob@example.com,\"Bob\nann@example.com,Ann\n", good: 1, bad: []string{"3: a quoted field opened on this row is still open at line 4"}},
		{name: "blank lines skipped", csv: "email\n\nbob@example.com\n\n", good: 1},
		{name: "spaces trimmed", csv: "email\n  bob@example.com \n", good: 1},
		{name: "column option", csv: "Name,E-Mail\nBob,bob@example.com\n", opt: Options{EmailColumn: "e-mail"}, good: 1},
		{name: "no email column", csv: "name,mail\nBob,bob@example.com\n", errHas: `list.csv:1: no "email" column; the columns are "name", "mail"`},
		{name: "duplicate column", csv: "email,name,name\n", errHas: `column "name" appears twice`},
		{name: "empty", csv: "", errHas: "empty file"},
		{name: "no rows", csv: "email\n", errHas: "no recipients"},
		{name: "bad rows refused", csv: "email\nbob@example.com\nnope\n", good: 1, bad: []string{"3: "}, opt: Options{}, errHas: `list.csv:3: bad address "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "list.csv")
			os.WriteFile(path, []byte(tt.csv), 0o600)
			opt := tt.opt
			if tt.errHas == "" {
				opt.SkipBadRows = true
			}
			st, err := Validate(path, opt)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(tt.errHas, "list.csv", path)) {
					t.Fatalf("err = %v, want %q", err, tt.errHas)
				}
				var le *Error
				if !errors.As(err, &le) || le.Hint == "" && !strings.Contains(tt.errHas, "twice") && !strings.Contains(tt.errHas, "empty") {
					t.Errorf("not an *Error with a hint: %#v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Good != tt.good || st.BadCount != len(tt.bad) || st.Rows != st.Good+st.BadCount {
				t.Errorf("stats %+v", st)
			}
			if tt.domains != 0 && st.Domains != tt.domains {
				t.Errorf("domains %d, want %d", st.Domains, tt.domains)
			}
			for i, want := range tt.bad {
				if i >= len(st.Bad) {
					break
				}
				if got := fmt.Sprintf("%d: %s", st.Bad[i].Line, st.Bad[i].Reason); !strings.HasPrefix(got, want) && !strings.Contains(got, want) {
					t.Errorf("bad row %q, want %q", got, want)
				}
			}
		})
	}
}

func TestValidateListBadCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("email\nok@example.com\n")
	for range maxBadRows + 5 {
		b.WriteString("bad\n")
	}
	path := filepath.Join(t.TempDir(), "list.csv")
	os.WriteFile(path, []byte(b.String()), 0o600)
	st, err := Validate(path, Options{SkipBadRows: true})
	if err != nil || len(st.Bad) != maxBadRows || st.BadCount != maxBadRows+5 {
		t.Fatalf("%d kept, %d counted, %v", len(st.Bad), st.BadCount, err)
	}
}

func TestListReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.csv")
	os.WriteFile(path, []byte("Name,EMAIL,city\nBob,bob@example.com,Lyon\nbroken\nZoë, zoe@Bücher.example ,Köln\nBob again,Bob@example.com,Paris\n"), 0o600)
	r, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if h := strings.Join(r.Header(), ","); h != "Name,EMAIL,city" {
		t.Errorf("header %q", h)
	}
	var got []string
	for {
		rc, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s %s %s %s/%s/%s", rc.Line, rc.Email, rc.Addr, rc.Domain, rc.Fields["Name"], rc.Fields["EMAIL"], rc.Fields["city"]))
	}
	want := []string{
		"2 bob@example.com bob@example.com example.com Bob/bob@example.com/Lyon",
		"4 zoe@Bücher.example zoe@xn--bcher-kva.example xn--bcher-kva.example Zoë/zoe@Bücher.example/Köln",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after EOF: %v", err)
	}
}

func TestListDigest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.csv")
	os.WriteFile(path, []byte("email\nbob@example.com\n"), 0o600)
	got, err := Digest(path)
	sum := sha256.Sum256([]byte("email\nbob@example.com\n"))
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := Digest(path + ".missing"); err == nil {
		t.Fatal("no error for a missing file")
	}
}

// TestListMemoryFlat reads a large list and checks that the heap grows by
// about the duplicate hashes only, not by the rows.
func TestListMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 100,000-row list")
	}
	const n = 100_000
	path := filepath.Join(t.TempDir(), "big.csv")
	f, _ := os.Create(path)
	fmt.Fprintln(f, "email,name,note")
	for i := range n {
		fmt.Fprintf(f, "user%d@domain%d.example,Name %d,%s\n", i, i%1000, i, strings.Repeat("n", 40))
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		if _, err := r.Next(); err != nil {
			break
		}
		count++
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	r.Close()
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if count != n {
		t.Fatalf("read %d rows", count)
	}
	// The file is ~7 MB; the hash map is ~12 bytes a row plus map overhead.
	if perRow := grew / n; perRow > 48 {
		t.Errorf("heap grew %d bytes, %d a row", grew, perRow)
	}
	t.Logf("heap grew %d bytes for %d rows (%d a row)", grew, n, grew/n)
}

func FuzzList(f *testing.F) {
	f.Add([]byte("email,name\nbob@example.com,Bob\n"))
	f.Add([]byte("\ufeffEMAIL\r\n\"bob@example.com\"\r\nbob@example.com\r\n"))
	f.Add([]byte("email,n\n\"a@b.example,\"x\ny\"\nj@bücher.example,\xff\n"))
	f.Add([]byte("name,email\nx,a@xn--bcher-kva.example\ny,A@Bücher.example\n"))
	// One file per fuzzing process: inputs run one at a time within a
	// process, and a fresh t.TempDir per input is most of the cost.
	path := filepath.Join(f.TempDir(), "l.csv")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, verr := Validate(path, Options{SkipBadRows: true})
		r, err := Open(path, Options{})
		if err != nil {
			if verr == nil {
				t.Fatalf("Validate ok but Open: %v", err)
			}
			return
		}
		defer r.Close()
		good := 0
		for {
			rc, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			good++
			addr, domain, reason := address.Normalize(rc.Addr)
			if reason != "" || addr != rc.Addr || domain != rc.Domain {
				t.Fatalf("Next returned %q (%q): %q → %q %q", rc.Addr, rc.Email, reason, addr, domain)
			}
			if rc.Fields[r.Header()[r.emailCol]] == "" {
				t.Fatalf("no address field in %v", rc.Fields)
			}
		}
		if st != nil && st.Good != good {
			t.Fatalf("Validate found %d good rows, Next %d", st.Good, good)
		}
	})
}

// A line break is a bad row only in a field that goes into a header, and
// Validate and the reader agree on it.
func TestValidateListHeaderFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.csv")
	os.WriteFile(path, []byte("email,name,note\na@example.com,Ann,\"two\nlines\"\nb@example.com,\"Bob\r\nBcc: x@example.com\",ok\nc@example.com,Cy,ok\n"), 0o600)
	opt := Options{SkipBadRows: true, HeaderFields: map[string]string{"name": "Subject"}}
	st, err := Validate(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	want := []BadRow{{Line: 4, Reason: `field "name" holds a line break, and the message puts it into the Subject header field`}}
	if st.Good != 2 || !reflect.DeepEqual(st.Bad, want) {
		t.Fatalf("good %d, bad %v; want 2 good and %v", st.Good, st.Bad, want)
	}
	r, err := st.Open(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []int
	for {
		rcpt, err := r.Next()
		if err != nil {
			break
		}
		got = append(got, rcpt.Line)
	}
	if !reflect.DeepEqual(got, []int{2, 6}) {
		t.Errorf("reader gave lines %v, want [2 6]", got)
	}
}
