package config

import (
	"bufio"
	"bytes"
	"encoding"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// This file is the TOML form of a Config: the field descriptions (one source
// for `config describe` and for the comments of a generated file), the writer,
// and a scanner that finds the line of a key in a file for error messages.

// Field describes one configuration key.
type Field struct {
	Key     string // dotted TOML key, e.g. "relay.port"
	Type    string // "string", "integer", "boolean", "rate", "duration", "datetime", "array of strings", "table", "array of tables"
	Default string // from the `default` tag; "" when there is none
	Doc     string // from the `doc` tag
}

// DescribeFields lists every key of Config and its nested tables, in
// declaration order, tables before their keys. It reads the `toml`, `doc` and
// `default` struct tags, so the description can't drift from the type.
func DescribeFields() []Field {
	var out []Field
	describeStruct(reflect.TypeFor[Config](), "", &out)
	return out
}

func describeStruct(t reflect.Type, prefix string, out *[]Field) {
	for sf := range t.Fields() {
		name := tomlName(sf)
		if name == "" {
			continue
		}
		f := Field{Key: prefix + name, Type: tomlType(sf.Type), Default: sf.Tag.Get("default"), Doc: sf.Tag.Get("doc")}
		*out = append(*out, f)
		if et := tableElem(sf.Type); et != nil {
			describeStruct(et, f.Key+".", out)
		}
	}
}

// tomlName is the key of a struct field, "" for fields TOML doesn't see.
func tomlName(sf reflect.StructField) string {
	if !sf.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = sf.Name
	}
	return name
}

var (
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	timeType          = reflect.TypeFor[time.Time]()
)

// tableElem is the struct type a field opens as a table ([x], *x or [[x]]),
// or nil for a plain value.
func tableElem(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && t != timeType && !t.Implements(textMarshalerType) {
		return t
	}
	return nil
}

func tomlType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Rate]():
		return "rate"
	case reflect.TypeFor[Rates]():
		return "rate or array of rates"
	case reflect.TypeFor[Duration]():
		return "duration"
	case timeType:
		return "datetime"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Bool:
		return "boolean"
	case reflect.Pointer, reflect.Struct:
		return "table"
	case reflect.Slice:
		if tableElem(t) != nil {
			return "array of tables"
		}
		return "array of " + tomlType(t.Elem()) + "s"
	}
	return t.Kind().String()
}

// Write writes c as commented TOML: the header lines as "# " comments,
// then every key with its doc (and default) as comments above it. Keys with a
// zero value are written commented out ("# password_cmd = \"\"") so the reader
// sees what exists; so are the [[relay]] and [dkim] tables when there are none.
// Parse reads the output back to an equal Config.
func Write(w io.Writer, c *Config, header []string) error {
	var body bytes.Buffer
	bw := bufio.NewWriter(&body)
	if err := writeTable(bw, reflect.ValueOf(c).Elem(), "", false); err != nil {
		return err
	}
	bw.Flush()
	var out bytes.Buffer
	for _, h := range header {
		for _, l := range strings.Split(h, "\n") { // a line break must not end the comment
			if l == "" {
				out.WriteString("#\n")
			} else {
				fmt.Fprintf(&out, "# %s\n", l)
			}
		}
	}
	if len(header) > 0 {
		out.WriteString("\n")
	}
	out.Write(bytes.TrimLeft(body.Bytes(), "\n")) // each key's doc starts with a blank line
	_, err := w.Write(out.Bytes())
	return err
}

// writeTable writes the plain keys of v first and its tables after, because
// in TOML every key after a [table] header belongs to that table.
func writeTable(w *bufio.Writer, v reflect.Value, prefix string, commented bool) error {
	for sf, fv := range v.Fields() {
		name := tomlName(sf)
		if name == "" || tableElem(sf.Type) != nil {
			continue
		}
		writeDoc(w, sf)
		line, err := encodeKey(name, fv.Interface())
		if err != nil {
			return fmt.Errorf("%s%s: %w", prefix, name, err)
		}
		if commented || fv.IsZero() {
			w.WriteString("# ")
		}
		w.WriteString(line)
		w.WriteString("\n")
	}
	for sf, fv := range v.Fields() {
		name := tomlName(sf)
		if name == "" || tableElem(sf.Type) == nil {
			continue
		}
		key := prefix + name
		writeDoc(w, sf)
		comment := ""
		if commented {
			comment = "# "
		}
		switch {
		case fv.Kind() == reflect.Slice && fv.Len() == 0:
			// Show one commented-out example table so the keys are visible.
			fmt.Fprintf(w, "# [[%s]]\n", key)
			if err := writeTable(w, reflect.New(sf.Type.Elem()).Elem(), key+".", true); err != nil {
				return err
			}
		case fv.Kind() == reflect.Slice:
			for j := 0; j < fv.Len(); j++ {
				if j > 0 {
					w.WriteString("\n")
				}
				fmt.Fprintf(w, "%s[[%s]]\n", comment, key)
				if err := writeTable(w, fv.Index(j), key+".", commented); err != nil {
					return err
				}
			}
		case fv.Kind() == reflect.Pointer && fv.IsNil():
			fmt.Fprintf(w, "# [%s]\n", key)
			if err := writeTable(w, reflect.New(sf.Type.Elem()).Elem(), key+".", true); err != nil {
				return err
			}
		default:
			fmt.Fprintf(w, "%s[%s]\n", comment, key)
			if err := writeTable(w, reflect.Indirect(fv), key+".", commented); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeDoc(w *bufio.Writer, sf reflect.StructField) {
	w.WriteString("\n")
	for _, l := range wrapWords(sf.Tag.Get("doc"), 76) {
		fmt.Fprintf(w, "# %s\n", l)
	}
	if d := sf.Tag.Get("default"); d != "" {
		fmt.Fprintf(w, "# default: %s\n", d)
	}
}

// encodeKey lets the TOML library write one key, so quoting and escaping are
// exactly what the decoder expects.
func encodeKey(name string, v any) (string, error) {
	if r, ok := v.(Rates); ok && r.IsZero() {
		// The encoder leaves out a nil slice; no limit is written "".
		return name + ` = ""`, nil
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any{name: v}); err != nil {
		return "", err
	}
	return strings.TrimRight(b.String(), "\n"), nil
}

func wrapWords(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(s) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// keyLines records where keys are written in a TOML file. The TOML library
// keeps positions but doesn't export them, so this is a small scanner that
// understands just enough TOML (tables, array tables, dotted and quoted keys,
// strings and multi-line values) to find the line of each key.
type keyLines struct {
	// byPath maps an indexed path ("relay[1].port", "direct.tls") to its line.
	// A single [relay] table is recorded as relay[0].
	byPath map[string]int
	// occurrences in document order of unindexed paths ("relay.port"), the
	// form MetaData.Undecoded reports.
	order []keyLine
}

type keyLine struct {
	path string
	line int
	used bool
}

func scanKeyLines(src []byte) *keyLines {
	kl := &keyLines{byPath: map[string]int{}}
	arrays := map[string]int{} // array-table path → count seen
	var table, indexed string  // current table: unindexed and indexed prefixes
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		s := strings.TrimSpace(lines[i])
		switch {
		case s == "" || s[0] == '#':
			continue
		case strings.HasPrefix(s, "[["):
			parts, _ := scanKey(s[2:])
			key := strings.Join(parts, ".")
			idx := arrays[key]
			arrays[key]++
			table, indexed = key, fmt.Sprintf("%s[%d]", key, idx)
			kl.add(table, indexed, lineNo)
		case s[0] == '[':
			parts, _ := scanKey(s[1:])
			table = strings.Join(parts, ".")
			indexed = table
			if len(parts) == 1 && parts[0] == "relay" {
				indexed = "relay[0]"
			}
			kl.add(table, indexed, lineNo)
		default:
			parts, rest := scanKey(s)
			rest = strings.TrimLeft(rest, " \t")
			if len(parts) == 0 || !strings.HasPrefix(rest, "=") {
				continue
			}
			key := strings.Join(parts, ".")
			p, ip := key, key
			if table != "" {
				p, ip = table+"."+key, indexed+"."+key
			}
			if table == "" && key == "relay" {
				ip = "relay[0]"
			}
			kl.add(p, ip, lineNo)
			i += valueExtraLines(rest[1:], lines[i+1:])
		}
	}
	return kl
}

func (kl *keyLines) add(path, indexed string, line int) {
	for _, p := range []string{indexed, path} {
		if _, ok := kl.byPath[p]; !ok {
			kl.byPath[p] = line
		}
	}
	kl.order = append(kl.order, keyLine{path: path, line: line})
}

// line finds the line of an indexed path, falling back to the enclosing
// table's line, so an error about a key that has its default still points
// at the right table. 0 when unknown.
func (kl *keyLines) line(path string) int {
	if kl == nil {
		return 0
	}
	for path != "" {
		if l, ok := kl.byPath[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// next finds the next unused occurrence of an unindexed path; callers go
// through MetaData.Undecoded, which is in document order too.
func (kl *keyLines) next(path string) int {
	if kl == nil {
		return 0
	}
	for i := range kl.order {
		if o := &kl.order[i]; !o.used && o.path == path {
			o.used = true
			return o.line
		}
	}
	return 0
}

// scanKey reads a dotted key at the start of s and returns its parts and the
// rest of s. Basic-string escapes in quoted keys are not decoded: config keys
// are plain words, and this only locates lines.
func scanKey(s string) (parts []string, rest string) {
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return parts, s
		}
		switch s[0] {
		case '"', '\'':
			end := strings.IndexByte(s[1:], s[0])
			if end < 0 {
				return parts, ""
			}
			parts = append(parts, s[1:1+end])
			s = s[end+2:]
		default:
			n := 0
			for n < len(s) && isBareKeyByte(s[n]) {
				n++
			}
			if n == 0 {
				return parts, s
			}
			parts = append(parts, s[:n])
			s = s[n:]
		}
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ".") {
			return parts, s
		}
		s = s[1:]
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// valueExtraLines is how many lines after the current one a value spans
// (multi-line strings, arrays and inline tables), so their content is not
// taken for keys.
func valueExtraLines(first string, next []string) int {
	depth := 0
	var inStr string // "", `"`, `'`, `"""` or `'''`
	text := first
	for n := 0; ; n++ {
		for j := 0; j < len(text); j++ {
			c := text[j]
			switch {
			case inStr == `"` || inStr == `"""`:
				if c == '\\' {
					j++
				} else if strings.HasPrefix(text[j:], inStr) {
					j += len(inStr) - 1
					inStr = ""
				}
			case inStr != "":
				if strings.HasPrefix(text[j:], inStr) {
					j += len(inStr) - 1
					inStr = ""
				}
			case c == '#':
				j = len(text)
			case c == '"' || c == '\'':
				inStr = string(c)
				if strings.HasPrefix(text[j:], strings.Repeat(inStr, 3)) {
					inStr = strings.Repeat(inStr, 3)
					j += 2
				}
			case c == '[' || c == '{':
				depth++
			case c == ']' || c == '}':
				depth--
			}
		}
		if inStr == `"` || inStr == `'` {
			inStr = "" // a single-line string can't continue; the decoder reports it
		}
		if (depth <= 0 && inStr == "") || n >= len(next) {
			return n
		}
		text = next[n]
	}
}

// keyDoc is the doc of a dotted key ("relay.port"), for hints.
func keyDoc(key string) (Field, bool) {
	for _, f := range DescribeFields() {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// closestKey suggests a known key for a misspelt one: the sibling with the
// smallest edit distance, if it is close enough to be a likely typo.
func closestKey(key string) string {
	parent, name := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		parent, name = key[:i+1], key[i+1:]
	}
	best, bestD := "", len(name)/2+1
	for _, f := range DescribeFields() {
		if !strings.HasPrefix(f.Key, parent) || strings.Contains(f.Key[len(parent):], ".") {
			continue
		}
		if d := editDistance(name, f.Key[len(parent):]); d < bestD {
			best, bestD = f.Key, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
