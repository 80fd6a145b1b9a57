package ferretembed

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Reads by a field that FerretDB cannot index.
//
// FerretDB v1.24's SQLite backend puts a WHERE clause in its SQL only for a
// filter that is exactly {_id: <string|ObjectId>} (backends/sqlite
// collection.go, Query and Explain); for any other filter it reads and
// decodes every document of the collection and filters in Go, whatever
// indexes exist. A query for the few active jobs among 100,000 finished ones
// decodes all 100,000. MatchingIDs answers such a filter from SQLite
// expression indexes of its own on the same file, and returns only the
// _ids: the caller reads each document by _id, which FerretDB does look up
// by index (EnsureIDIndex).

// FieldCond is one condition on a top-level or dotted field of scalars.
type FieldCond struct {
	Path string
	// In lists the values (strings or bools) the field may have; empty:
	// the condition is Missing.
	In      []any
	Missing bool // the field is absent (or null)

	// Partial and Sparse make the index that serves the condition partial:
	// it holds only the documents whose field has one of the Partial
	// values, or (Sparse) has any value. SQLite then leaves the index alone
	// on a write to any other document, so a hot read's index costs the
	// writes of the few documents it is for (the active jobs), not every
	// write. In must be among the Partial values; Sparse excludes Missing.
	// The query carries the same terms, so SQLite knows the index covers it.
	Partial []any
	Sparse  bool

	// OnDemand marks the index of a read whose key a user's query chose
	// (a label's key: there may be as many as there are keys): a table
	// has at most MaxOnDemandIndexes of them, and a read that would make
	// one more fails with ErrIndexLimit.
	OnDemand bool
}

// MaxOnDemandIndexes is how many indexes of OnDemand conditions a table
// may have. Each costs SQLite a look at every write of the table (whether
// the document is in it) and the writes of the documents it holds.
const MaxOnDemandIndexes = 16

// ErrIndexLimit: a read asked for an OnDemand index past
// MaxOnDemandIndexes. It wraps errors.ErrUnsupported: the caller reads
// another way (a scan).
var ErrIndexLimit = fmt.Errorf("no more indexes on demand (at most %d a collection): %w", MaxOnDemandIndexes, errors.ErrUnsupported)

// MatchingIDs returns the _ids of the documents of db.coll that meet every
// condition of where. where[0] must be an In condition: with the In and
// Missing conditions after it, it is the key of an SQLite expression index
// made on first use, so SQLite reads only the index entries that match and
// never the other documents. residual conditions are checked on those rows
// only (they are not part of the index).
//
// Null and absent are the same here, and a bool matches true/false only;
// callers check the documents they read against their filter anyway (a
// document may change between this read and theirs).
func (s *Server) MatchingIDs(ctx context.Context, db, coll string, where, residual []FieldCond) ([]string, error) {
	got, err := s.matchingIDs(ctx, db, coll, where, residual, "", 0)
	ids := make([]string, len(got))
	for i, o := range got {
		ids[i] = o.id
	}
	return ids, err
}

// MatchingVersions is MatchingIDs with each match's value of the numeric
// or date (Unix milliseconds) field versionPath (NoValue where it has
// none), read from the same rows: a caller that holds documents at known
// versions (the scheduler's resync) then reads only those whose version
// moved.
func (s *Server) MatchingVersions(ctx context.Context, db, coll string, where, residual []FieldCond, versionPath string) ([]string, []int64, error) {
	if !fieldPath.MatchString(versionPath) {
		return nil, nil, fmt.Errorf("matching versions in %s.%s: unsupported version path %q", db, coll, versionPath)
	}
	got, err := s.matchingIDs(ctx, db, coll, where, residual, versionPath, 0)
	ids := make([]string, len(got))
	versions := make([]int64, len(got))
	for i, o := range got {
		ids[i], versions[i] = o.id, NoValue
		if o.valid {
			versions[i] = int64(o.key)
		}
	}
	return ids, versions, err
}

// NoValue is MatchingVersions' value of a match that has none (absent or
// null): no value a field holds, a negative one included. Until lookup
// version 6 it was -1.
const NoValue = math.MinInt64

// LatestIDs is MatchingIDs for at most limit documents, those with the
// greatest values of the field orderPath (a date or a number): the index is
// on where's paths then orderPath, so SQLite reads only the matching entries.
func (s *Server) LatestIDs(ctx context.Context, db, coll string, where []FieldCond, orderPath string, limit int) ([]string, error) {
	if !fieldPath.MatchString(orderPath) || limit <= 0 {
		return nil, fmt.Errorf("latest ids in %s.%s: order by %q, limit %d", db, coll, orderPath, limit)
	}
	// One query per combination of values: with equalities only, SQLite
	// reads the index in orderPath's order and stops after limit entries;
	// with a list of values it would read and sort every match.
	var all []ordered
	for _, w := range combinations(where) {
		got, err := s.matchingIDs(ctx, db, coll, w, nil, orderPath, limit)
		if err != nil {
			return nil, err
		}
		all = append(all, got...)
	}
	slices.SortFunc(all, func(a, b ordered) int { return cmp.Compare(b.key, a.key) })
	ids := make([]string, 0, min(limit, len(all)))
	for _, o := range all[:min(limit, len(all))] {
		ids = append(ids, o.id)
	}
	return ids, nil
}

// ordered is an _id with the value it is ordered by (or asked for).
type ordered struct {
	id    string
	key   float64
	valid bool // key is not NULL
}

// combinations expands the In conditions of where with several values into
// one where per combination of single values.
func combinations(where []FieldCond) [][]FieldCond {
	out := [][]FieldCond{nil}
	for _, c := range where {
		vals := c.In
		if len(vals) == 0 {
			vals = []any{nil}
		}
		var next [][]FieldCond
		for _, w := range out {
			for _, v := range vals {
				d := c
				if v != nil {
					d.In = []any{v}
				}
				next = append(next, append(append([]FieldCond(nil), w...), d))
			}
		}
		out = next
	}
	return out
}

// matchingIDs reads the _ids of the matches with the value of field with
// (if not empty). With limit > 0 the index has with after where's paths and
// only the limit matches of greatest with are read.
//
// ctx bounds the caller's wait, never the SQL: a modernc.org/sqlite query
// interrupted by its context may leave its pooled connection inside its
// read transaction, so that every later lookup on it sees the database as
// it was then, and the interrupt may fail the next statement on it
// (maxtime.go; TestMatchingIDsUnharmedByCancelledLookups). Callers do
// cancel: the scheduler's and the launcher's deadlines, a client of
// wirelookup.go that goes away (a service killed or cut off). So the query
// runs on without ctx, and a lookup its caller gave up on finishes in the
// background and gives its connection back then. A lookup starts only
// once one of fieldConns slots is free (a caller may give up while it
// waits), so lookups given up on cannot pile up behind the pool's
// connections. The queries read an index; an index build is bounded by
// indexBuildTimeout.
func (s *Server) matchingIDs(ctx context.Context, db, coll string, where, residual []FieldCond, with string, limit int) ([]ordered, error) {
	return inFieldSlot(ctx, s, func(ctx context.Context) ([]ordered, error) {
		return s.matchingIDsSQL(ctx, db, coll, where, residual, with, limit)
	})
}

// inFieldSlot runs query, a read of the Server's own connections
// (fieldDB), once one of fieldConns slots is free, on a context that is
// never cancelled; the caller waits for it until ctx ends (matchingIDs).
func inFieldSlot[T any](ctx context.Context, s *Server, query func(context.Context) (T, error)) (T, error) {
	var zero T
	select {
	case s.fieldSlots <- struct{}{}:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-s.fieldSlots }()
		v, err := query(context.WithoutCancel(ctx))
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// matchingIDsSQL is matchingIDs' work, on a context that is never cancelled.
func (s *Server) matchingIDsSQL(ctx context.Context, db, coll string, where, residual []FieldCond, with string, limit int) ([]ordered, error) {
	if len(where) == 0 || len(where[0].In) == 0 {
		return nil, fmt.Errorf("matching ids in %s.%s: the first condition must list values", db, coll)
	}
	for _, c := range append(append([]FieldCond(nil), where...), residual...) {
		if !condPath.MatchString(c.Path) {
			return nil, fmt.Errorf("matching ids in %s.%s: unsupported path %q", db, coll, c.Path)
		}
	}
	if err := checkPartial(where, residual); err != nil {
		return nil, fmt.Errorf("matching ids in %s.%s: %w", db, coll, err)
	}
	sdb, table, err := s.fieldTable(ctx, db, coll)
	if err != nil || table == "" {
		return nil, err // table "": nothing matches
	}
	key := where
	if limit > 0 {
		key = append(append([]FieldCond(nil), where...), FieldCond{Path: with})
	}
	if err := s.ensureFieldIndex(ctx, sdb, table, key); err != nil {
		return nil, err
	}
	q, args, err := matchSQL(table, where, residual)
	if err != nil {
		return nil, fmt.Errorf("matching ids in %s.%s: %w", db, coll, err)
	}
	if with != "" {
		q = strings.Replace(q, " FROM ", ", "+fieldExpr(with)+" FROM ", 1)
	} else {
		q = strings.Replace(q, " FROM ", ", 0 FROM ", 1)
	}
	if limit > 0 {
		q += fmt.Sprintf(" ORDER BY %s DESC LIMIT %d", fieldExpr(with), limit)
	}
	rows, err := sdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("matching ids in %s.%s: %w", db, coll, err)
	}
	defer rows.Close()
	var ids []ordered
	for rows.Next() {
		var id sql.NullString
		var key sql.NullFloat64
		if err := rows.Scan(&id, &key); err != nil {
			return nil, fmt.Errorf("matching ids in %s.%s: %w", db, coll, err)
		}
		if id.Valid {
			ids = append(ids, ordered{id.String, key.Float64, key.Valid})
		}
	}
	return ids, rows.Err()
}

// fieldTable returns the Server's connections to db (fieldDB) and the
// table of collection coll; table "" (and no error) when the database or
// the collection does not exist yet, which holds no documents.
func (s *Server) fieldTable(ctx context.Context, db, coll string) (sdb *sql.DB, table string, err error) {
	if _, err := os.Stat(filepath.Join(s.dir, db+sqliteFileExt)); errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if sdb, err = s.fieldDB(db); err != nil {
		return nil, "", err
	}
	table, err = tableName(ctx, sdb, coll)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil
	}
	return sdb, table, err
}

// fieldPath: the paths MatchingIDs puts into SQL as they are (no quoting
// needed).
var fieldPath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// condPath: the paths of conditions. Past the first, a segment may also
// hold the characters of a label's stored key (events.LabelField:
// labels.example%2Ecom/team), which fieldExpr quotes; none of them needs
// escaping in SQL or in a JSON path.
var condPath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_%/-]+)*$`)

// plainSegment is a segment of a JSON path that needs no quotes.
var plainSegment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// fieldExpr is the SQL of a field's value in FerretDB's sjson column: a
// string as text, a bool as 1 or 0, absent or null as NULL. The index and
// the query use the same text, as SQLite requires. path is a condPath.
func fieldExpr(path string) string {
	if !fieldPath.MatchString(path) {
		segs := strings.Split(path, ".")
		for i, seg := range segs {
			if i > 0 && !plainSegment.MatchString(seg) {
				segs[i] = `"` + seg + `"`
			}
		}
		path = strings.Join(segs, ".")
	}
	return `_ferretdb_sjson->>'$.` + path + `'`
}

// matchSQL is the query of MatchingIDs: the In conditions as IN lists, the
// Missing ones as IS NULL, and the terms of where's partial index as they
// are in the index (partialSQL), which SQLite needs to see to use it.
func matchSQL(table string, where, residual []FieldCond) (string, []any, error) {
	var terms []string
	var args []any
	for _, c := range append(append([]FieldCond(nil), where...), residual...) {
		if len(c.In) == 0 {
			terms = append(terms, fieldExpr(c.Path)+" IS NULL")
			continue
		}
		terms = append(terms, fieldExpr(c.Path)+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(c.In)), ",")+")")
		for _, v := range c.In {
			if b, ok := v.(bool); ok {
				v = 0
				if b {
					v = 1
				}
			}
			args = append(args, v)
		}
	}
	partial, err := partialSQL(where)
	if err != nil {
		return "", nil, err
	}
	if partial != "" {
		terms = append(terms, partial)
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s", fieldExpr("_id"), quoteIdent(table), strings.Join(terms, " AND ")), args, nil
}

// checkPartial refuses a condition whose values its partial index would
// not hold (its matches would be missed), and Partial or Sparse on a
// residual condition (no index serves it).
func checkPartial(where, residual []FieldCond) error {
	for _, c := range residual {
		if len(c.Partial) > 0 || c.Sparse {
			return fmt.Errorf("%s: a residual condition has no index to make partial", c.Path)
		}
	}
	for _, c := range where {
		switch {
		case c.Sparse && len(c.Partial) > 0:
			return fmt.Errorf("%s: both Sparse and Partial", c.Path)
		case c.Sparse && len(c.In) == 0:
			return fmt.Errorf("%s: a Sparse index holds no document missing the field", c.Path)
		case len(c.Partial) > 0 && len(c.In) == 0:
			return fmt.Errorf("%s: a Partial index holds no document missing the field", c.Path)
		}
		for _, v := range c.In {
			if len(c.Partial) > 0 && !slices.Contains(c.Partial, v) {
				return fmt.Errorf("%s: %v is not among the partial index's values %v", c.Path, v, c.Partial)
			}
		}
	}
	return nil
}

// partialSQL is the WHERE of the partial index of key ("" for a full one),
// with its values as literals: an index's WHERE cannot take parameters.
func partialSQL(key []FieldCond) (string, error) {
	var terms []string
	for _, c := range key {
		if c.Sparse {
			terms = append(terms, fieldExpr(c.Path)+" IS NOT NULL")
		}
		if len(c.Partial) == 0 {
			continue
		}
		lits := make([]string, len(c.Partial))
		for i, v := range c.Partial {
			switch v := v.(type) {
			case string:
				lits[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
			case bool:
				lits[i] = map[bool]string{false: "0", true: "1"}[v]
			default:
				return "", fmt.Errorf("%s: partial index value %v is not a string or bool", c.Path, v)
			}
		}
		terms = append(terms, fieldExpr(c.Path)+" IN ("+strings.Join(lits, ", ")+")")
	}
	return strings.Join(terms, " AND "), nil
}

// ensureFieldIndex makes the index on where's paths, once per table and
// key. A new index on a big table is built once (seconds for 100,000 jobs);
// afterwards SQLite keeps it up to date with every write FerretDB makes:
// each write rewrites the sjson column, so every full index of the table
// is written again, whatever field changed, and a partial one whenever the
// document is in it before or after the write
// (BenchmarkSQLiteUpdateWithFieldIndexes: 1.4 WAL pages per write without,
// 9.3 with the services' seven full ones). An index is never dropped
// (but those of before partial indexes, dropStaleFieldIndexes), so a key no
// longer asked for keeps costing.
func (s *Server) ensureFieldIndex(ctx context.Context, sdb *sql.DB, table string, where []FieldCond) error {
	var exprs, names []string
	onDemand := false
	for _, c := range where {
		exprs = append(exprs, fieldExpr(c.Path))
		names = append(names, strings.ReplaceAll(c.Path, ".", "_"))
		onDemand = onDemand || c.OnDemand
	}
	prefix := fieldIndexPrefix + table + "_"
	if onDemand {
		prefix += onDemandMarker
	}
	name := prefix + strings.Join(names, "_")
	partial, err := partialSQL(where)
	if err != nil {
		return err
	}
	if partial != "" { // one index per key and partial WHERE
		h := fnv.New32a()
		h.Write([]byte(partial))
		name += fmt.Sprintf("_p%08x", h.Sum32())
		partial = " WHERE " + partial
	}
	s.fieldMu.Lock()
	defer s.fieldMu.Unlock()
	if s.fieldIndexes[name] {
		return nil
	}
	if onDemand {
		if err := checkOnDemandRoom(ctx, sdb, table, prefix, name); err != nil {
			return err
		}
	}
	q := fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)%s", quoteIdent(name), quoteIdent(table), strings.Join(exprs, ", "), partial)
	// Not bounded by the caller's deadline: building an index on a big
	// table takes longer than a read may wait (the scheduler's 2 s), and a
	// build cut short is lost and holds SQLite's write lock (FerretDB's
	// writes wait) each time it is tried again. It is built once, whole.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), indexBuildTimeout)
	defer cancel()
	if _, err := sdb.ExecContext(bctx, q); err != nil {
		return fmt.Errorf("create index %s: %w", name, err)
	}
	if s.fieldIndexes == nil {
		s.fieldIndexes = map[string]bool{}
	}
	s.fieldIndexes[name] = true
	return nil
}

// onDemandMarker follows the table's name in the names of the indexes of
// OnDemand conditions.
const onDemandMarker = "od_"

// checkOnDemandRoom fails with ErrIndexLimit when table has
// MaxOnDemandIndexes indexes named with prefix (of OnDemand conditions)
// and none of them is name.
func checkOnDemandRoom(ctx context.Context, sdb *sql.DB, table, prefix, name string) error {
	var n, have int
	err := sdb.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(name = ?), 0) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND substr(name, 1, ?) = ?",
		name, table, len(prefix), prefix).Scan(&n, &have)
	if err != nil {
		return fmt.Errorf("count the indexes on demand of %s: %w", table, err)
	}
	if have == 0 && n >= MaxOnDemandIndexes {
		return fmt.Errorf("index %s: %w", name, ErrIndexLimit)
	}
	return nil
}

// indexBuildTimeout bounds the build of one index.
const indexBuildTimeout = 10 * time.Minute

// fieldIndexPrefix starts the names of MatchingIDs' indexes.
const fieldIndexPrefix = "avxrm_ix_"

// staleFieldIndexPrefix started their names before they could be partial
// (until 2026-11-30): full indexes no read asks for any more, which cost
// every write. dropStaleFieldIndexes drops them.
const staleFieldIndexPrefix = "avxrm_field_"

// dropStaleFieldIndexes drops the indexes named with staleFieldIndexPrefix
// from db's file, once per process when MatchingIDs first opens it.
func dropStaleFieldIndexes(ctx context.Context, sdb *sql.DB) error {
	stale, err := indexNames(ctx, sdb, staleFieldIndexPrefix)
	if err != nil {
		return fmt.Errorf("list stale indexes: %w", err)
	}
	for _, name := range stale {
		if _, err := sdb.ExecContext(ctx, "DROP INDEX IF EXISTS "+quoteIdent(name)); err != nil {
			return fmt.Errorf("drop stale index %s: %w", name, err)
		}
	}
	return nil
}

// FieldIndexes lists the indexes MatchingIDs and LatestIDs made in db's
// file (their names: avxrm_ix_<table>_<paths>[_p<hash>]), sorted.
func (s *Server) FieldIndexes(ctx context.Context, db string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(s.dir, db+sqliteFileExt)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	sdb, err := s.fieldDB(db)
	if err != nil {
		return nil, err
	}
	names, err := indexNames(ctx, sdb, fieldIndexPrefix)
	if err != nil {
		return nil, fmt.Errorf("list field indexes of %s: %w", db, err)
	}
	return names, nil
}

// indexNames lists the indexes of sdb whose names start with prefix, sorted.
func indexNames(ctx context.Context, sdb *sql.DB, prefix string) ([]string, error) {
	rows, err := sdb.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE ? ORDER BY name", prefix+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// fieldDB is the SQLite connection pool of MatchingIDs for db, opened once
// and closed with the server. Reads run beside FerretDB's (WAL).
func (s *Server) fieldDB(db string) (*sql.DB, error) {
	return s.conns(&s.fieldDBs, db, func(sdb *sql.DB) error {
		sdb.SetMaxOpenConns(fieldConns)
		return dropStaleFieldIndexes(context.Background(), sdb)
	})
}

// fieldConns is how many connections per database MatchingIDs' lookups
// use, and how many lookups run at once.
const fieldConns = 4

// fieldState is the Server's part for MatchingIDs.
type fieldState struct {
	fieldSlots   chan struct{} // a token per lookup running (matchingIDs), fieldConns of them
	fieldDBs     sqliteConns
	fieldMu      sync.Mutex // guards fieldIndexes
	fieldIndexes map[string]bool
}
