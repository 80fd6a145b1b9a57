package ferretembed

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Finds by _id and look-ups by name, answered from SQLite.
//
// The services read a job by its _id (find {filter: {_id: X}, limit: 1,
// singleBatch: true}, the driver's FindOne) several times per job. FerretDB
// v1.24 answers that by its _id index but then decodes the stored sjson into
// its own document type (a map of raw JSON per level, a leak-tracker entry
// per value) and encodes it again as BSON: about 0.6 ms of CPU for a job,
// the largest part of FerretDB's CPU once the writes are the proxy's
// (fastpath_direct.go). The proxy reads the row itself, by the same index
// and expression, and converts the sjson straight to the BSON FerretDB
// would send (the order of the schema's "$k", FerretDB's types), in the
// reply FerretDB gives. TestFindDirectMatchesFerretDB compares the replies
// byte for byte.
//
// A read of many documents by _id ({_id: {$in: [<string>, ...]}}, how the
// services read the jobs an index look-up found, 100 at a time) is
// answered by the same index, in the table's order, as FerretDB (which
// reads the whole table for it) answers.
//
// Conditions on other fields beside the _id or the _ids ({_id: X,
// _deleted: {$exists: false}}, {_id: {$in: [...]}, queue: {$in: [...]}},
// {_id: X, "claim.owner": O}) make FerretDB read the whole table too: the
// proxy reads the rows by the _id index and evaluates the conditions on
// the converted documents in Go, as the conditional-write fast path does
// (parseCond, matchConds in fastpath.go, compared with FerretDB by the
// differential test). Whatever that evaluation cannot judge (an array on a
// path, another operator) goes to FerretDB.
//
// The services' look-ups by name ({name: "q", _deleted: {$exists:
// false}}, the default plugin by {is_default: true}, ...) are answered the
// same way: FerretDB reads every document of the collection and filters
// them in Go, the proxy selects the rows in SQL, in the same order (the
// table's, NOT INDEXED), by the stored type and value of each field.
// TestFindDirectByFields compares those replies too.
//
// A projection that only leaves out top-level fields (the services read
// jobs without their runtime and outbox: the scheduler's resync, the API's
// lists), or only keeps some (the outbox reads a document's entries), is
// applied to the converted document, as FerretDB applies it.
//
// Only those shapes of find are answered; any other option (another
// projection, a sort, a batch size of 0, ...), a collection or database FerretDB does
// not have (it answers those itself), a stored type the conversion does not
// cover (binary, regex, timestamp), a field stored as an array (MongoDB's
// equality looks into arrays), a full first batch that FerretDB would
// follow with a cursor, or any error goes to FerretDB as before.
// The reads have their own connections, never cancelled (fastpath_sql.go:
// a cancelled modernc query may leave its connection reading old data), and
// a read is answered here only when nothing else of its client connection
// is in flight, so replies keep their order.

// findDirectConns is how many connections per database the direct finds
// use at most.
const findDirectConns = 4

// findDirect answers msg, a find, from SQLite, or returns nil when it does
// not (the caller forwards it).
func (s *Server) findDirect(msg []byte) []byte {
	if !s.directOn() {
		return nil
	}
	doc := opMsgCommand(msg)
	if doc == nil {
		return nil
	}
	f, ok := parseFind(doc)
	if !ok {
		return nil
	}
	rows, err := s.readRows(context.Background(), f) // never cancelled: see above
	if err != nil {
		s.sqlLookups.findFellBack.Add(1)
		return nil
	}
	if f.match == nil {
		// The rows are the answer (the SQL selected them): past the
		// first batch they are not converted.
		if rows, err = firstBatch(f, rows); err != nil {
			s.sqlLookups.findFellBack.Add(1)
			return nil
		}
	}
	var docs []bsoncore.Document
	for _, row := range rows {
		d, err := sjsonToBSON(row)
		if err != nil || arrayField(d, f.eq) {
			s.sqlLookups.findFellBack.Add(1)
			return nil
		}
		if f.match != nil {
			ok, err := matchConds(f.match, d)
			if err != nil {
				s.sqlLookups.findFellBack.Add(1)
				return nil
			}
			if !ok {
				continue
			}
		}
		docs = append(docs, d)
	}
	if f.match != nil {
		if docs, err = firstBatch(f, docs); err != nil {
			s.sqlLookups.findFellBack.Add(1)
			return nil
		}
	}
	var batch []byte
	for i, d := range docs {
		if d, err = f.project(d); err != nil {
			s.sqlLookups.findFellBack.Add(1)
			return nil
		}
		batch = bsoncore.AppendDocumentElement(batch, strconv.Itoa(i), d)
	}
	s.sqlLookups.findDirect.Add(1)
	return opMsgReply(requestID(msg), bsoncore.BuildDocument(nil,
		bsoncore.BuildDocumentElement(nil, "cursor",
			bsoncore.AppendArrayElement(nil, "firstBatch", bsoncore.BuildDocumentFromElements(nil, batch)),
			bsoncore.AppendInt64Element(nil, "id", 0),
			bsoncore.AppendStringElement(nil, "ns", f.db+"."+f.coll)),
		bsoncore.AppendDoubleElement(nil, "ok", 1)))
}

// findQuery is a find the proxy answers: by a string _id or a list of
// them ({_id: {$in: [...]}}), with conditions on other fields beside them
// that are checked in Go on the documents read (the fast path's,
// parseCond: {_id: X, _deleted: {$exists: false}}, {_id: {$in: [...]},
// queue: {$in: [...]}}); or by equality of top-level fields to strings or
// booleans (or to one of a list of strings, {$in: [...]}) and absence of
// others, in SQL ({name: "q", _deleted: {$exists: false}}, the services'
// look-ups by name); with at most max documents in the one batch of the
// reply.
type findQuery struct {
	db, coll string
	id       string        // the _id, or "" for a look-up by fields
	ids      []string      // or the _ids of {_id: {$in: [...]}} (a read of many jobs)
	match    []fieldCond   // beside id or ids: the other conditions, evaluated in Go (nil: none)
	eq       []eqCond      // by fields: field = value
	entries  *entriesQuery // or the outbox sweep's filter (findentries.go)
	absent   []string      // by fields: fields that must not exist
	max      int           // documents in the first batch at most
	single   bool          // the cursor ends with the first batch (singleBatch, or a limit below max)
	exclude  []string      // top-level fields the projection leaves out ({f: 0, ...})
	include  []string      // or the only ones it keeps, with _id ({f: 1, ...})
}

type eqCond struct {
	field string
	value any      // string or bool
	in    []string // or, for {field: {$in: [...]}}, the strings it may be
}

// findNeutral are the fields of a find that change nothing about the answer
// (maxTimeMS: the answer from SQLite is never cancelled, see above).
var findNeutral = map[string]bool{
	"lsid": true, "$clusterTime": true, "$readPreference": true, "txnNumber": true, "maxTimeMS": true,
	"comment": true, "apiVersion": true, "apiStrict": true, "apiDeprecationErrors": true,
}

// findDefaultBatch is the size of FerretDB's first batch when the find
// names none.
const findDefaultBatch = 101

// parseFind accepts {find: C, filter: F, $db: D} with F {_id: <string>} or
// a look-up by fields (findQuery), an optional limit, batchSize and
// singleBatch, and neutral fields.
func parseFind(doc bsoncore.Document) (findQuery, bool) {
	f := findQuery{max: findDefaultBatch}
	els, err := doc.Elements()
	if err != nil || len(els) == 0 || els[0].Key() != "find" {
		return f, false
	}
	var ok bool
	if f.coll, ok = els[0].Value().StringValueOK(); !ok || f.coll == "" {
		return f, false
	}
	limit := int64(0)
	seen := map[string]bool{}
	for _, e := range els[1:] {
		k, v := e.Key(), e.Value()
		if seen[k] {
			return f, false
		}
		seen[k] = true
		switch {
		case k == "$db":
			if f.db, ok = v.StringValueOK(); !ok || f.db == "" {
				return f, false
			}
		case k == "filter":
			fd, ok := v.DocumentOK()
			if !ok || !f.parseFilter(fd) {
				return f, false
			}
		case k == "limit":
			n, ok := wholeNumber(v)
			if !ok || n < 1 {
				return f, false
			}
			limit = n
		case k == "singleBatch":
			if f.single, ok = v.BooleanOK(); !ok {
				return f, false
			}
		case k == "projection":
			pd, ok := v.DocumentOK()
			if !ok || !f.parseProjection(pd) {
				return f, false
			}
		case k == "batchSize":
			n, ok := wholeNumber(v)
			if !ok || n < 1 || n > 1<<20 {
				return f, false
			}
			f.max = int(n)
		case findNeutral[k]:
		default: // sort, skip, hint, collation, readConcern, ...
			return f, false
		}
	}
	if limit > 0 && limit < int64(f.max) {
		// All the limit allows fits the first batch with room to spare,
		// so FerretDB sees its cursor end there.
		f.max, f.single = int(limit), true
	}
	return f, f.db != "" && seen["filter"]
}

// parseProjection takes an empty projection (every field), or one of
// top-level fields only: one that leaves them out ({runtime: 0, _outbox:
// 0}, the services' reads of jobs), each value 0 or false, or one that
// keeps only them and _id ({_outbox: 1}, the outbox's reads), each value 1
// or true. No other _id, no path, no operator,
// no mix (FerretDB refuses a mix: its error is the answer). An inclusion
// may name _id: 1 too (the outbox sweep's does), which it keeps anyway.
func (f *findQuery) parseProjection(pd bsoncore.Document) bool {
	els, err := pd.Elements()
	if err != nil {
		return false
	}
	if len(els) == 0 {
		return true // {}: every field, as FerretDB reads it (a Reader that excludes nothing)
	}
	seen := map[string]bool{}
	var zeros, ones []string
	idKept := false
	for _, e := range els {
		k, v := e.Key(), e.Value()
		n, number := wholeNumber(v)
		b, boolean := v.BooleanOK()
		if k == "_id" && !idKept && (number && n == 1 || boolean && b) {
			idKept = true // what an inclusion does anyway
			continue
		}
		if k == "_id" || checkKey(k, seen) != nil {
			return false
		}
		switch {
		case number && n == 0 || boolean && !b:
			zeros = append(zeros, k)
		case number && n == 1 || boolean && b:
			ones = append(ones, k)
		default:
			return false
		}
	}
	if len(zeros) > 0 && len(ones) > 0 || idKept && len(ones) == 0 {
		return false
	}
	f.exclude, f.include = zeros, ones
	return true
}

// project applies the query's projection to d: without the top-level
// fields it excludes, or with _id and the fields it includes only, in
// d's order, as FerretDB projects.
func (f *findQuery) project(d bsoncore.Document) (bsoncore.Document, error) {
	if len(f.exclude) == 0 && len(f.include) == 0 {
		return d, nil
	}
	els, err := d.Elements()
	if err != nil {
		return nil, err
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	if len(f.include) > 0 {
		if id, err := d.LookupErr("_id"); err == nil {
			out = bsoncore.AppendValueElement(out, "_id", id)
		}
	}
	for _, e := range els {
		k := e.Key()
		if len(f.exclude) > 0 && !slices.Contains(f.exclude, k) || len(f.include) > 0 && k != "_id" && slices.Contains(f.include, k) {
			out = append(out, e...)
		}
	}
	return bsoncore.AppendDocumentEnd(out, idx)
}

// wholeNumber is v as an integer, if it is a number with no fraction.
func wholeNumber(v bsoncore.Value) (int64, bool) {
	n, ok := v.AsInt64OK()
	if !ok || (v.Type == bsoncore.TypeDouble && v.Double() != float64(n)) {
		return 0, false
	}
	return n, true
}

// parseFilter takes {_id: <string>} or {_id: {$in: [<string>, ...]}}
// with conditions on other fields that the fast path evaluates
// (parseCond), or conditions field: <string|bool>, field: {$in:
// [<string>, ...]} and field: {$exists: false} on plain top-level fields
// without an _id.
func (f *findQuery) parseFilter(fd bsoncore.Document) bool {
	els, err := fd.Elements()
	if err != nil || len(els) == 0 {
		return false
	}
	if q, ok := parseEntriesFilter(els); ok {
		f.entries = q
		return true
	}
	if slices.ContainsFunc(els, func(e bsoncore.Element) bool { return e.Key() == "_id" }) {
		return f.parseByID(els)
	}
	seen := map[string]bool{}
	for _, e := range els {
		k, v := e.Key(), e.Value()
		if _, ok := jsonPathKey(k); !ok || checkKey(k, seen) != nil {
			return false
		}
		switch v.Type {
		case bsoncore.TypeString:
			f.eq = append(f.eq, eqCond{field: k, value: v.StringValue()})
		case bsoncore.TypeBoolean:
			f.eq = append(f.eq, eqCond{field: k, value: v.Boolean()})
		case bsoncore.TypeEmbeddedDocument:
			ops, err := v.Document().Elements()
			if err != nil || len(ops) != 1 {
				return false
			}
			switch ops[0].Key() {
			case "$exists":
				if b, ok := ops[0].Value().BooleanOK(); !ok || b {
					return false
				}
				f.absent = append(f.absent, k)
			case "$in": // the API's look-up of a queue by id or name
				in, ok := stringsIn(ops[0].Value())
				if !ok {
					return false
				}
				f.eq = append(f.eq, eqCond{field: k, in: in})
			default:
				return false
			}
		default:
			return false
		}
	}
	return len(f.eq) > 0
}

// parseByID takes a filter's elements with an _id: <string> or {$in:
// [<string>, ...]}, and conditions on other fields (or paths) that
// matchConds evaluates. A key given twice is refused.
func (f *findQuery) parseByID(els []bsoncore.Element) bool {
	seen := map[string]bool{}
	var conds []fieldCond
	for _, e := range els {
		k, v := e.Key(), e.Value()
		if seen[k] {
			return false
		}
		seen[k] = true
		if k != "_id" {
			c, err := parseCond(k, v)
			if err != nil {
				return false
			}
			conds = append(conds, c)
			continue
		}
		if id, ok := v.StringValueOK(); ok {
			f.id = id
		} else if !f.parseIn(v) {
			return false
		}
	}
	if len(conds) > 0 {
		f.match = conds
	}
	return true
}

// maxInIDs is how many _ids a find by {$in: [...]} may name to be answered
// here.
const maxInIDs = 1000

// parseIn takes {$in: [<string>, ...]}, at least one and at most maxInIDs.
func (f *findQuery) parseIn(v bsoncore.Value) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	ops, err := d.Elements()
	if err != nil || len(ops) != 1 || ops[0].Key() != "$in" {
		return false
	}
	f.ids, ok = stringsIn(ops[0].Value())
	return ok
}

// stringsIn returns the strings of an $in's array: at least one, at most
// maxInIDs, all strings.
func stringsIn(v bsoncore.Value) ([]string, bool) {
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, false
	}
	vals, err := arr.Values()
	if err != nil || len(vals) == 0 || len(vals) > maxInIDs {
		return nil, false
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		if out[i], ok = v.StringValueOK(); !ok {
			return nil, false
		}
	}
	return out, true
}

// readRows reads the stored sjson of the documents f finds, at most f.max
// in FerretDB's order, or fails when FerretDB's answer could differ: a full
// batch and more may follow (FerretDB would leave a cursor open). A
// database or collection FerretDB does not have is an error too: FerretDB
// answers those. Rows whose field is an array come back too, for findDirect
// to leave to FerretDB (arrayField).
func (s *Server) readRows(ctx context.Context, f findQuery) ([][]byte, error) {
	sdb, err := s.conns(&s.sqlLookups.reads, f.db, func(sdb *sql.DB) error {
		sdb.SetMaxOpenConns(findDirectConns)
		sdb.SetMaxIdleConns(findDirectConns)
		return nil
	})
	if err != nil {
		return nil, err
	}
	table, err := s.table(ctx, sdb, f.db, f.coll)
	if err != nil {
		return nil, err
	}
	var q string
	var args []any
	if f.id != "" {
		id, err := json.Marshal(f.id)
		if err != nil {
			return nil, err
		}
		q = fmt.Sprintf("SELECT _ferretdb_sjson FROM %s INDEXED BY %s WHERE %s = ?",
			quoteIdent(table), quoteIdent(idIndexName(table)), idExpr)
		args = []any{string(id)}
	} else if len(f.ids) > 0 {
		// FerretDB reads the whole table in its order (rowid) and
		// filters in Go; the _id index finds the same rows.
		texts := make([]string, len(f.ids))
		for i, id := range f.ids {
			t, err := json.Marshal(id)
			if err != nil {
				return nil, err
			}
			texts[i] = string(t)
		}
		list, err := json.Marshal(texts)
		if err != nil {
			return nil, err
		}
		// With conditions beside, every row listed is read (at most
		// maxInIDs) for matchConds to choose from.
		limit := f.max + 1
		if f.match != nil {
			limit = -1
		}
		q = fmt.Sprintf("SELECT _ferretdb_sjson FROM %s INDEXED BY %s WHERE %s IN (SELECT value FROM json_each(?)) ORDER BY rowid LIMIT ?",
			quoteIdent(table), quoteIdent(idIndexName(table)), idExpr)
		args = []any{string(list), limit}
	} else if f.entries != nil {
		// FerretDB would read the whole table in its order (rowid: NOT
		// INDEXED) and decode every row; SQLite reads them and decodes none.
		var where string
		where, args = f.entries.sql()
		q = fmt.Sprintf("SELECT _ferretdb_sjson FROM %s NOT INDEXED WHERE %s LIMIT ?", quoteIdent(table), where)
		args = append(args, f.max+1)
	} else {
		// FerretDB reads the whole table in its order (rowid: NOT INDEXED)
		// and filters in Go. A row whose field is an array is selected
		// too, so that it is seen (arrayField) and left to FerretDB.
		var where []string
		var err error
		if where, args, err = f.fieldConds(); err != nil {
			return nil, err
		}
		q = fmt.Sprintf("SELECT _ferretdb_sjson FROM %s NOT INDEXED WHERE %s LIMIT ?", quoteIdent(table), strings.Join(where, " AND "))
		args = append(args, f.max+1)
	}
	st, err := s.stmt(ctx, "reads\x00"+f.db, sdb, q)
	if err != nil {
		return nil, err
	}
	res, err := st.QueryContext(ctx, args...)
	if err != nil {
		s.forgetTable(f.db, f.coll)
		return nil, err
	}
	defer res.Close()
	var rows [][]byte
	for res.Next() {
		var row []byte
		if err := res.Scan(&row); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// firstBatch returns the documents of the reply's one batch out of all
// those f finds, in order, or fails when FerretDB's answer would differ: a
// full batch and more may follow (FerretDB would leave a cursor open).
func firstBatch[T any](f findQuery, found []T) ([]T, error) {
	if !f.single && len(found) >= f.max {
		// FerretDB stops at a full batch without asking for more, so it
		// keeps a cursor open: its answer.
		return nil, errSJSON
	}
	return found[:min(len(found), f.max)], nil
}

// fieldConds are the SQL conditions, and their arguments, of f's equalities
// and absences. A row whose field is an array meets an equality's, so that
// it is read and left to FerretDB (arrayField).
func (f *findQuery) fieldConds() (where []string, args []any, err error) {
	for _, c := range f.eq {
		path, _ := jsonPathKey(c.field)
		typ, cmp, val := "string", "= ?", c.value
		switch {
		case c.in != nil:
			list, err := json.Marshal(c.in)
			if err != nil {
				return nil, nil, err
			}
			cmp, val = "IN (SELECT value FROM json_each(?))", string(list)
		case c.value == true:
			typ, val = "bool", 1
		case c.value == false:
			typ, val = "bool", 0
		}
		where = append(where, fmt.Sprintf(`(_ferretdb_sjson->>'$."$s".p.%[1]s.t' = 'array' OR (_ferretdb_sjson->>'$."$s".p.%[1]s.t' = '%[2]s' AND _ferretdb_sjson->>'$.%[1]s' %[3]s))`, path, typ, cmp))
		args = append(args, val)
	}
	for _, field := range f.absent {
		path, _ := jsonPathKey(field)
		where = append(where, fmt.Sprintf(`_ferretdb_sjson->'$.%s' IS NULL`, path))
	}
	return where, args, nil
}

// arrayField reports whether d holds any of eq's fields as an array, which
// MongoDB's equality looks into: FerretDB answers those.
func arrayField(d bsoncore.Document, eq []eqCond) bool {
	for _, c := range eq {
		if d.Lookup(c.field).Type == bsoncore.TypeArray {
			return true
		}
	}
	return false
}

// sjsonSchema is a document's schema in FerretDB v1.24's sjson
// (internal/handler/sjson/schema.go).
type sjsonSchema struct {
	Properties map[string]*sjsonElem `json:"p"`
	Keys       []string              `json:"$k"`
}

type sjsonElem struct {
	Type    string       `json:"t"`
	Schema  *sjsonSchema `json:"$s,omitempty"`
	Options *string      `json:"o,omitempty"`
	Items   []*sjsonElem `json:"i,omitempty"`
	Subtype *int         `json:"s,omitempty"`
}

var errSJSON = errors.New("stored document outside the direct find's conversion")

// sjsonToBSON converts a stored document to the BSON FerretDB sends for it.
func sjsonToBSON(row []byte) (bsoncore.Document, error) {
	if d, ok := sjsonToBSONFast(row); ok { // sjsonfast.go
		return d, nil
	}
	return sjsonToBSONSlow(row)
}

// sjsonToBSONSlow is sjsonToBSON through encoding/json, level by level.
func sjsonToBSONSlow(row []byte) (bsoncore.Document, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(row, &fields); err != nil {
		return nil, err
	}
	raw, ok := fields["$s"]
	if !ok {
		return nil, errSJSON
	}
	var sch sjsonSchema
	if err := json.Unmarshal(raw, &sch); err != nil {
		return nil, errSJSON
	}
	delete(fields, "$s")
	return appendSJSONDocument(nil, &sch, fields)
}

// appendSJSONDocument appends the document of fields (raw JSON by key) in
// the order of sch's keys, as FerretDB's sjson.Unmarshal builds it.
func appendSJSONDocument(b []byte, sch *sjsonSchema, fields map[string]json.RawMessage) ([]byte, error) {
	if len(fields) == 0 {
		return bsoncore.BuildDocument(b, nil), nil
	}
	if sch == nil || len(sch.Keys) != len(fields) {
		return nil, errSJSON
	}
	idx, b := bsoncore.ReserveLength(b)
	for _, k := range sch.Keys {
		v, ok := fields[k]
		if !ok {
			return nil, errSJSON
		}
		var err error
		if b, err = appendSJSONValue(b, k, sch.Properties[k], v); err != nil {
			return nil, err
		}
	}
	b = append(b, 0)
	return bsoncore.UpdateLength(b, idx, int32(len(b)-int(idx))), nil
}

// appendSJSONValue appends the element key: v, of schema elem.
func appendSJSONValue(b []byte, key string, elem *sjsonElem, v json.RawMessage) ([]byte, error) {
	if string(v) == "null" { // whatever the schema says, as FerretDB reads it
		return bsoncore.AppendNullElement(b, key), nil
	}
	if elem == nil {
		return nil, errSJSON
	}
	switch elem.Type {
	case "object":
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(v, &fields); err != nil {
			return nil, errSJSON
		}
		d, err := appendSJSONDocument(nil, elem.Schema, fields)
		if err != nil {
			return nil, err
		}
		return bsoncore.AppendDocumentElement(b, key, d), nil
	case "array":
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil || len(items) != len(elem.Items) {
			return nil, errSJSON
		}
		idx, b := bsoncore.AppendArrayElementStart(b, key)
		for i, it := range items {
			var err error
			if b, err = appendSJSONValue(b, strconv.Itoa(i), elem.Items[i], it); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(b, idx)
	case "string":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendStringElement(b, key, s), nil
	case "double":
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendDoubleElement(b, key, f), nil
	case "int":
		var i int32
		if err := json.Unmarshal(v, &i); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendInt32Element(b, key, i), nil
	case "long":
		var i int64
		if err := json.Unmarshal(v, &i); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendInt64Element(b, key, i), nil
	case "bool":
		var t bool
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendBooleanElement(b, key, t), nil
	case "date":
		var ms int64
		if err := json.Unmarshal(v, &ms); err != nil {
			return nil, errSJSON
		}
		return bsoncore.AppendDateTimeElement(b, key, ms), nil
	case "objectId":
		var h string
		if err := json.Unmarshal(v, &h); err != nil {
			return nil, errSJSON
		}
		oid, ok := objectIDHex(h)
		if !ok {
			return nil, errSJSON
		}
		return bsoncore.AppendObjectIDElement(b, key, oid), nil
	}
	return nil, errSJSON // binData, regex, timestamp, null with a value: FerretDB's
}
