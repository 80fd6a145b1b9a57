package ferretembed

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// A one-pass reading of a stored row for the direct finds.
//
// sjsonToBSON's encoding/json reading decodes every level of a document
// into a map of raw values and then each value again, so a job's row is
// scanned once per level of nesting, and the schema is decoded by
// reflection: 8% of the all-in-one's CPU under the simulated load
// (docs/benchmarks.md, "Group commit of the direct writes"). The rows are
// JSON that FerretDB or the proxy's encoder wrote, so the reading below
// goes through a row front to back, writes the BSON as it goes, and
// converts the scalars with strconv as encoding/json does. Whatever it does
// not expect (fields out of the schema's order, a key of the schema it does
// not know, a string it would have to unescape in an unusual way, any
// syntax error) makes it give up, and sjsonToBSON reads the row the old
// way, which decides. TestSJSONFastMatchesSlow compares the two on random
// documents; TestFindDirectMatchesFerretDB compares the result with
// FerretDB's own reply.

// sjsonToBSONFast is sjsonToBSON in one pass; ok false: use the old way.
// FerretDB writes a row as {"$s": schema, field: value, ...}, the fields in
// the order of the schema's keys ($k), and each nested document's fields in
// the order of its own.
func sjsonToBSONFast(row []byte) (bsoncore.Document, bool) {
	r := &sjReader{b: row}
	d, ok := r.document(nil, nil, true)
	r.ws()
	return d, ok && r.i == len(r.b)
}

// sjReader reads one row, front to back.
type sjReader struct {
	b []byte
	i int
}

func (r *sjReader) ws() { r.i = skipSpace(r.b, r.i) }

// next consumes c if it comes next.
func (r *sjReader) next(c byte) bool {
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

func (r *sjReader) colon() bool {
	r.ws()
	ok := r.next(':')
	r.ws()
	return ok
}

// null consumes a null literal if one comes next.
func (r *sjReader) null() bool {
	if r.i+4 <= len(r.b) && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	return false
}

// str reads a string token.
func (r *sjReader) str() (string, bool) {
	r.ws()
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return "", false
	}
	end, ok := skipString(r.b, r.i)
	if !ok {
		return "", false
	}
	s, ok := jsonString(r.b[r.i:end])
	r.i = end
	return s, ok
}

// scalar reads a number or literal token.
func (r *sjReader) scalar() []byte {
	r.ws()
	start := r.i
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return r.b[start:r.i]
		}
		r.i++
	}
	return r.b[start:r.i]
}

// object reads {key: value, ...}, each value by each, which must consume it.
func (r *sjReader) object(each func(key string) bool) bool {
	r.ws()
	if !r.next('{') {
		return false
	}
	r.ws()
	if r.next('}') {
		return true
	}
	for {
		k, ok := r.str()
		if !ok || !r.colon() || !each(k) {
			return false
		}
		r.ws()
		if r.next('}') {
			return true
		}
		if !r.next(',') {
			return false
		}
		r.ws()
	}
}

// array reads [item, ...], each item by each.
func (r *sjReader) array(each func(i int) bool) bool {
	r.ws()
	if !r.next('[') {
		return false
	}
	r.ws()
	if r.next(']') {
		return true
	}
	for i := 0; ; i++ {
		r.ws()
		if !each(i) {
			return false
		}
		r.ws()
		if r.next(']') {
			return true
		}
		if !r.next(',') {
			return false
		}
	}
}

// schema reads {"p": {key: elem}, "$k": [keys]} (or null).
func (r *sjReader) schema() (*sjsonSchema, bool) {
	r.ws()
	if r.null() {
		return nil, true
	}
	sch := &sjsonSchema{}
	ok := r.object(func(k string) bool {
		switch k {
		case "p":
			if r.null() {
				return true
			}
			sch.Properties = map[string]*sjsonElem{}
			return r.object(func(name string) bool {
				el, ok := r.elem()
				sch.Properties[name] = el
				return ok
			})
		case "$k":
			if r.null() {
				return true
			}
			sch.Keys = []string{}
			return r.array(func(int) bool {
				s, ok := r.str()
				sch.Keys = append(sch.Keys, s)
				return ok
			})
		}
		return false
	})
	return sch, ok
}

// elem reads {"t": type, "$s": schema, "o": options, "i": [elem], "s": subtype} (or null).
func (r *sjReader) elem() (*sjsonElem, bool) {
	r.ws()
	if r.null() {
		return nil, true
	}
	el := &sjsonElem{}
	ok := r.object(func(k string) bool {
		r.ws()
		if k != "t" && r.null() {
			return true
		}
		var ok bool
		switch k {
		case "t":
			el.Type, ok = r.str()
		case "$s":
			el.Schema, ok = r.schema()
		case "o":
			var o string
			o, ok = r.str()
			el.Options = &o
		case "i":
			el.Items = []*sjsonElem{}
			ok = r.array(func(int) bool {
				it, ok := r.elem()
				el.Items = append(el.Items, it)
				return ok
			})
		case "s":
			v := r.scalar()
			n, err := strconv.ParseInt(string(v), 10, 0)
			ok = err == nil && jsonNumber(v)
			s := int(n)
			el.Subtype = &s
		}
		return ok
	})
	return el, ok
}

// document reads a document, its fields in the order of sch's keys, and
// appends it to b. A row (top) begins with its own schema, "$s".
func (r *sjReader) document(b []byte, sch *sjsonSchema, top bool) ([]byte, bool) {
	start := len(b)
	idx, b := bsoncore.ReserveLength(b)
	n, schemaRead := 0, !top
	ok := r.object(func(k string) bool {
		if !schemaRead {
			schemaRead = true
			var ok bool
			sch, ok = r.schema()
			return k == "$s" && ok
		}
		if sch == nil || n >= len(sch.Keys) || k != sch.Keys[n] {
			return false
		}
		var ok bool
		b, ok = r.value(b, k, sch.Properties[k])
		n++
		return ok
	})
	switch {
	case !ok || !schemaRead:
		return nil, false
	case n == 0: // no fields: an empty document, whatever the schema says
		return bsoncore.BuildDocument(b[:start], nil), true
	case n != len(sch.Keys):
		return nil, false
	}
	b = append(b, 0)
	return bsoncore.UpdateLength(b, idx, int32(len(b)-int(idx))), true
}

// value reads the value of key, of schema elem, and appends it to b.
func (r *sjReader) value(b []byte, key string, elem *sjsonElem) ([]byte, bool) {
	r.ws()
	if r.null() { // whatever the schema says, as FerretDB reads it
		return bsoncore.AppendNullElement(b, key), true
	}
	if elem == nil {
		return nil, false
	}
	switch elem.Type {
	case "object":
		return r.document(bsoncore.AppendHeader(b, bsoncore.TypeEmbeddedDocument, key), elem.Schema, false)
	case "array":
		idx, b := bsoncore.AppendArrayElementStart(b, key)
		n := 0
		ok := r.array(func(i int) bool {
			if i >= len(elem.Items) {
				return false
			}
			var ok bool
			b, ok = r.value(b, strconv.Itoa(i), elem.Items[i])
			n++
			return ok
		})
		if !ok || n != len(elem.Items) {
			return nil, false
		}
		b, err := bsoncore.AppendArrayEnd(b, idx)
		return b, err == nil
	case "string":
		s, ok := r.str()
		return bsoncore.AppendStringElement(b, key, s), ok
	case "double":
		v := r.scalar()
		f, err := strconv.ParseFloat(string(v), 64)
		return bsoncore.AppendDoubleElement(b, key, f), err == nil && jsonNumber(v)
	case "int":
		v := r.scalar()
		i, err := strconv.ParseInt(string(v), 10, 32)
		return bsoncore.AppendInt32Element(b, key, int32(i)), err == nil && jsonNumber(v)
	case "long", "date":
		v := r.scalar()
		i, err := strconv.ParseInt(string(v), 10, 64)
		if elem.Type == "date" {
			return bsoncore.AppendDateTimeElement(b, key, i), err == nil && jsonNumber(v)
		}
		return bsoncore.AppendInt64Element(b, key, i), err == nil && jsonNumber(v)
	case "bool":
		switch string(r.scalar()) {
		case "true":
			return bsoncore.AppendBooleanElement(b, key, true), true
		case "false":
			return bsoncore.AppendBooleanElement(b, key, false), true
		}
		return nil, false
	case "objectId":
		h, ok := r.str()
		oid, hexOK := objectIDHex(h)
		return bsoncore.AppendObjectIDElement(b, key, oid), ok && hexOK
	}
	return nil, false // binData, regex, timestamp: the old way says
}

// jsonNumber reports whether v is a JSON number,
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?: strconv also takes "Inf",
// "NaN", hexadecimal, underscores and leading zeros, which JSON does not.
func jsonNumber(v []byte) bool {
	i := 0
	if i < len(v) && v[i] == '-' {
		i++
	}
	switch {
	case i < len(v) && v[i] == '0':
		i++
	case i < len(v) && v[i] >= '1' && v[i] <= '9':
		i = digits(v, i)
	default:
		return false
	}
	if i < len(v) && v[i] == '.' {
		j := digits(v, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		j := digits(v, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(v)
}

func digits(v []byte, i int) int {
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	return i
}

// jsonString returns the string the JSON string token v holds: v itself
// without its quotes when it has no escapes and is valid UTF-8, else what
// encoding/json makes of it.
func jsonString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	in := v[1 : len(v)-1]
	plain := bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in)
	for _, c := range in {
		if c < 0x20 || c == '"' {
			plain = false
			break
		}
	}
	if plain {
		return string(in), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the end of the string token starting at i (a quote).
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}
