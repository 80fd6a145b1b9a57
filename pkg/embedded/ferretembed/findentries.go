package ferretembed

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The outbox sweep's find, answered from SQLite.
//
// At every start, and when a writer looks dead, the outbox relay looks for
// documents whose event entries may be unsent (pkg/events/outbox,
// sweepFilter):
//
//	{_outbox.0: {$exists: true}, $or: [{_deleted: true},
//	    {_outbox: {$elemMatch: {by: {$exists: false}}}},
//	    {_outbox: {$elemMatch: {by: "<instance>", at: {$gte: <date>}}}}, ...]}
//
// Every document keeps the entries of its last write, sent or not, so the
// filter's work is in the entries' writer and time. FerretDB v1.24 cannot
// answer it ($elemMatch takes operators only), and it would decode every
// document to filter in Go: its scan of 100,000 finished jobs took 14.5 to
// 16.9 s here (BenchmarkHistoryInterleaved's setup log, 2026-12-02). The
// proxy selects the rows in SQL, reading each document's entries with
// json_each and the types from the sjson schema, and converts only the
// matches. Any other shape of $or or $elemMatch goes to FerretDB.

// entriesQuery is the filter above: documents whose top-level array field
// array has an element, and that have a top-level field of flags equal to
// true or an element (a document) meeting one of elems.
type entriesQuery struct {
	array string
	flags []string
	elems []elemCond
}

// elemCond is one $elemMatch of entriesQuery: the element lacks key
// (missing), or its key is the string value and, if since is set, its
// field since is a date at or after at (milliseconds since the epoch).
type elemCond struct {
	key     string
	missing bool
	value   string
	since   string
	at      int64
}

// parseEntriesFilter takes the filter of entriesQuery, its two top-level
// conditions in either order.
func parseEntriesFilter(els []bsoncore.Element) (*entriesQuery, bool) {
	if len(els) != 2 {
		return nil, false
	}
	var q entriesQuery
	var or bsoncore.Value
	for _, e := range els {
		k, v := e.Key(), e.Value()
		if k == "$or" {
			or = v
			continue
		}
		field, ok := strings.CutSuffix(k, ".0")
		if !ok || !plainField(field) || !isOp(v, "$exists", true) {
			return nil, false
		}
		q.array = field
	}
	arr, ok := or.ArrayOK()
	if q.array == "" || !ok {
		return nil, false
	}
	clauses, err := arr.Values()
	if err != nil || len(clauses) == 0 {
		return nil, false
	}
	for _, c := range clauses {
		d, ok := c.DocumentOK()
		if !ok {
			return nil, false
		}
		cels, err := d.Elements()
		if err != nil || len(cels) != 1 {
			return nil, false
		}
		k, v := cels[0].Key(), cels[0].Value()
		if b, ok := v.BooleanOK(); ok && b && plainField(k) && k != q.array {
			q.flags = append(q.flags, k)
			continue
		}
		em, ok := v.DocumentOK()
		if k != q.array || !ok {
			return nil, false
		}
		ems, err := em.Elements()
		if err != nil || len(ems) != 1 || ems[0].Key() != "$elemMatch" {
			return nil, false
		}
		cond, ok := parseElemCond(ems[0].Value())
		if !ok {
			return nil, false
		}
		q.elems = append(q.elems, cond)
	}
	return &q, true
}

// parseElemCond takes {k: {$exists: false}}, {k: <string>} or
// {k: <string>, k2: {$gte: <date>}}.
func parseElemCond(v bsoncore.Value) (elemCond, bool) {
	var c elemCond
	d, ok := v.DocumentOK()
	if !ok {
		return c, false
	}
	els, err := d.Elements()
	if err != nil || len(els) == 0 || len(els) > 2 || !plainField(els[0].Key()) {
		return c, false
	}
	c.key = els[0].Key()
	if isOp(els[0].Value(), "$exists", false) {
		c.missing = true
		return c, len(els) == 1
	}
	if c.value, ok = els[0].Value().StringValueOK(); !ok {
		return c, false
	}
	if len(els) == 1 {
		return c, true
	}
	c.since = els[1].Key()
	gte, ok := els[1].Value().DocumentOK()
	if !ok || !plainField(c.since) || c.since == c.key {
		return c, false
	}
	ops, err := gte.Elements()
	if err != nil || len(ops) != 1 || ops[0].Key() != "$gte" {
		return c, false
	}
	c.at, ok = ops[0].Value().DateTimeOK()
	return c, ok
}

// isOp reports whether v is {op: b}.
func isOp(v bsoncore.Value, op string, b bool) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	els, err := d.Elements()
	if err != nil || len(els) != 1 || els[0].Key() != op {
		return false
	}
	got, ok := els[0].Value().BooleanOK()
	return ok && got == b
}

// plainField: a top-level field name the SQL may hold in a JSON path
// unquoted, as MatchingIDs' paths (fieldPath) without a dot.
func plainField(k string) bool { return fieldPath.MatchString(k) && !strings.Contains(k, ".") }

// sql is the WHERE of q and its arguments. Types come from the sjson
// schema ("$s"), as FerretDB reads them: the array must be stored as an
// array, a flag as the bool true, an element as a document, its key as a
// string and its since field as a date (stored as milliseconds). A field
// that holds JSON null is there (->'s text 'null'), as MongoDB's $exists
// sees it.
func (q *entriesQuery) sql() (string, []any) {
	col := "_ferretdb_sjson"
	schema := func(path string) string { return col + `->>'$."$s".p.` + path + `.t'` }
	// {<array>.0: {$exists: true}}: an array with an element, or a
	// document with a field "0".
	where := []string{fmt.Sprintf(`(%[1]s = 'array' AND json_array_length(%[2]s, '$.%[3]s') > 0 OR %[1]s = 'object' AND %[2]s->'$.%[3]s."0"' IS NOT NULL)`,
		schema(q.array), col, q.array)}
	var alts []string
	for _, f := range q.flags {
		alts = append(alts, fmt.Sprintf("(%s = 'bool' AND %s->>'$.%s' = 1)", schema(f), col, f))
	}
	var args []any
	if len(q.elems) > 0 {
		// The schema of element e.key: '$."$s".p.<array>.i[<n>]'.
		item := func(rest string) string {
			return fmt.Sprintf(`json_extract(%s, '$."$s".p.%s.i[' || e.key || ']%s')`, col, q.array, rest)
		}
		var conds []string
		for _, c := range q.elems {
			if c.missing {
				conds = append(conds, fmt.Sprintf("e.value->'$.%s' IS NULL", c.key))
				continue
			}
			s := fmt.Sprintf(`(%s = 'string' AND e.value->>'$.%s' = ?`, item(`."$s".p.`+c.key+`.t`), c.key)
			args = append(args, c.value)
			if c.since != "" {
				s += fmt.Sprintf(` AND %s = 'date' AND e.value->>'$.%s' >= ?`, item(`."$s".p.`+c.since+`.t`), c.since)
				args = append(args, c.at)
			}
			conds = append(conds, s+")")
		}
		// $elemMatch of fields looks into the elements that are documents
		// or arrays (an array has no field: only {k: {$exists: false}}
		// holds for it), of an array only.
		alts = append(alts, fmt.Sprintf("(%s = 'array' AND EXISTS (SELECT 1 FROM json_each(%s, '$.%s') AS e WHERE %s IN ('object', 'array') AND (%s)))",
			schema(q.array), col, q.array, item(".t"), strings.Join(conds, " OR ")))
	}
	where = append(where, "("+strings.Join(alts, " OR ")+")")
	return strings.Join(where, " AND "), args
}
