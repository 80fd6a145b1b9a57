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
	if limit <= 0 {
		return nil, fmt.Errorf("ids after %q in %s.%s: limit %d", after, db, coll, limit)
	}
	return inFieldSlot(ctx, s, func(ctx context.Context) ([]string, error) {
		ids, err := s.idsAfterSQL(ctx, db, coll, after, limit)
		if err != nil {
			return nil, fmt.Errorf("ids after %q in %s.%s: %w", after, db, coll, err)
		}
		return ids, nil
	})
}

// idsAfterSQL is IDsAfter's work, on a context that is never cancelled.
func (s *Server) idsAfterSQL(ctx context.Context, db, coll, after string, limit int) ([]string, error) {
	sdb, table, err := s.fieldTable(ctx, db, coll)
	if err != nil || table == "" {
		return nil, err // table "": no documents
	}
	rows, err := sdb.QueryContext(ctx, idsAfterSQL(table, after != ""), idsAfterArgs(after, limit)...)
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

// idsAfterSQL is IDsAfter's query on table: the _id index in its order,
// from after (a parameter, quoted as the index holds it) if from.
func idsAfterSQL(table string, from bool) string {
	where := ""
	if from {
		where = " WHERE " + idExpr + " > json_quote(?)"
	}
	return fmt.Sprintf("SELECT %s FROM %s INDEXED BY %s%s ORDER BY %s LIMIT ?",
		fieldExpr("_id"), quoteIdent(table), quoteIdent(idIndexName(table)), where, idExpr)
}

func idsAfterArgs(after string, limit int) []any {
	if after == "" {
		return []any{limit}
	}
	return []any{after, limit}
}
