package ferretembed

import (
	"context"
	"database/sql"
)

// Internals the external tests check against a running FerretDB.
const IDExpr = idExpr

var IDIndexName = idIndexName

// OpenSQLite opens the SQLite file of database db.
func (s *Server) OpenSQLite(db string) (*sql.DB, error) { return s.openSQLite(db) }

// TableName returns the SQLite table of db.collection.
func (s *Server) TableName(ctx context.Context, db, collection string) (string, error) {
	sdb, err := s.openSQLite(db)
	if err != nil {
		return "", err
	}
	defer sdb.Close()
	return tableName(ctx, sdb, collection)
}
