package list

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Duplicates far apart in a list larger than the filter's comfort zone for
// a small test still come out exactly, through Validate and the stats'
// Open (which must not look again), and through a plain Open.
func TestDuplicatesFoundExactly(t *testing.T) {
	const n = 50_000
	var b strings.Builder
	b.WriteString("email\n")
	for i := range n {
		fmt.Fprintf(&b, "u%d@d%d.example\n", i, i%97)
	}
	// Line numbers: the header is line 1, u0 is line 2.
	b.WriteString("U7@D7.example\n")      // line n+2: duplicate of line 9
	b.WriteString("u49999@d44.example\n") // line n+3: duplicate of line n+1
	b.WriteString("not an address\n")     // line n+4: bad, between duplicates
	b.WriteString("new@fresh.example\n")  // line n+5: good
	b.WriteString("NEW@Fresh.Example\n")  // line n+6: duplicate of line n+5
	path := filepath.Join(t.TempDir(), "l.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Validate(path, Options{SkipBadRows: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("%d: duplicate of line 9 (U7@d7.example)", n+2),
		fmt.Sprintf("%d: duplicate of line %d (u49999@d44.example)", n+3, n+1),
		fmt.Sprintf("%d: bad address \"not an address\": contains a space or control character", n+4),
		fmt.Sprintf("%d: duplicate of line %d (NEW@fresh.example)", n+6, n+5),
	}
	var got []string
	for _, bad := range st.Bad {
		got = append(got, fmt.Sprintf("%d: %s", bad.Line, bad.Reason))
	}
	if st.Good != n+1 || st.BadCount != 4 || st.Rows != n+5 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("good %d, bad:\n%s\nwant:\n%s", st.Good, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, open := range []func() (*Reader, error){
		func() (*Reader, error) { return st.Open(path, Options{}) },
		func() (*Reader, error) { return Open(path, Options{}) },
	} {
		r, err := open()
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			count++
		}
		r.Close()
		if count != n+1 {
			t.Errorf("streamed %d recipients, want %d", count, n+1)
		}
	}
}

func TestBloomNoFalseNegatives(t *testing.T) {
	b := newBloom()
	for i := range uint64(10000) {
		b.testAndSet(i * 0x9e3779b97f4a7c15)
	}
	for i := range uint64(10000) {
		if !b.testAndSet(i * 0x9e3779b97f4a7c15) {
			t.Fatalf("hash %d added but not found", i)
		}
	}
}
