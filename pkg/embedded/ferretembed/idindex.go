package ferretembed

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/mongo"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"; the one FerretDB itself uses
)

// Names FerretDB v1.24 uses in its SQLite backend
// (internal/backends/sqlite/metadata and metadata/pool). They are not part of
// FerretDB's API; the tests check them against a running FerretDB so an
// upgrade that changes them fails loudly instead of silently losing the index.
const (
	// sqliteFileExt: each database is the file <Dir>/<db>.sqlite.
	sqliteFileExt = ".sqlite"
	// metadataTable maps collection names to table names (columns name,
	// table_name, settings).
	metadataTable = "_ferretdb_collections"
	// idExpr is metadata.IDColumn, the exact expression FerretDB puts in the
	// WHERE clause of find/update/delete/explain when the filter is
	// {_id: <string or ObjectId>}. SQLite uses an expression index only for a
	// textually identical expression, and FerretDB's own "_id_" index is built
	// on _ferretdb_sjson->"_id", which never matches, so every such statement
	// scans the whole table.
	idExpr = `_ferretdb_sjson->'$._id'`
	// idIndexPrefix starts our index names. FerretDB names its SQLite indexes
	// <table>_<mongo index name>, so a distinct prefix keeps ours apart.
	idIndexPrefix = "avxrm_idpath_"
)

// codeNamespaceExists is the MongoDB error code of create on an existing
// collection.
const codeNamespaceExists = 48

// EnsureIDIndex makes updates, deletes and finds by _id in db.collection use
// an index instead of scanning the collection. It creates the collection if
// missing, then adds an SQLite expression index on exactly the expression
// FerretDB filters on, directly in <Dir>/<db>.sqlite. It is idempotent.
//
// FerretDB does not know about the index: listIndexes does not show it,
// dropIndexes leaves it, and dropping the collection drops it with the table,
// so call EnsureIDIndex again after recreating a collection. Only _id values
// that are strings or ObjectIds are pushed down to SQLite by FerretDB; other
// _id types are filtered in Go and gain nothing.
func (s *Server) EnsureIDIndex(ctx context.Context, db, collection string) error {
	if err := s.ensureCollection(ctx, db, collection); err != nil {
		return fmt.Errorf("ensure _id index on %s.%s: %w", db, collection, err)
	}
	if err := s.createIDIndex(ctx, db, collection); err != nil {
		return fmt.Errorf("ensure _id index on %s.%s: %w", db, collection, err)
	}
	return nil
}

// ensureCollection creates the collection through FerretDB, so its metadata
// table and in-memory registry stay the single owner of table names.
func (s *Server) ensureCollection(ctx context.Context, db, collection string) error {
	err := s.client.Database(db).CreateCollection(ctx, collection)
	var ce mongo.CommandError
	if errors.As(err, &ce) && ce.HasErrorCode(codeNamespaceExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create collection: %w", err)
	}
	return nil
}

func (s *Server) createIDIndex(ctx context.Context, db, collection string) error {
	sdb, err := s.openSQLite(db)
	if err != nil {
		return err
	}
	defer sdb.Close()

	table, err := tableName(ctx, sdb, collection)
	if err != nil {
		return err
	}
	if _, err := sdb.ExecContext(ctx, createIDIndexSQL(table)); err != nil {
		return fmt.Errorf("create index on table %q: %w", table, err)
	}
	return nil
}

// createIDIndexSQL makes table's _id index unless it exists. Not UNIQUE:
// FerretDB's own _id_ index enforces uniqueness; this one exists only for
// lookups and must never reject a write FerretDB accepts.
func createIDIndexSQL(table string) string {
	return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
		quoteIdent(idIndexName(table)), quoteIdent(table), idExpr)
}

// openSQLite opens the database file FerretDB is serving, alongside
// FerretDB's own connections; SQLite's WAL locking makes that safe, and the
// busy timeout makes each side wait for the other's write instead of failing.
func (s *Server) openSQLite(db string) (*sql.DB, error) {
	path := filepath.Join(s.dir, db+sqliteFileExt)
	q := url.Values{}
	q.Set("mode", "rw") // never create a file FerretDB does not know about
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(wal)")
	dsn := (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String()

	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	sdb.SetMaxOpenConns(1)
	return sdb, nil
}

// sqliteConns are the Server's own connections to the files FerretDB serves,
// one pool per database, opened on first use and closed with the server.
type sqliteConns struct {
	mu  sync.Mutex
	dbs map[string]*sql.DB
}

// conns returns db's pool of c, opening it with openSQLite and then setup
// (nil: none) the first time.
func (s *Server) conns(c *sqliteConns, db string, setup func(*sql.DB) error) (*sql.DB, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sdb := c.dbs[db]; sdb != nil {
		return sdb, nil
	}
	sdb, err := s.openSQLite(db)
	if err != nil {
		return nil, err
	}
	if setup != nil {
		if err := setup(sdb); err != nil {
			_ = sdb.Close()
			return nil, err
		}
	}
	if c.dbs == nil {
		c.dbs = map[string]*sql.DB{}
	}
	c.dbs[db] = sdb
	return sdb, nil
}

// close closes what get opened.
func (c *sqliteConns) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sdb := range c.dbs {
		_ = sdb.Close()
	}
	c.dbs = nil
}

// tableName returns the SQLite table FerretDB stores collection in.
func tableName(ctx context.Context, sdb sqlQuerier, collection string) (string, error) {
	var table string
	q := fmt.Sprintf("SELECT table_name FROM %s WHERE name = ?", quoteIdent(metadataTable))
	if err := sdb.QueryRowContext(ctx, q, collection).Scan(&table); err != nil {
		return "", fmt.Errorf("look up table of collection %q: %w", collection, err)
	}
	return table, nil
}

func idIndexName(table string) string { return idIndexPrefix + table }

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
