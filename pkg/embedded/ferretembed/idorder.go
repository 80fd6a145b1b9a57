package ferretembed

import (
	"context"
	"database/sql"
	"fmt"
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
	rows, err := sdb.QueryContext(ctx, idsInOrderSQL(table, from != "", desc), idsInOrderArgs(from, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make([]string, 0, limit)
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
