package ferretembed

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit of the direct writes.
//
// Each direct replacement or insert (fastpath_direct.go) used to be a
// transaction of its own: the statement, then SQLite's commit with its
// fsync, all under the proxy's write lock, so the store took one fsync per
// write and no write could start while another's fsync ran. Now the direct
// writes made while the lock passes from one client to the next share one
// transaction, and one commit makes them all durable:
//
//   - A direct write, under the lock, runs its statement inside the open
//     transaction of its database (beginning one if none is open), releases
//     the lock, and waits for that transaction's commit before its client
//     gets the reply. An acknowledged write is therefore fsync'd, as before;
//     a write whose commit fails is never acknowledged: its client's
//     connection is closed, so the driver reports the outcome as unknown.
//   - The first of them to take the lock again commits whatever the open
//     transaction holds by then: the writes of every client that queued on
//     the lock before it. Writes that arrive while it commits queue on the
//     lock and form the next transaction. No write waits for a timer or for
//     another goroutine: alone, a write commits as soon as it is made.
//   - Anything else that writes through the lock commits the open
//     transaction first (flush): FerretDB's own writes run on its own
//     connections and must neither wait behind SQLite's write lock nor
//     miss a change the proxy has made; the fast path's look-up through
//     FerretDB must see every change.
//   - A reply given under the lock while a transaction is open (a
//     conditional write found not to match, judged on the transaction's
//     view) waits for the same commit: what it says rests on writes that
//     are not yet durable.
//
// Readers on other connections (FerretDB's finds, finddirect.go) do not see
// a transaction before its commit; none of its writes has been acknowledged
// by then, so that is the order a client can observe. The look-ups of the
// fast path itself run on the transaction's connection and see it, which
// keeps a conditional write from being judged on a version the same
// transaction has already replaced.

// errStoreClosing fails the writes of a transaction the store is closing on.
var errStoreClosing = fmt.Errorf("embedded store closing: %w", net.ErrClosed)

// batch is one transaction of direct writes, on db's pinned connection.
type batch struct {
	db     string
	conn   *sql.Conn
	writes int
	done   chan struct{} // closed once committed or failed
	err    error         // set before done is closed
	once   sync.Once
}

func (b *batch) finish(err error) {
	b.once.Do(func() {
		b.err = err
		close(b.done)
	})
}

// groupCommit is the Server's open transaction and its commits. open is
// changed only under the proxy's write lock; mu also guards it against the
// close (failAll), which does not take the lock.
type groupCommit struct {
	mu     sync.Mutex
	open   *batch
	closed bool
	off    atomic.Bool // tests and benchmarks: commit every write on its own

	commits atomic.Int64 // of at least one write (WriteStats.DirectCommits)

	// Tests: no writer commits until hold is closed; a commit fails with
	// failCommit instead of committing.
	hold       atomic.Pointer[chan struct{}]
	failCommit atomic.Pointer[error]
}

// directConn returns the pinned connection the fast path reads and writes
// db with: the one connection of its pool (openSQLite's), held for good so
// that a transaction can span several clients' commands.
func (s *Server) directConn(db string) (*sql.Conn, error) {
	l := &s.sqlLookups
	l.mu.Lock()
	c := l.pinned[db]
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	sdb, err := s.conns(&l.dbs, db, nil)
	if err != nil {
		return nil, err
	}
	c, err = sdb.Conn(context.Background())
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pinned == nil {
		l.pinned = map[string]*sql.Conn{}
	}
	l.pinned[db] = c
	return c, nil
}

// closePinned returns the pinned connections to their pools, which then
// close them (rolling back a transaction left open).
func (s *Server) closePinned() {
	l := &s.sqlLookups
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.pinned {
		_ = c.Close()
	}
	l.pinned = nil
}

// joinBatch returns db's connection inside the open transaction, beginning
// one (and committing another database's first) if needed. Under the lock.
func (s *Server) joinBatch(ctx context.Context, db string) (*sql.Conn, error) {
	g := &s.commits
	g.mu.Lock()
	closed, open := g.closed, g.open
	g.mu.Unlock()
	if closed {
		return nil, errStoreClosing
	}
	if open != nil && open.db != db {
		s.flush()
		open = nil
	}
	c, err := s.directConn(db)
	if err != nil {
		return nil, err
	}
	if open == nil {
		if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			// A transaction a failed commit left open holds SQLite's write
			// lock, which every later write would wait on: end it, once.
			_, _ = c.ExecContext(ctx, "ROLLBACK")
			if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				return nil, err
			}
		}
		g.mu.Lock()
		g.open = &batch{db: db, conn: c, done: make(chan struct{})}
		g.mu.Unlock()
	}
	return c, nil
}

// joined counts a write made in the open transaction; with group commit
// off it commits the transaction at once, as each write did before.
func (s *Server) joined() {
	g := &s.commits
	g.mu.Lock()
	if g.open != nil {
		g.open.writes++
	}
	g.mu.Unlock()
	if g.off.Load() {
		s.flush()
	}
}

// openBatch is the transaction a reply given now rests on, or nil.
func (s *Server) openBatch() *batch {
	g := &s.commits
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// flush commits the open transaction, if any, and tells its writers how it
// went. Under the lock.
func (s *Server) flush() {
	g := &s.commits
	g.mu.Lock()
	b := g.open
	g.open = nil
	g.mu.Unlock()
	if b == nil {
		return
	}
	var err error
	if f := g.failCommit.Load(); f != nil {
		err = *f
	} else {
		// Never cancelled: an interrupted commit would leave the
		// connection's state unknown (see fastpath_sql.go).
		_, err = b.conn.ExecContext(context.Background(), "COMMIT")
	}
	if err != nil {
		// A failed COMMIT may leave the transaction open; end it.
		_, _ = b.conn.ExecContext(context.Background(), "ROLLBACK")
	}
	if err != nil {
		err = fmt.Errorf("embedded store: commit of %d direct writes: %w", b.writes, err)
	} else if b.writes > 0 {
		g.commits.Add(1)
	}
	b.finish(err)
}

// failAll fails the open transaction's writers and begins no other: the
// store is closing. The transaction itself is rolled back when its
// connection closes.
func (s *Server) failAll() {
	g := &s.commits
	g.mu.Lock()
	b := g.open
	g.open = nil
	g.closed = true
	g.mu.Unlock()
	if b != nil {
		b.finish(errStoreClosing)
	}
}

// awaitCommit waits until b (nil: nothing) is committed, committing it
// itself when it gets the lock first. Writers that queued on the lock
// before it get the lock before it and join b, so the commit that follows
// covers them too; they then find b done and return.
func (p *proxy) awaitCommit(b *batch) error {
	if b == nil {
		return nil
	}
	srv := p.server.Load()
	if h := srv.commits.hold.Load(); h != nil {
		select {
		case <-*h:
		case <-b.done:
		}
	}
	for {
		select {
		case <-b.done:
			return b.err
		case <-p.stopping:
			return errStoreClosing // committed or not: the client cannot know
		case p.writeLock <- struct{}{}:
			start := time.Now()
			if srv.openBatch() == b {
				srv.flush()
			}
			p.stats.held.Add(int64(time.Since(start)))
			<-p.writeLock
		}
	}
}

// flushBeforeForward commits the open transaction before a write goes to
// FerretDB. Under the lock.
func (p *proxy) flushBeforeForward() {
	if srv := p.server.Load(); srv != nil {
		srv.flush()
	}
}

// openBatch is the server's open transaction, or nil.
func (p *proxy) openBatch() *batch {
	if srv := p.server.Load(); srv != nil {
		return srv.openBatch()
	}
	return nil
}
