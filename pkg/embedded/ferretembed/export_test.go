package ferretembed

import (
	"context"
	"database/sql"
	"log/slog"
	"net"
	"time"
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

// Classify is classify.
func Classify(msg []byte) (cmd string, write, moreToCome bool) { return classify(msg) }

// MaxMessageSize is maxMessageSize.
const MaxMessageSize = maxMessageSize

// StartProxy serves ln, forwarding to upstream (host:port) with the given
// write-lock timeout, until stop is called.
func StartProxy(ln net.Listener, upstream string, lockTimeout time.Duration) (stop func()) {
	return newProxy(ln, upstream, lockTimeout, slog.New(slog.DiscardHandler)).close
}

// SetFastPath turns the proxy's conditional-write fast path on or off.
func (s *Server) SetFastPath(on bool) { s.proxy.fastPathOff.Store(!on) }

// FastPathStats reports how many writes the fast path answered itself,
// forwarded with the filter rewritten to {_id: X}, and forwarded unchanged.
func (s *Server) FastPathStats() (replied, rewritten, unchanged int64) {
	f := &s.proxy.fast
	return f.replied.Load(), f.rewritten.Load(), f.unchanged.Load()
}

// FastPathSQLLookups reports how many of the fast path's lookups SQLite
// answered and how many went to FerretDB's find instead.
func (s *Server) FastPathSQLLookups() (answered, fellBack int64) {
	return s.sqlLookups.answered.Load(), s.sqlLookups.fellBack.Load()
}

// SetSQLLookups turns the fast path's lookups in SQL on or off (before any
// write: it is not synchronized).
func (s *Server) SetSQLLookups(on bool) { s.sqlLookups.off = !on }

// Deliberately wrong locking rules for SetBrokenLock.
const (
	LockCorrect          = int32(lockCorrect)
	LockReleaseOnForward = int32(lockReleaseOnForward)
)

// SetBrokenLock breaks the proxy's locking on purpose.
func (s *Server) SetBrokenLock(mode int32) { s.proxy.broken.Store(mode) }

// StripMaxTimeMS is stripMaxTimeMS.
func StripMaxTimeMS(msg []byte) []byte { return stripMaxTimeMS(msg) }

// HoldReadSlots takes n of the proxy's read slots, as n long reads would,
// until release is called.
func (s *Server) HoldReadSlots(n int) (release func()) {
	for range n {
		s.proxy.readSlots <- struct{}{}
	}
	return func() {
		for range n {
			<-s.proxy.readSlots
		}
	}
}

// ReadSlots is how many heavy reads the proxy runs at once.
const ReadSlots = defaultReadSlots

// SetDirect turns the fast path's replacements and inserts, and the finds
// by _id, in SQL on or off (between commands: it is not synchronized).
func (s *Server) SetDirect(on bool) { s.sqlLookups.directOff.Store(!on) }

// MissAllLookups makes every SQL lookup of the fast path find no row, as a
// lookup that missed a stored document would.
func (s *Server) MissAllLookups(on bool) { s.sqlLookups.missAll.Store(on) }

// DirectWriteStats reports how many replacements and inserts the fast path
// wrote in SQL, left to FerretDB as outside its encoding, and failed in
// SQLite.
func (s *Server) DirectWriteStats() (direct, unsupported, failed int64) {
	l := &s.sqlLookups
	return l.direct.Load(), l.directUnsupported.Load(), l.directFailed.Load()
}

// ProxySynchronous is PRAGMA synchronous on the connection the fast path
// writes db's replacements with.
func (s *Server) ProxySynchronous(db string) (int, error) {
	c, err := s.directConn(db)
	if err != nil {
		return 0, err
	}
	var n int
	err = c.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&n)
	return n, err
}

// DirectFindStats reports how many finds by _id SQLite answered and how many
// it left to FerretDB after reading (an error, a stored type it does not
// convert).
func (s *Server) DirectFindStats() (answered, fellBack int64) {
	return s.sqlLookups.findDirect.Load(), s.sqlLookups.findFellBack.Load()
}

// HoldCommits keeps every writer from committing the direct writes'
// transaction until release is called.
func (s *Server) HoldCommits() (release func()) {
	h := make(chan struct{})
	s.commits.hold.Store(&h)
	return func() {
		s.commits.hold.Store(nil)
		close(h)
	}
}

// FailCommits makes every commit of the direct writes fail with err (nil:
// commit again).
func (s *Server) FailCommits(err error) {
	if err == nil {
		s.commits.failCommit.Store(nil)
		return
	}
	s.commits.failCommit.Store(&err)
}

// SetGroupCommit turns group commit on or off: off, each direct write is
// committed on its own under the lock.
func (s *Server) SetGroupCommit(on bool) { s.commits.off.Store(!on) }

// SJSONToBSONFast and SJSONToBSONSlow are the direct find's two readings
// of a stored row (sjsonfast.go).
func SJSONToBSONFast(row string) ([]byte, bool) { return sjsonToBSONFast([]byte(row)) }

func SJSONToBSONSlow(row string) ([]byte, error) { return sjsonToBSONSlow([]byte(row)) }
