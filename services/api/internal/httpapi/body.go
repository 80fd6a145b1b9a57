package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
)

// Lingering close (as nginx does it): a body over the limit is read and
// discarded, up to lingerBytes and for at most lingerTime, before the 413 is
// written. Otherwise the server closes the connection while the client is
// still sending, the client's kernel answers the rest with a reset, and the
// client reports "connection reset" instead of reading the problem.
const (
	lingerBytes = 64 << 20
	lingerTime  = 10 * time.Second
)

// readLimited reads the whole body (at most limit bytes) and puts it back for the handler.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		_ = r.Body.Close()
		return nil, problem.New(http.StatusBadRequest, "reading request body: "+err.Error())
	}
	if int64(len(body)) > limit {
		return nil, tooLarge(w, r, limit)
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

// tooLarge discards the rest of r's body (lingering close) and returns the
// 413 problem. The caller has set or lifted the connection's read deadline;
// this sets its own and leaves none behind.
func tooLarge(w http.ResponseWriter, r *http.Request, limit int64) *problem.Problem {
	linger(w, r)
	return problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit),
		problem.Field("", "the body has more than %d bytes; this endpoint takes at most %d", limit, limit))
}

// linger reads and discards what is left of r's body, within the bounds above.
func linger(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(lingerTime))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	// Keep-alive is not worth the risk of a body that goes on past the bound.
	w.Header().Set("Connection", "close")
	_, _ = io.CopyN(io.Discard, r.Body, lingerBytes)
	_ = r.Body.Close()
}

// humanJSON makes the JSON formats of cfg report a body that is not JSON
// with the byte offset (and line and column) and words a user reads, not
// encoding/json's "invalid character ',' looking for beginning of object key string".
func humanJSON(cfg *huma.Config) {
	for ct, f := range cfg.Formats {
		if !strings.Contains(ct, "json") {
			continue
		}
		inner := f.Unmarshal
		f.Unmarshal = func(data []byte, v any) error {
			err := inner(data, v)
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && isIntegerKind(te.Type) {
				// 10.0 or 1e3 where an integer goes: JSON Schema takes a
				// number of integral value as an integer (the schema let
				// it through), and so does a merge patch, which is
				// re-encoded; encoding/json refuses it. Read it as the
				// integer it is.
				rv := reflect.ValueOf(v)
				if whole, ok := integralNumbers(data); ok && rv.Kind() == reflect.Pointer && !rv.IsNil() {
					rv.Elem().SetZero()
					data, err = whole, inner(whole, v)
				}
			}
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return errors.New(describeSyntaxError(data, se))
			}
			if errors.As(err, &te) {
				return describeTypeError(data, te)
			}
			return err
		}
		cfg.Formats[ct] = f
	}
}

// describeSyntaxError says where the JSON in data breaks and what was expected there.
func describeSyntaxError(data []byte, se *json.SyntaxError) string {
	off := se.Offset
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:max(off-1, 0)] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	msg := se.Error()
	for _, w := range syntaxWords {
		if found, ok := strings.CutPrefix(msg, "invalid character "); ok {
			if what, ok := strings.CutSuffix(found, " "+w.after); ok {
				msg = w.expected + ", found " + what
				break
			}
		}
	}
	if msg == "unexpected end of JSON input" {
		return fmt.Sprintf("not valid JSON: the body ends at byte %d before the JSON value is complete", len(data))
	}
	return fmt.Sprintf("not valid JSON at byte %d (line %d, column %d): %s", off, line, col, msg)
}

// describeTypeError words a value the decoder could not take: a field's, named
// (the schema's own checks come first, so this is rare: a number too large
// for its field), or one no Go value can hold (1e400), by its byte offset.
func describeTypeError(data []byte, te *json.UnmarshalTypeError) error {
	if te.Field != "" {
		return problem.Field(te.Field, "expected %s, got %s", goTypeWords(te.Type), te.Value)
	}
	off := min(te.Offset, int64(len(data)))
	if te.Type != nil && strings.HasPrefix(te.Value, "number") && (te.Type.Kind() == reflect.Float64 || te.Type.Kind() == reflect.Float32) {
		return fmt.Errorf("not valid JSON at byte %d: the %s is out of range", off, te.Value)
	}
	return fmt.Errorf("not valid JSON at byte %d: the %s cannot be read as %s", off, te.Value, goTypeWords(te.Type))
}

func isIntegerKind(t reflect.Type) bool {
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// integralNumbers returns data with every number of integral value that is
// not written as an integer (10.0, 1e3, 2.5e1) written as one (10, 1000,
// 25), and whether there was any. Other numbers, including fractions and
// integers too large for any field, stay as they are, for the decoder to
// refuse.
func integralNumbers(data []byte) ([]byte, bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	changed := false
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		case json.Number:
			if !strings.ContainsAny(string(x), ".eE") {
				return x
			}
			f, ok := new(big.Float).SetString(string(x))
			if !ok || !f.IsInt() || f.MantExp(nil) > 64 {
				return x
			}
			changed = true
			return json.Number(f.Text('f', 0))
		}
		return v
	}
	v = walk(v)
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(v)
	return out, err == nil
}

// goTypeWords names a Go type as a JSON schema would.
func goTypeWords(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number in range"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a value of another type"
}

var syntaxWords = []struct{ after, expected string }{
	{"looking for beginning of object key string", "expected a field name in double quotes"},
	{"after object key:value pair", "expected , or } after a field's value"},
	{"after object key", "expected : after a field name"},
	{"after array element", "expected , or ] after an array element"},
	{"looking for beginning of value", "expected a JSON value"},
	{"after top-level value", "expected nothing after the JSON value"},
	{"in string literal", "expected no control character inside a string (escape it)"},
	{"in string escape code", "expected a valid escape (\\n, \\\", \\uXXXX, …)"},
}

// scanBody finds what no schema can refuse in a JSON body, naming the field:
// a key given twice in one object (encoding/json keeps the last value, so the
// first would be lost, or fail later in Go's words) and a NUL character in a
// string, which no field takes (an environment variable's value with one
// cannot even be passed to a process; a label with one is not a label).
// A body that is not JSON passes: the decoder after this says where it breaks.
func scanBody(body []byte) *problem.FieldError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []*jsonFrame
	// done moves past a value the enclosing object or array has read whole.
	done := func() {
		if n := len(stack); n > 0 {
			stack[n-1].next()
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or bad JSON
		}
		top := (*jsonFrame)(nil)
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		if top != nil && top.keys != nil && top.wantKey {
			k, ok := tok.(string)
			if !ok { // '}'
				stack = stack[:len(stack)-1]
				done()
				continue
			}
			// The field's path is made only for a refusal: made for every
			// key, it cost the depth of the key each time, and a body of
			// 100,000 nested objects (500 KB) took minutes.
			field := func() string { return joinField(framePath(stack[:len(stack)-1]), k) }
			if strings.IndexByte(k, 0) >= 0 {
				return problem.Field(field(), "the field name contains a NUL byte")
			}
			if top.keys[k] {
				return problem.Field(field(), "given twice in one object")
			}
			top.keys[k], top.key, top.wantKey = true, k, false
			continue
		}
		switch v := tok.(type) {
		case json.Delim:
			if (v == '{' || v == '[') && len(stack) >= maxBodyDepth {
				return nil // the decoder refuses it, saying where
			}
			switch v {
			case '{':
				stack = append(stack, &jsonFrame{keys: map[string]bool{}, wantKey: true})
			case '[':
				stack = append(stack, &jsonFrame{})
			default: // ']'
				stack = stack[:len(stack)-1]
				done()
			}
			continue
		case string:
			if strings.IndexByte(v, 0) >= 0 {
				return problem.Field(framePath(stack), "contains a NUL byte, which no field takes")
			}
		}
		done()
	}
}

// maxBodyDepth is the nesting encoding/json decodes at most (its maxNestingDepth):
// scanBody need not look deeper, as the decoder refuses such a body with a 400.
const maxBodyDepth = 10000

// jsonFrame is an object (keys set) or an array being read by scanBody.
type jsonFrame struct {
	keys    map[string]bool
	key     string // the object's key whose value is being read
	wantKey bool
	index   int // the array's index being read
}

func (f *jsonFrame) next() {
	if f.keys != nil {
		f.wantKey = true
	} else {
		f.index++
	}
}

// framePath names the value being read as the API's errors name fields:
// environment_variables.SEED, command[0].
func framePath(stack []*jsonFrame) string {
	var b strings.Builder
	for _, f := range stack {
		if f.keys != nil {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		} else {
			fmt.Fprintf(&b, "[%d]", f.index)
		}
	}
	return b.String()
}

func joinField(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
