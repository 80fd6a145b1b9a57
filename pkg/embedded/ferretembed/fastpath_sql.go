package ferretembed

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The fast path's lookup, in SQL.
//
// The fast path (fastpath.go) needs only the fields its conditions name, but
// a find through FerretDB decodes the whole stored document (sjson, with a
// leak-tracker entry for every nested value), about 0.5 ms for a job, and it
// runs while the write lock is held, three times per job. So the proxy reads
// those fields itself from FerretDB's SQLite file, by the _id index that
// EnsureIDIndex made (INDEXED BY: without that index the query fails instead
// of scanning), each with its type from the document's sjson schema, and
// builds a document of them for the same evaluation (fastWrite.matches).
//
// Whenever this cannot say, because the collection has no such index, a
// field or a stored type is outside what it converts, or no row has the _id,
// the fast path falls back to the find through FerretDB: a wrong "no such
// document" here would let a conditional write through unconditioned, so a
// miss is never trusted. A row found is the document: the _id is compared as
// FerretDB compares it, on the same expression with the same JSON text.
//
// The lookups have a connection of their own and are never cancelled: a
// modernc.org/sqlite v1.32 connection whose query was interrupted by its
// context could keep its read transaction open for good and serve old data
// from then on (docs/scheduling.md, "TestFerretDBReadsStayFreshWhenQueriesTimeOut";
// v1.62 does not), and an old version judged here would be a lost update. The pools of
// MatchingIDs, whose callers' deadlines do cancel queries, are not used.

// sjsonTypePath is where FerretDB v1.24's sjson keeps the type of a
// top-level field in a stored document: its schema "$s", then
// "p".<field>."t" (internal/handler/sjson/schema.go).
const sjsonTypePath = `$."$s".p.%s.t`

// sqlFieldLookups is the Server's part for the lookups: a connection per
// database, the tables found, and how many lookups SQLite answered and how
// many fell back to FerretDB's find.
type sqlFieldLookups struct {
	dbs    sqliteConns // one connection each (openSQLite's)
	mu     sync.Mutex
	tables map[string]string // db + "\x00" + collection → SQLite table
	// indexed: the tables writeTable has given their _id index, by the
	// same key (guarded by mu).
	indexed map[string]bool

	answered, fellBack atomic.Int64
	off                bool // tests: every lookup goes to FerretDB's find

	// The direct replacements and inserts (fastpath_direct.go): the
	// statements prepared and the tables known to be plain (both guarded
	// by mu), how many were written, left to FerretDB as outside the
	// encoding, or failed in SQLite.
	stmts                                   map[string]*sql.Stmt
	pinned                                  map[string]*sql.Conn // groupcommit.go's, one per database
	plain                                   map[string]bool
	reads                                   sqliteConns // finddirect.go's connections
	findDirect, findFellBack                atomic.Int64
	direct, directUnsupported, directFailed atomic.Int64
	directOff                               atomic.Bool // tests: replacements, inserts and finds go to FerretDB
	missAll                                 atomic.Bool // tests: every lookup finds no row, as a wrong miss would
}

// lookupFields returns a document holding the fields of w's conditions as
// stored in the document with w's _id, or nil when it cannot say (see
// above), in which case the caller asks FerretDB. noRow says that the
// table has no row with the _id: a miss, not to be trusted on its own.
func (s *Server) lookupFields(w *fastWrite) (doc bsoncore.Document, noRow bool) {
	if s.sqlLookups.off {
		return nil, false
	}
	doc, err := s.readFields(context.Background(), w) // never cancelled: see above
	if err != nil || doc == nil {
		s.sqlLookups.fellBack.Add(1)
		return nil, errors.Is(err, errNoRow)
	}
	s.sqlLookups.answered.Add(1)
	return doc, false
}

// errNoRow: the lookup's table has no row with the _id.
var errNoRow = errors.New("ferretembed: no row with the _id")

func (s *Server) readFields(ctx context.Context, w *fastWrite) (bsoncore.Document, error) {
	if w.id.Type != bsoncore.TypeString {
		return nil, errFastPathUnsupported
	}
	sdb, err := s.directConn(w.db) // inside the open transaction, if any (groupcommit.go)
	if err != nil {
		return nil, err
	}
	table, err := s.writeTable(ctx, sdb, w.db, w.coll)
	if err != nil {
		return nil, err
	}
	cols := make([]string, 0, 2*len(w.conds))
	if len(w.conds) == 0 {
		cols = append(cols, "1") // the row's existence is all there is to read
	}
	for _, c := range w.conds {
		path, ok := jsonPathKey(c.field)
		if !ok || strings.Contains(c.field, ".") {
			// A path into embedded documents: the types on its way are
			// in the sjson schema's nested levels, which this does not
			// read; FerretDB's find gives the document.
			return nil, errFastPathUnsupported
		}
		cols = append(cols, fmt.Sprintf("_ferretdb_sjson->>'"+sjsonTypePath+"'", path), "_ferretdb_sjson->>'$."+path+"'")
	}
	// The _id as FerretDB passes it for its own {_id: <string>} filters:
	// the JSON text of the string, compared with idExpr.
	id, err := json.Marshal(w.id.StringValue())
	if err != nil {
		return nil, errFastPathUnsupported
	}
	q := fmt.Sprintf("SELECT %s FROM %s INDEXED BY %s WHERE %s = ?",
		strings.Join(cols, ", "), quoteIdent(table), quoteIdent(idIndexName(table)), idExpr)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if s.sqlLookups.missAll.Load() {
		return nil, errNoRow
	}
	lookup, err := s.stmt(ctx, w.db, sdb, q) // compiled once: the same few queries, on every conditional write
	if err != nil {
		s.forgetTable(w.db, w.coll)
		return nil, err
	}
	if err := lookup.QueryRowContext(ctx, string(id)).Scan(ptrs...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errNoRow // not trusted: the caller asks FerretDB
		}
		s.forgetTable(w.db, w.coll) // it may have been dropped and made again
		return nil, err
	}
	var b []byte
	for i, c := range w.conds {
		b, err = appendStored(b, c.field, vals[2*i], vals[2*i+1])
		if err != nil {
			return nil, err
		}
	}
	return bsoncore.BuildDocument(nil, b), nil
}

// appendStored appends field as stored: typ is its sjson type (nil: the
// field is missing), v its value as SQLite's ->> gives it. A type outside
// the fast path's scalars is appended as an empty document, which the
// evaluation refuses (so the write goes to FerretDB unchanged); a value
// that does not fit its type is an error.
func appendStored(b []byte, field string, typ, v any) ([]byte, error) {
	if typ == nil {
		return b, nil
	}
	t, ok := typ.(string)
	if !ok {
		return nil, fmt.Errorf("field %q: sjson type %v", field, typ)
	}
	bad := fmt.Errorf("field %q: %T value %v for sjson type %s", field, v, v, t)
	switch t {
	case "string":
		s, ok := v.(string)
		if !ok {
			return nil, bad
		}
		return bsoncore.AppendStringElement(b, field, s), nil
	case "bool":
		i, ok := v.(int64)
		if !ok || (i != 0 && i != 1) {
			return nil, bad
		}
		return bsoncore.AppendBooleanElement(b, field, i == 1), nil
	case "int":
		i, ok := v.(int64)
		if !ok || i < math.MinInt32 || i > math.MaxInt32 {
			return nil, bad
		}
		return bsoncore.AppendInt32Element(b, field, int32(i)), nil
	case "long":
		i, ok := v.(int64)
		if !ok {
			return nil, bad
		}
		return bsoncore.AppendInt64Element(b, field, i), nil
	case "double":
		switch f := v.(type) {
		case float64:
			return bsoncore.AppendDoubleElement(b, field, f), nil
		case int64: // a whole number is stored without a fraction
			if f > maxExactFloatInt || f < -maxExactFloatInt {
				return nil, bad
			}
			return bsoncore.AppendDoubleElement(b, field, float64(f)), nil
		}
		return nil, bad
	case "null":
		if v != nil {
			return nil, bad
		}
		return bsoncore.AppendNullElement(b, field), nil
	case "date": // milliseconds since the epoch
		i, ok := v.(int64)
		if !ok {
			return nil, bad
		}
		return bsoncore.AppendDateTimeElement(b, field, i), nil
	case "objectId":
		s, _ := v.(string)
		oid, ok := objectIDHex(s)
		if !ok {
			return nil, bad
		}
		return bsoncore.AppendObjectIDElement(b, field, oid), nil
	}
	return bsoncore.AppendDocumentElement(b, field, bsoncore.BuildDocument(nil, nil)), nil
}

// objectIDHex is the ObjectID sjson stores as 24 hexadecimal digits.
func objectIDHex(h string) (oid [12]byte, ok bool) {
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != 12 {
		return oid, false
	}
	copy(oid[:], raw)
	return oid, true
}

// jsonPathKey quotes a top-level field name for an SQLite JSON path, or
// reports that it cannot be (the fast path already refuses "." and "$", so
// no field is sjson's own "$s").
func jsonPathKey(field string) (string, bool) {
	if strings.ContainsAny(field, "\"\\'") {
		return "", false
	}
	for _, r := range field {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	return `"` + field + `"`, true
}

// table returns, remembered, the SQLite table of db.coll.
func (s *Server) table(ctx context.Context, sdb sqlQuerier, db, coll string) (string, error) {
	key := db + "\x00" + coll
	s.sqlLookups.mu.Lock()
	t, ok := s.sqlLookups.tables[key]
	s.sqlLookups.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := tableName(ctx, sdb, coll)
	if err != nil {
		return "", err
	}
	remember(&s.sqlLookups, &s.sqlLookups.tables, key, t)
	return t, nil
}

// remember sets (*m)[key] to v under l.mu, making the map on first use.
func remember[V any](l *sqlFieldLookups, m *map[string]V, key string, v V) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if *m == nil {
		*m = map[string]V{}
	}
	(*m)[key] = v
}

// writeTable is table for the write path, under the write lock: the first
// time it names a table it also gives it the _id index that the direct
// statements name (INDEXED BY), as EnsureIDIndex does at the start. A
// collection made later has none until then: FerretDB makes one on its first
// insert or upsert (the scheduler's start estimates, a big job's instance
// chunks), and every write and find of it went to FerretDB, the estimates
// for some 800 jobs holding the write lock up to 69 ms (docs/benchmarks.md,
// "The 1,000-job load's hand-over tail"). The index is made in the open
// transaction of the direct writes (groupcommit.go), so it is durable with
// them; one that did not commit fails the next lookup, which forgets the
// table, and the next write makes it again.
func (s *Server) writeTable(ctx context.Context, sdb sqlQuerier, db, coll string) (string, error) {
	t, err := s.table(ctx, sdb, db, coll)
	if err != nil {
		return "", err
	}
	key := db + "\x00" + coll
	s.sqlLookups.mu.Lock()
	done := s.sqlLookups.indexed[key]
	s.sqlLookups.mu.Unlock()
	if done {
		return t, nil
	}
	if _, err := sdb.ExecContext(ctx, createIDIndexSQL(t)); err != nil {
		return "", fmt.Errorf("create the _id index of %s: %w", t, err)
	}
	remember(&s.sqlLookups, &s.sqlLookups.indexed, key, true)
	return t, nil
}

// sqlQuerier is a pool (*sql.DB) or one connection of it (*sql.Conn).
type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func (s *Server) forgetTable(db, coll string) {
	s.sqlLookups.mu.Lock()
	delete(s.sqlLookups.tables, db+"\x00"+coll)
	delete(s.sqlLookups.indexed, db+"\x00"+coll)
	s.sqlLookups.mu.Unlock()
}
