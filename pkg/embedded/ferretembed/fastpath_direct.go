package ferretembed

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The fast path's replacements and inserts, in SQL.
//
// A conditional replacement by _id ({_id: X, version: 7} → a whole new
// document), the services' one write of a job, costs FerretDB v1.24 about
// 1.6 ms of the write lock: it finds the row, decodes the stored document,
// compares it with the new one, encodes the new one as sjson and runs an
// UPDATE that SQLite compiles anew. Once the fast path has read the fields
// the conditions name and found them to hold (fastpath_sql.go), none of that
// is needed but the encoding and the UPDATE: the proxy encodes the
// replacement as FerretDB's sjson itself and runs the UPDATE on its lookup
// connection. The whole write then holds the lock about
// 0.6 ms (BenchmarkDirect, a job's shape: 0.56 against 1.58 ms).
//
// The stored row must be what FerretDB would have stored, byte for byte:
// the document FerretDB makes of a replacement (processReplacementDoc:
// the stored _id first, then the replacement's fields in order) validated
// as FerretDB validates it (types.Document.ValidateData) and encoded as its
// sjson.Marshal does. TestDirectReplaceMatchesFerretDB writes the same
// documents both ways and compares the rows. Whatever this encoding does not
// cover (types other than documents, arrays, strings, doubles, 32- and
// 64-bit integers, booleans, dates, nulls and ObjectIds; keys JSON would
// escape or FerretDB refuses; nested arrays; -0, NaN and infinities; a
// replacement _id other than the filter's) goes to FerretDB as before.
//
// Durability is FerretDB's: the proxy's connection opens the same file with
// SQLite's default synchronous=FULL in WAL mode (checked by the test), and
// the proxy replies only after the commit of the transaction holding the
// statement is fsync'd, as FerretDB's own transaction is. That transaction
// may hold other clients' direct writes too (groupcommit.go).
//
// An insert of one document with a string _id into a collection that
// exists (the API's submission of a job, an event's document) is written
// the same way: FerretDB's own insert spends about 0.8 ms of the lock on
// converting, validating and encoding the document and on an INSERT
// compiled anew (0.4 ms direct, BenchmarkDirect); the proxy encodes the document FerretDB would store (_id
// moved first, as ValidateData does) and runs one INSERT. A
// failed INSERT (a duplicate _id or unique key) inserted nothing; FerretDB
// then gets the command and gives its own write error.
//
// One deliberate difference: FerretDB leaves a document alone, and reports
// nModified 0, when the replacement compares equal to it by its own
// comparison, under which 1 (int32), 1 (int64) and 1.0 are equal; the
// direct path does so only when the encodings are equal, which is what
// MongoDB, the production store, does (it compares the stored bytes).

// errDirectUnsupported: the replacement is outside what the direct path encodes.
var errDirectUnsupported = errors.New("outside the direct replacement's subset")

// replaceDirect writes w's replacement itself and returns FerretDB's reply
// to it, or nil when it did not write (the caller forwards the command).
// It runs under the write lock, after w's conditions held on the row with
// w's _id (lookupFields found it).
func (s *Server) replaceDirect(w *fastWrite) []byte {
	if !s.directOn() || w.replacement == nil {
		return nil
	}
	enc, err := encodeReplacement(w.id, w.replacement)
	if err != nil {
		s.sqlLookups.directUnsupported.Add(1)
		return nil
	}
	modified, err := s.updateRow(context.Background(), w, enc) // never cancelled: see fastpath_sql.go
	if err != nil {
		s.sqlLookups.directFailed.Add(1)
		return nil
	}
	s.sqlLookups.direct.Add(1)
	n := int32(0)
	if modified {
		n = 1
	}
	return bsoncore.BuildDocument(nil,
		bsoncore.AppendInt32Element(nil, "n", 1),
		bsoncore.AppendInt32Element(nil, "nModified", n),
		bsoncore.AppendDoubleElement(nil, "ok", 1))
}

// upsertDirect inserts the replacement of w, an upsert (which the parser
// takes only as a replacement by the _id alone), as the document the
// upsert makes when the lookup found no row with the _id, and returns
// FerretDB's reply, or nil when it did not write (the caller goes on as
// for any miss). Only an update's: a findAndModify replies with the
// document. The lookup's miss is trusted here only because FerretDB's
// unique _id_ index checks the insert: had the lookup missed a row, the
// insert fails and FerretDB gets the command.
func (s *Server) upsertDirect(w *fastWrite) []byte {
	if !s.directOn() || w.cmd != "update" {
		return nil
	}
	enc, err := encodeReplacement(w.id, w.replacement)
	if err != nil {
		s.sqlLookups.directUnsupported.Add(1)
		return nil
	}
	if !s.insertCounted(w, enc) {
		return nil
	}
	upserted := bsoncore.BuildDocument(nil,
		bsoncore.AppendInt32Element(nil, "index", 0),
		bsoncore.AppendStringElement(nil, "_id", w.id.StringValue()))
	return bsoncore.BuildDocument(nil,
		bsoncore.AppendInt32Element(nil, "n", 1),
		bsoncore.AppendArrayElement(nil, "upserted", bsoncore.BuildArray(nil, bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: upserted})),
		bsoncore.AppendInt32Element(nil, "nModified", 0),
		bsoncore.AppendDoubleElement(nil, "ok", 1))
}

// insertDirect writes w's document itself and returns FerretDB's reply to
// it, or nil when it did not write (the caller forwards the command).
func (s *Server) insertDirect(w *fastWrite) []byte {
	if !s.directOn() || w.inserted == nil {
		return nil
	}
	els, err := w.inserted.Elements()
	if err != nil {
		return nil
	}
	id, fields := splitID(els)
	if id.Type != bsoncore.TypeString { // none (FerretDB makes one), or not a string
		s.sqlLookups.directUnsupported.Add(1)
		return nil
	}
	enc, err := encodeDocument(id, fields)
	if err != nil {
		s.sqlLookups.directUnsupported.Add(1)
		return nil
	}
	if !s.insertCounted(w, enc) {
		return nil
	}
	return bsoncore.BuildDocument(nil,
		bsoncore.AppendInt32Element(nil, "n", 1),
		bsoncore.AppendDoubleElement(nil, "ok", 1))
}

// insertCounted inserts enc as insertRow does, counts how it went, and
// reports whether the row was written.
func (s *Server) insertCounted(w *fastWrite, enc []byte) bool {
	if err := s.insertRow(context.Background(), w, enc); err != nil { // never cancelled: see fastpath_sql.go
		if errors.Is(err, errDirectUnsupported) {
			s.sqlLookups.directUnsupported.Add(1)
		} else {
			s.sqlLookups.directFailed.Add(1)
		}
		return false
	}
	s.sqlLookups.direct.Add(1)
	return true
}

// insertRow inserts enc into w's collection. A collection that does not
// exist yet, or a capped one (whose rows carry a record id), is
// errDirectUnsupported: FerretDB creates the one and numbers the other.
func (s *Server) insertRow(ctx context.Context, w *fastWrite, enc []byte) error {
	sdb, err := s.directConn(w.db)
	if err != nil {
		return err
	}
	table, err := s.writeTable(ctx, sdb, w.db, w.coll)
	if err != nil {
		return errDirectUnsupported
	}
	if plain, err := s.plainTable(ctx, sdb, w.db, table); err != nil || !plain {
		return errDirectUnsupported
	}
	insert, err := s.stmt(ctx, w.db, sdb, fmt.Sprintf("INSERT INTO %s (_ferretdb_sjson) VALUES (?)", quoteIdent(table)))
	if err != nil {
		return err
	}
	if _, err := s.joinBatch(ctx, w.db); err != nil { // groupcommit.go
		return err
	}
	if _, err := insert.ExecContext(ctx, string(enc)); err != nil {
		s.forgetTable(w.db, w.coll)
		return err
	}
	s.joined()
	return nil
}

// plainTable reports whether table's rows are the sjson column alone, as
// FerretDB makes them for a collection that is not capped.
func (s *Server) plainTable(ctx context.Context, sdb sqlQuerier, db, table string) (bool, error) {
	l := &s.sqlLookups
	key := db + "\x00" + table
	l.mu.Lock()
	plain, ok := l.plain[key]
	l.mu.Unlock()
	if ok {
		return plain, nil
	}
	rows, err := sdb.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return false, err
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	plain = len(cols) == 1 && cols[0] == "_ferretdb_sjson"
	l.mu.Lock()
	if l.plain == nil {
		l.plain = map[string]bool{}
	}
	l.plain[key] = plain
	l.mu.Unlock()
	return plain, nil
}

// updateRow replaces the row of w's _id with enc unless it holds enc
// already, and reports whether it changed it. An error (a unique index
// violated, the table gone) changed nothing; the caller lets FerretDB answer.
func (s *Server) updateRow(ctx context.Context, w *fastWrite, enc []byte) (bool, error) {
	sdb, err := s.directConn(w.db)
	if err != nil {
		return false, err
	}
	table, err := s.writeTable(ctx, sdb, w.db, w.coll)
	if err != nil {
		return false, err
	}
	id, err := json.Marshal(w.id.StringValue())
	if err != nil {
		return false, err
	}
	update, err := s.stmt(ctx, w.db, sdb, fmt.Sprintf("UPDATE %s INDEXED BY %s SET _ferretdb_sjson = ? WHERE %s = ? AND _ferretdb_sjson != ?",
		quoteIdent(table), quoteIdent(idIndexName(table)), idExpr))
	if err != nil {
		return false, err
	}
	if _, err := s.joinBatch(ctx, w.db); err != nil { // groupcommit.go
		return false, err
	}
	res, err := update.ExecContext(ctx, string(enc), string(id), string(enc))
	if err != nil {
		s.forgetTable(w.db, w.coll)
		return false, err
	}
	s.joined()
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n == 1 {
		return true, nil
	}
	// Nothing changed: the row holds enc already, or (never under the write
	// lock, but then FerretDB says what happened) it is gone.
	var one int
	err = sdb.QueryRowContext(ctx, fmt.Sprintf("SELECT 1 FROM %s INDEXED BY %s WHERE %s = ?",
		quoteIdent(table), quoteIdent(idIndexName(table)), idExpr), string(id)).Scan(&one)
	if err != nil { // rare: not worth a prepared statement
		return false, fmt.Errorf("row of %s after an update that changed nothing: %w", id, err)
	}
	return false, nil
}

// stmt returns q as a statement on sdb, made the first time and kept per
// database (each has its own connection), so that SQLite compiles it once.
// modernc.org/sqlite v1.32, the version FerretDB v1.24.2 names, compiled
// the SQL again on every execution of a prepared statement too (7.6% of the
// all-in-one's CPU under the simulated load); since v1.41 a prepared
// statement keeps its compiled form, and pkg/embedded requires v1.62
// (docs/benchmarks.md, "SQLite 3.54 under FerretDB").
func (s *Server) stmt(ctx context.Context, db string, sdb sqlQuerier, q string) (*sql.Stmt, error) {
	l := &s.sqlLookups
	key := db + "\x00" + q
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.stmts[key]; st != nil {
		return st, nil
	}
	st, err := sdb.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if l.stmts == nil {
		l.stmts = map[string]*sql.Stmt{}
	}
	l.stmts[key] = st
	return st, nil
}

// encodeReplacement returns the sjson FerretDB v1.24 stores for the document
// a replacement repl makes of the stored document with _id id: id first,
// then repl's other fields in order.
func encodeReplacement(id bsoncore.Value, repl bsoncore.Document) ([]byte, error) {
	els, err := repl.Elements()
	if err != nil {
		return nil, errDirectUnsupported
	}
	if id.Type != bsoncore.TypeString {
		return nil, errDirectUnsupported
	}
	own, fields := splitID(els)
	if own.Type != 0 && (own.Type != bsoncore.TypeString || own.StringValue() != id.StringValue()) {
		return nil, errDirectUnsupported // FerretDB refuses a changed _id; let it say so
	}
	return encodeDocument(id, fields)
}

// splitID returns the value of the first _id of els (Type 0 if none) and
// the other elements. A second _id stays among them, where encodeDocument
// refuses it as a duplicate key.
func splitID(els []bsoncore.Element) (bsoncore.Value, []bsoncore.Element) {
	var id bsoncore.Value
	fields := make([]bsoncore.Element, 0, len(els))
	for _, e := range els {
		if e.Key() == "_id" && id.Type == 0 {
			id = e.Value()
			continue
		}
		fields = append(fields, e)
	}
	return id, fields
}

// directOn reports whether the proxy answers in SQL at all: the look-ups in
// SQL are on and the tests have not turned the direct paths off.
func (s *Server) directOn() bool {
	return !s.sqlLookups.off && !s.sqlLookups.directOff.Load()
}

// encodeDocument encodes the top-level document {"$s":<schema>,"_id":id,
// "k":v,...}. The schema and the values are built side by side in two
// buffers, as sjson.Marshal writes them one after the other. sjson.Marshal
// writes top-level keys without JSON escaping and nested ones with it; keys
// that need escaping are refused, so the two agree.
func encodeDocument(id bsoncore.Value, fields []bsoncore.Element) ([]byte, error) {
	keys := make([]string, 0, len(fields)+1)
	keys = append(keys, "_id")
	seen := map[string]bool{"_id": true}
	for _, f := range fields {
		k := f.Key()
		if err := checkKey(k, seen); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	var schema, values []byte
	schema = append(schema, `{"p":{"_id":{"t":"string"}`...)
	values = append(values, `,"_id":`...)
	values = appendJSONString(values, id.StringValue())
	for _, f := range fields {
		var err error
		schema = append(append(append(schema, `,"`...), f.Key()...), `":`...)
		values = append(append(append(values, `,"`...), f.Key()...), `":`...)
		if schema, values, err = appendValue(schema, values, f.Value()); err != nil {
			return nil, err
		}
	}
	schema = appendKeys(append(schema, `},"$k":`...), keys)
	schema = append(schema, '}')
	out := make([]byte, 0, len(`{"$s":`)+len(schema)+len(values)+1)
	out = append(append(append(out, `{"$s":`...), schema...), values...)
	return append(out, '}'), nil
}

// appendValue appends v's schema element to schema and its value to values.
func appendValue(schema, values []byte, v bsoncore.Value) ([]byte, []byte, error) {
	switch v.Type {
	case bsoncore.TypeEmbeddedDocument:
		els, err := v.Document().Elements()
		if err != nil {
			return nil, nil, errDirectUnsupported
		}
		schema = append(schema, `{"t":"object","$s":`...)
		if len(els) == 0 {
			return append(schema, `{}}`...), append(values, `{}`...), nil
		}
		keys := make([]string, 0, len(els))
		seen := make(map[string]bool, len(els))
		schema = append(schema, `{"p":{`...)
		values = append(values, '{')
		for i, e := range els {
			k := e.Key()
			if err := checkKey(k, seen); err != nil {
				return nil, nil, err
			}
			keys = append(keys, k)
			if i > 0 {
				schema, values = append(schema, ','), append(values, ',')
			}
			schema = append(append(append(schema, '"'), k...), `":`...)
			values = append(append(append(values, '"'), k...), `":`...)
			if schema, values, err = appendValue(schema, values, e.Value()); err != nil {
				return nil, nil, err
			}
		}
		schema = appendKeys(append(schema, `},"$k":`...), keys)
		return append(schema, `}}`...), append(values, '}'), nil
	case bsoncore.TypeArray:
		items, err := v.Array().Values()
		if err != nil {
			return nil, nil, errDirectUnsupported
		}
		schema = append(schema, `{"t":"array","i":[`...)
		values = append(values, '[')
		for i, it := range items {
			if it.Type == bsoncore.TypeArray {
				return nil, nil, errDirectUnsupported // FerretDB refuses nested arrays
			}
			if i > 0 {
				schema, values = append(schema, ','), append(values, ',')
			}
			if schema, values, err = appendValue(schema, values, it); err != nil {
				return nil, nil, err
			}
		}
		return append(schema, `]}`...), append(values, ']'), nil
	case bsoncore.TypeString:
		s, ok := v.StringValueOK()
		if !ok || !utf8.ValidString(s) {
			return nil, nil, errDirectUnsupported
		}
		return append(schema, `{"t":"string"}`...), appendJSONString(values, s), nil
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		// FerretDB refuses infinities and turns -0 into 0; NaN it cannot
		// encode. All are left to it.
		if !ok || math.IsInf(f, 0) || math.IsNaN(f) || (f == 0 && math.Signbit(f)) {
			return nil, nil, errDirectUnsupported
		}
		b, err := json.Marshal(f)
		if err != nil {
			return nil, nil, errDirectUnsupported
		}
		return append(schema, `{"t":"double"}`...), append(values, b...), nil
	case bsoncore.TypeInt32:
		i, ok := v.Int32OK()
		if !ok {
			return nil, nil, errDirectUnsupported
		}
		return append(schema, `{"t":"int"}`...), strconv.AppendInt(values, int64(i), 10), nil
	case bsoncore.TypeInt64:
		i, ok := v.Int64OK()
		if !ok {
			return nil, nil, errDirectUnsupported
		}
		return append(schema, `{"t":"long"}`...), strconv.AppendInt(values, i, 10), nil
	case bsoncore.TypeBoolean:
		b, ok := v.BooleanOK()
		if !ok {
			return nil, nil, errDirectUnsupported
		}
		return append(schema, `{"t":"bool"}`...), strconv.AppendBool(values, b), nil
	case bsoncore.TypeDateTime:
		ms, ok := v.DateTimeOK()
		if !ok {
			return nil, nil, errDirectUnsupported
		}
		return append(schema, `{"t":"date"}`...), strconv.AppendInt(values, ms, 10), nil
	case bsoncore.TypeNull:
		return append(schema, `{"t":"null"}`...), append(values, `null`...), nil
	case bsoncore.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		if !ok {
			return nil, nil, errDirectUnsupported
		}
		return append(schema, `{"t":"objectId"}`...), fmt.Appendf(values, `"%x"`, oid[:]), nil
	}
	return nil, nil, errDirectUnsupported
}

// checkKey refuses a key FerretDB refuses (not UTF-8, "$" first, a ".",
// twice in one document) or that JSON would escape, and records it in seen.
func checkKey(k string, seen map[string]bool) error {
	if k == "" || strings.HasPrefix(k, "$") || strings.Contains(k, ".") || seen[k] || !plainJSON(k) {
		return errDirectUnsupported
	}
	seen[k] = true
	return nil
}

// plainJSON reports whether encoding/json writes s as itself in quotes:
// valid UTF-8, no quote, backslash, control character, HTML character
// (<, >, &) or line or paragraph separator.
func plainJSON(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := range len(s) {
		if escaped(s, i) {
			return false
		}
	}
	return true
}

// escaped reports whether encoding/json escapes the character starting at
// s[i], s being valid UTF-8: by bytes, since the only characters of more
// than one byte it escapes, U+2028 and U+2029, are E2 80 A8 and E2 80 A9.
func escaped(s string, i int) bool {
	c := s[i]
	return c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' ||
		c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9)
}

// appendJSONString appends s as encoding/json writes it (sjson's strings).
// It writes plain characters and line feeds itself, so that a long string
// of lines (the scheduler's lease ledger, a line per holder, rewritten at
// every admission) is not handed to encoding/json whole; a string with any
// other character to escape is.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		return appendMarshalled(b, s)
	}
	start := len(b)
	b = slices.Grow(b, len(s)+8)
	b = append(b, '"')
	last := 0
	for i := range len(s) {
		switch {
		case s[i] == '\n':
			b = append(append(b, s[last:i]...), '\\', 'n')
			last = i + 1
		case escaped(s, i):
			return appendMarshalled(b[:start], s)
		}
	}
	return append(append(b, s[last:]...), '"')
}

func appendMarshalled(b []byte, s string) []byte {
	enc, _ := json.Marshal(s) // a string always encodes
	return append(b, enc...)
}

// appendKeys appends keys as a JSON array (sjson's "$k"); they are plain.
func appendKeys(b []byte, keys []string) []byte {
	b = append(b, '[')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(append(b, '"'), k...), '"')
	}
	return append(b, ']')
}
