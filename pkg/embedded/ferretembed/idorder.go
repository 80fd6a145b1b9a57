package ferretembed

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// IDsAfter returns the _ids of at most limit documents of db.coll, those
// whose _id (a string) comes after after ("": from the first), in _id
// order, read from the _id index (EnsureIDIndex; without it the read fails
// rather than scan the table). A page of a list in _id order (the API's
// lists of every job, or of the ended ones) then reads its documents by
// _id: FerretDB answers a find with {_id: {$gt: c}} and a sort by _id by
// decoding every document of the collection, a second per page once the
// store holds a few thousand jobs.
//
// SQLite orders the index's values, the _ids as JSON text ("job-…"), as
// bytes: that is the strings' own order while they hold no character
// before '#' (the services' ids hold letters, digits and '-'); the caller
// checks the order it gets.
func (s *Server) IDsAfter(ctx context.Context, db, coll, after string, limit int) ([]string, error) {
	return s.idsInOrder(ctx, db, coll, after, false, limit)
}

// IDsBefore is IDsAfter the other way: the _ids of at most limit
// documents whose _id comes before before ("": from the last), in
// descending _id order, for a list that shows the newest first (the web
// view's jobs; ids are time-ordered).
func (s *Server) IDsBefore(ctx context.Context, db, coll, before string, limit int) ([]string, error) {
	return s.idsInOrder(ctx, db, coll, before, true, limit)
}

// idsInOrder is IDsAfter (desc false) and IDsBefore (desc true).
func (s *Server) idsInOrder(ctx context.Context, db, coll, from string, desc bool, limit int) ([]string, error) {
	word := map[bool]string{false: "after", true: "before"}[desc]
	if limit <= 0 {
		return nil, fmt.Errorf("ids %s %q in %s.%s: limit %d", word, from, db, coll, limit)
	}
	return inFieldSlot(ctx, s, func(ctx context.Context) ([]string, error) {
		ids, err := s.idsInOrderSQL(ctx, db, coll, from, desc, limit)
		if err != nil {
			return nil, fmt.Errorf("ids %s %q in %s.%s: %w", word, from, db, coll, err)
		}
		return ids, nil
	})
}

// idsInOrderSQL is idsInOrder's work, on a context that is never cancelled.
func (s *Server) idsInOrderSQL(ctx context.Context, db, coll, from string, desc bool, limit int) ([]string, error) {
	sdb, table, err := s.fieldTable(ctx, db, coll)
	if err != nil || table == "" {
		return nil, err // table "": no documents
	}
	return queryIDs(ctx, sdb, idsInOrderSQL(table, from != "", desc), idsInOrderArgs(from, limit)...)
}

// idsInOrderSQL is the query of IDsAfter (desc false) and IDsBefore on
// table: the _id index in its order or backwards, from a parameter (quoted
// as the index holds it) if from.
func idsInOrderSQL(table string, from, desc bool) string {
	cmp, order := ">", ""
	if desc {
		cmp, order = "<", " DESC"
	}
	where := ""
	if from {
		where = " WHERE " + idExpr + " " + cmp + " json_quote(?)"
	}
	return fmt.Sprintf("SELECT %s FROM %s INDEXED BY %s%s ORDER BY %s%s LIMIT ?",
		fieldExpr("_id"), quoteIdent(table), quoteIdent(idIndexName(table)), where, idExpr, order)
}

func idsInOrderArgs(from string, limit int) []any {
	if from == "" {
		return []any{limit}
	}
	return []any{from, limit}
}

// MatchingIDsAfter is IDsAfter over the documents that meet where (as
// MatchingIDs' where: an In condition first, then In or Missing ones): the
// _ids of at most limit of them whose _id comes after after ("": from the
// first), in _id order. It reads an SQLite expression index on where's
// paths then _id, made on first use (partial as where's conditions say:
// the API's lists of an ended status read one that holds only the ended
// jobs, which writes of the active ones leave alone), and from it only the
// entries it returns: a page of a status few documents have costs its own
// documents, not every document after its cursor as a scan by IDsAfter
// does.
//
// One query per combination of where's values, each reading the index in
// _id order and stopping after limit entries (with a list of values SQLite
// would read and sort every match after the cursor); their _ids are merged.
// The _ids are compared as the strings they are (the index holds them as
// text), which is a MongoDB sort's order of string _ids.
func (s *Server) MatchingIDsAfter(ctx context.Context, db, coll string, where []FieldCond, after string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("matching ids after %q in %s.%s: limit %d", after, db, coll, limit)
	}
	return inFieldSlot(ctx, s, func(ctx context.Context) ([]string, error) {
		ids, err := s.matchingIDsAfterSQL(ctx, db, coll, where, after, limit)
		if err != nil {
			return nil, fmt.Errorf("matching ids after %q in %s.%s: %w", after, db, coll, err)
		}
		return ids, nil
	})
}

// matchingIDsAfterSQL is MatchingIDsAfter's work, on a context that is
// never cancelled.
func (s *Server) matchingIDsAfterSQL(ctx context.Context, db, coll string, where []FieldCond, after string, limit int) ([]string, error) {
	if len(where) == 0 || len(where[0].In) == 0 {
		return nil, fmt.Errorf("the first condition must list values")
	}
	for _, c := range where {
		if !condPath.MatchString(c.Path) || c.Path == "_id" {
			return nil, fmt.Errorf("unsupported path %q", c.Path)
		}
	}
	if err := checkPartial(where, nil); err != nil {
		return nil, err
	}
	sdb, table, err := s.fieldTable(ctx, db, coll)
	if err != nil || table == "" {
		return nil, err // table "": no documents
	}
	if err := s.ensureFieldIndex(ctx, sdb, table, append(slices.Clone(where), FieldCond{Path: "_id"})); err != nil {
		return nil, err
	}
	var ids []string
	for _, w := range combinations(where) {
		q, args, err := matchAfterSQL(table, w, after != "")
		if err != nil {
			return nil, err
		}
		if after != "" {
			args = append(args, after)
		}
		got, err := queryIDs(ctx, sdb, q, append(args, limit)...)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids) // a document whose value changed between two queries
	return ids[:min(limit, len(ids))], nil
}

// matchAfterSQL is the query of MatchingIDsAfter for where of single
// values: matchSQL's, from a parameter (the cursor) if after, in the
// order of the index's _id and with a parameter for the limit.
func matchAfterSQL(table string, where []FieldCond, after bool) (string, []any, error) {
	q, args, err := matchSQL(table, where, nil)
	if err != nil {
		return "", nil, err
	}
	if after {
		q += " AND " + fieldExpr("_id") + " > ?"
	}
	return q + " ORDER BY " + fieldExpr("_id") + " LIMIT ?", args, nil
}

// queryIDs runs q, a query of one column of _ids, and returns them (NULLs
// left out).
func queryIDs(ctx context.Context, sdb *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := sdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id sql.NullString
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if id.Valid {
			ids = append(ids, id.String)
		}
	}
	return ids, rows.Err()
}
