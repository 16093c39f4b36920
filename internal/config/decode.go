package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Check is Load for `config check`: it returns every error of
// the file and, unless the file could not be read or parsed at all, the
// Config as far as it could be decoded, so that the relays' password
// sources can be checked in the same run.
func Check(path string) (*Config, []Warning, error) {
	data, src, err := readConfig(path)
	if err != nil {
		return nil, nil, err
	}
	return parseConfigAll(data, src)
}

func parseConfig(data []byte, src *configSource) (*Config, []Warning, error) {
	c, warns, err := parseConfigAll(data, src)
	if err != nil {
		return nil, warns, err
	}
	return c, warns, nil
}

// parseConfigAll decodes, defaults and validates, collecting every problem.
// The Config is nil only for a TOML syntax error (nothing after it can be
// read); otherwise it holds what could be decoded, defaulted.
func parseConfigAll(data []byte, src *configSource) (*Config, []Warning, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	src.lines = scanKeyLines(data)
	var c Config
	d := &keyDecoder{src: src, failed: map[string]bool{}, misspelt: map[string]bool{}}
	md, err := d.decode(string(data), &c)
	if err != nil {
		return nil, nil, decodeError(err, src)
	}
	errs := d.errs

	var reported []string
	for _, k := range md.Undecoded() {
		key := k.String()
		if hasKeyPrefix(key, reported) {
			continue // inside an unknown table already reported
		}
		reported = append(reported, key)
		hint := "`mailroute config describe` lists every key"
		if s := closestKey(key); s != "" {
			hint = fmt.Sprintf("did you mean %q? %s", s, hint)
			// "relay.host: missing" after "relay.hots: unknown key" would
			// say the same mistake twice.
			d.misspelt[s] = true
		}
		line := src.lines.next(key)
		if line == 0 {
			line = src.lines.line(key) // inside an inline table: its line
		}
		errs = append(errs, &Error{File: src.name, Line: line, Key: key, Message: "unknown key", Hint: hint})
	}

	// Zero means "use the default" for these, so a written 0 would silently
	// become the default; say so instead.
	for _, z := range []struct {
		key []string
		v   int
	}{
		{[]string{"threads"}, c.Threads},
		{[]string{"direct", "per_domain_threads"}, c.Direct.PerDomainThreads},
		{[]string{"direct", "port"}, c.Direct.Port},
		{[]string{"direct", "max_mx_hosts"}, c.Direct.MaxMXHosts},
		{[]string{"retry", "attempts"}, c.Retry.Attempts},
	} {
		key := strings.Join(z.key, ".")
		if z.v == 0 && md.IsDefined(z.key...) && !d.hasFailed(key) {
			errs = append(errs, &Error{File: src.name, Line: src.lines.line(key), Key: key,
				Message: "must be at least 1", Hint: "remove the line to get the default"})
		}
	}

	c.ApplyDefaults()
	v := &validator{src: src, relays: len(c.Relay), skip: d.hasFailed}
	v.check(&c)
	errs = append(errs, v.errs...)
	// In the file's order, as the user will fix them; errors without a
	// line (a missing table) last.
	slices.SortStableFunc(errs, func(a, b error) int {
		return cmp.Compare(errLine(a), errLine(b))
	})
	if len(errs) > 0 {
		return &c, v.warns, joinErrors(errs)
	}
	return &c, v.warns, nil
}

func errLine(err error) int {
	var ce *Error
	if errors.As(err, &ce) && ce.Line > 0 {
		return ce.Line
	}
	return math.MaxInt
}

// keyDecoder decodes a config key by key. toml.Decode stops at the first
// value of the wrong type, so a file with three mistakes would take three
// runs to fix; here each table is first decoded into a shadow struct whose
// fields are all toml.Primitive (which never fails, and marks the known
// keys decoded, so MetaData.Undecoded still finds the unknown ones), and
// then each value on its own into its field.
type keyDecoder struct {
	md     toml.MetaData
	src    *configSource
	relays int
	errs   []error
	failed map[string]bool // indexed paths whose value could not be decoded
	// misspelt holds the keys suggested for unknown ones, unindexed
	// ("relay.host"): the user wrote them, under another name.
	misspelt map[string]bool
}

func (d *keyDecoder) decode(data string, c *Config) (toml.MetaData, error) {
	sh := reflect.New(shadowType(reflect.TypeFor[Config]()))
	md, err := toml.Decode(data, sh.Interface())
	if err != nil {
		return md, err
	}
	d.md = md
	d.table(sh.Elem(), reflect.ValueOf(c).Elem(), "")
	return md, nil
}

// hasFailed reports whether the value at path, or a table holding it,
// could not be decoded: its field holds a zero, not what the file says, so
// validating it would make up a second error.
func (d *keyDecoder) hasFailed(path string) bool {
	if d.misspelt[unindexed.ReplaceAllString(path, "")] {
		return true
	}
	for {
		if d.failed[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return false
		}
		path = path[:i]
	}
}

// table decodes each field present in shadow (a decoded shadowType) into
// dst.
func (d *keyDecoder) table(shadow, dst reflect.Value, prefix string) {
	t := dst.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := tomlName(f)
		if name == "" {
			continue
		}
		sv := shadow.FieldByName(f.Name)
		if !sv.IsValid() || sv.IsZero() {
			continue // not in the file
		}
		d.value(sv.Interface().(toml.Primitive), dst.Field(i), prefix+name)
	}
}

// value decodes one value into fv: a table field by field, an array of
// tables element by element, anything else at once.
func (d *keyDecoder) value(p toml.Primitive, fv reflect.Value, path string) {
	ft := fv.Type()
	var shape any
	_ = d.md.PrimitiveDecode(p, &shape) // into any: marks nothing decoded
	switch {
	case isTable(ft) && isMap(shape):
		target := fv
		if ft.Kind() == reflect.Pointer {
			fv.Set(reflect.New(ft.Elem()))
			target = fv.Elem()
		}
		sh := reflect.New(shadowType(target.Type()))
		if err := d.md.PrimitiveDecode(p, sh.Interface()); err != nil {
			d.fail(err, fv, path)
			return
		}
		d.table(sh.Elem(), target, path+".")
		return
	case ft.Kind() == reflect.Slice && isTable(ft.Elem()):
		// relay: one [relay] table or several [[relay]] (README "Design: words").
		var elems []toml.Primitive
		if isMap(shape) {
			elems = []toml.Primitive{p}
		} else if isTableArray(shape) {
			if err := d.md.PrimitiveDecode(p, &elems); err != nil {
				d.fail(err, fv, path)
				return
			}
		} else {
			break // not tables: the plain decode below says so
		}
		fv.Set(reflect.MakeSlice(ft, len(elems), len(elems)))
		if path == "relay" {
			d.relays = len(elems)
		}
		for i, e := range elems {
			d.value(e, fv.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		return
	}
	if err := d.md.PrimitiveDecode(p, fv.Addr().Interface()); err != nil {
		d.fail(err, fv, path)
	}
}

// fail records a value that could not be decoded, at the line and key of
// path ("relay[1].port" when there are several relays), and leaves its
// field zero.
func (d *keyDecoder) fail(err error, fv reflect.Value, path string) {
	fv.Set(reflect.Zero(fv.Type()))
	d.failed[path] = true
	e := decodeError(err, d.src)
	var ce *Error
	if errors.As(e, &ce) {
		ce.Key = path
		if d.relays <= 1 {
			ce.Key = strings.Replace(path, "relay[0]", "relay", 1)
		}
		if l := d.src.lines.line(path); l > 0 {
			ce.Line = l
		}
	}
	d.errs = append(d.errs, e)
}

var (
	unindexed       = regexp.MustCompile(`\[\d+\]`)
	textUnmarshaler = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
)

// isTable reports whether t (or *t) is a struct decoded as a TOML table,
// not a value that decodes itself (time.Time, Rates).
func isTable(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	p := reflect.PointerTo(t)
	return !p.Implements(textUnmarshaler) && !p.Implements(tomlUnmarshaler)
}

func isMap(v any) bool { _, ok := v.(map[string]any); return ok }

// isTableArray: [[relay]] tables, or an array of inline tables,
// relay = [{...}, {...}].
func isTableArray(v any) bool {
	if _, ok := v.([]map[string]any); ok {
		return true
	}
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return false
	}
	for _, e := range a {
		if !isMap(e) {
			return false
		}
	}
	return true
}

// shadowType is t with every keyed field a toml.Primitive under the same
// tag.
func shadowType(t reflect.Type) reflect.Type {
	var fields []reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		if tomlName(f) == "" {
			continue
		}
		fields = append(fields, reflect.StructField{Name: f.Name, Type: reflect.TypeFor[toml.Primitive](), Tag: f.Tag})
	}
	return reflect.StructOf(fields)
}

// readConfig reads a config file and what validation needs to know about
// it (its permissions).
func readConfig(path string) ([]byte, *configSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, nil, &Error{File: path, Message: err.Error()}
	}
	src := &configSource{name: path}
	if st, err := os.Stat(path); err == nil && runtime.GOOS != "windows" {
		src.perm, src.havePerm = st.Mode().Perm(), true
	}
	return data, src, nil
}

func hasKeyPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// typeErrRE matches the decoder's type errors, which are plain errors with
// the line in the text rather than toml.ParseError.
var (
	typeErrRE      = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)
	incompatibleRE = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
)

func decodeError(err error, src *configSource) error {
	ce := &Error{File: src.name, Message: strings.TrimPrefix(err.Error(), "toml: ")}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		ce.Line, ce.Key, ce.Message = pe.Position.Line, pe.LastKey, pe.Message
		ce.Snippet = snippet(pe)
		if msg, hint, ok := strings.Cut(ce.Message, "; write "); ok {
			ce.Message, ce.Hint = msg, "write "+hint
		} else if pe.Usage != "" {
			ce.Hint = strings.TrimSpace(pe.Usage)
		}
		return ce
	}
	if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
		ce.Line, _ = strconv.Atoi(m[1])
		ce.Key, ce.Message = m[2], m[3]
		if tm := incompatibleRE.FindStringSubmatch(ce.Message); tm != nil {
			ce.Message = fmt.Sprintf("is a TOML %s, expected %s", strings.ToLower(tm[1]), tm[2])
		}
		if f, ok := keyDoc(ce.Key); ok {
			article := "a"
			if strings.ContainsAny(f.Type[:1], "aeiou") {
				article = "an"
			}
			ce.Hint = fmt.Sprintf("%s is %s %s: %s", f.Key, article, f.Type, f.Doc)
		}
	}
	return ce
}

// snippet is the source excerpt of ErrorWithPosition ("toml: error: MSG\n\n
// At line N, column C:\n\nSNIPPET"). toml v1.6.0 panics there for errors at
// line 0 (found by FuzzParseConfig, testdata/fuzz), hence the guard and the
// recover.
func snippet(pe toml.ParseError) (s string) {
	if pe.Position.Line < 1 {
		return ""
	}
	defer func() {
		if recover() != nil {
			s = ""
		}
	}()
	if parts := strings.SplitN(pe.ErrorWithPosition(), "\n\n", 3); len(parts) == 3 {
		return strings.TrimRight(parts[2], "\n")
	}
	return ""
}
