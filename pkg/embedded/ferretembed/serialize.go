package ferretembed

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Wire protocol constants (MongoDB OP_MSG / OP_QUERY specification).
const (
	headerLen      = 16
	maxMessageSize = 48_000_000 // MongoDB's maxMessageSizeBytes; FerretDB's wire.MaxMsgLen

	opQuery = 2004
	opMsg   = 2013

	flagChecksumPresent = 1 << 0
	flagMoreToCome      = 1 << 1
)

// defaultWriteLockTimeout is how long one write command may hold the write
// lock before the proxy logs a warning. It never releases the lock: only
// FerretDB's reply (or FerretDB closing the connection, which it does only
// after the command's handler has returned) proves the write is over.
const defaultWriteLockTimeout = 2 * time.Minute

// readCommands are the commands that never modify data and so bypass the
// write lock. Everything else, including unknown commands and messages whose
// command cannot be seen, is serialized.
var readCommands = map[string]bool{
	"find": true, "getMore": true, "killCursors": true, "aggregate": true,
	"count": true, "distinct": true, "explain": true,
	"listCollections": true, "listIndexes": true, "listDatabases": true,
	"hello": true, "isMaster": true, "ismaster": true, "ping": true,
	"buildInfo": true, "buildinfo": true, "getParameter": true, "getCmdLineOpts": true,
	"hostInfo": true, "listCommands": true, "endSessions": true,
	"collStats": true, "dbStats": true, "dataSize": true, "serverStatus": true,
	"whatsmyuri": true, "getLog": true, "connectionStatus": true,
	"saslStart": true, "saslContinue": true, "logout": true,
}

// aggregate writes with a $out or $merge stage. Any occurrence of these keys
// (or of such strings anywhere in the command) makes it a write: a false
// positive only costs a lock.
var (
	keyOut   = []byte("$out\x00")
	keyMerge = []byte("$merge\x00")
)

// classify reports the command name of a client message (empty if it cannot
// be seen), whether it must hold the write lock, and whether it carries
// moreToCome, i.e. no reply will follow. OP_COMPRESSED, which FerretDB does
// not support and never negotiates (its hello advertises no compressors), and
// any other opcode count as writes.
func classify(msg []byte) (cmd string, write, moreToCome bool) {
	le := binary.LittleEndian
	var doc []byte
	switch le.Uint32(msg[12:16]) {
	case opMsg:
		if len(msg) < headerLen+4 {
			return "", true, false
		}
		flags := le.Uint32(msg[16:20])
		moreToCome = flags&flagMoreToCome != 0
		end := len(msg)
		if flags&flagChecksumPresent != 0 {
			end -= 4
		}
		// Exactly one section of kind 0 holds the command document; kind 1
		// sections (document sequences) are skipped.
		for i := headerLen + 4; i < end && doc == nil; {
			kind := msg[i]
			n, ok := int32At(msg[:end], i+1)
			if !ok || n < 4 || i+1+n > end {
				return "", true, moreToCome
			}
			if kind == 0 {
				doc = msg[i+1 : i+1+n]
			}
			i += 1 + n
		}
	case opQuery:
		// flags int32, fullCollectionName cstring, numberToSkip int32,
		// numberToReturn int32, query document.
		i := bytes.IndexByte(msg[min(headerLen+4, len(msg)):], 0)
		if i < 0 || headerLen+4+i+1+8 > len(msg) {
			return "", true, false
		}
		doc = msg[headerLen+4+i+1+8:]
	default:
		return "", true, false
	}
	cmd = firstKey(doc)
	if cmd == "$query" || cmd == "query" { // legacy wrapped command
		cmd = firstKey(doc[min(4+1+len(cmd)+1, len(doc)):])
	}
	write = !readCommands[cmd] ||
		(cmd == "aggregate" && (bytes.Contains(doc, keyOut) || bytes.Contains(doc, keyMerge)))
	return cmd, write, moreToCome
}

// firstKey returns the key of the first element of a BSON document, or "".
func firstKey(doc []byte) string {
	if len(doc) < 6 || doc[4] == 0 {
		return ""
	}
	i := bytes.IndexByte(doc[5:], 0)
	if i < 0 {
		return ""
	}
	return string(doc[5 : 5+i])
}

func int32At(b []byte, i int) (int, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	return int(int32(binary.LittleEndian.Uint32(b[i:]))), true
}

var errMessageTooLarge = errors.New("message length out of bounds")

// readMessage reads one wire message, header included.
func readMessage(r io.Reader) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int32(binary.LittleEndian.Uint32(hdr[:4]))
	if n < headerLen || n > maxMessageSize {
		return nil, fmt.Errorf("%w: %d", errMessageTooLarge, n)
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[headerLen:]); err != nil {
		return nil, err
	}
	return msg, nil
}

func requestID(msg []byte) int32  { return int32(binary.LittleEndian.Uint32(msg[4:8])) }
func responseTo(msg []byte) int32 { return int32(binary.LittleEndian.Uint32(msg[8:12])) }

// proxy serves the public address and forwards every client connection to
// FerretDB over its own upstream connection, holding writeLock from the
// moment a write command is forwarded until FerretDB has replied to it.
type proxy struct {
	ln          net.Listener
	upstream    string // FerretDB's loopback host:port
	lockTimeout time.Duration
	log         *slog.Logger

	// writeLock, a one-slot semaphore, so that it can be released by the
	// goroutine that reads the reply and awaited alongside a close.
	writeLock chan struct{}

	// fast is the connection of the conditional-write fast path
	// (fastpath.go); fastPathOff turns the fast path off.
	fast        fastPathConn
	fastPathOff atomic.Bool

	// broken breaks the proxy on purpose, for the tests that prove the
	// linearizability check can see a lost update. Only tests set it.
	broken atomic.Int32 // a brokenLock

	stats writeStats

	// stopping is closed when the proxy closes: writers waiting for their
	// transaction's commit give up (groupcommit.go).
	stopping chan struct{}

	// readSlots bounds the heavy reads running in FerretDB (readlimit.go).
	readSlots chan struct{}
	reads     readStats

	// server answers the proxy's own commands (wirelookup.go); nil in
	// tests that run the proxy alone.
	server atomic.Pointer[Server]

	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// brokenLock is a deliberately wrong locking rule.
type brokenLock int32

const (
	lockCorrect brokenLock = iota
	// lockReleaseOnForward releases the lock as soon as any write is
	// forwarded: what the proxy once did for moreToCome writes, for all.
	lockReleaseOnForward
)

func newProxy(ln net.Listener, upstream string, lockTimeout time.Duration, log *slog.Logger) *proxy {
	p := &proxy{
		ln: ln, upstream: upstream, lockTimeout: lockTimeout, log: log,
		writeLock: make(chan struct{}, 1),
		readSlots: make(chan struct{}, defaultReadSlots),
		conns:     make(map[*proxyConn]struct{}),
		stopping:  make(chan struct{}),
	}
	p.wg.Add(1)
	go p.serve()
	return p
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			p.log.Warn("proxy accept", "error", err)
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		if !p.accept(client) {
			return
		}
	}
}

// accept serves client, a connection from the listener or from dialPipe;
// false, with client closed, once the proxy is closed.
func (p *proxy) accept(client net.Conn) bool {
	c := &proxyConn{
		p: p, client: client, done: make(chan struct{}),
		pending: make(map[int32]bool), swallow: make(map[int32]bool), reads: make(map[int32]bool),
	}
	c.idle = sync.NewCond(&c.mu)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		return false
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go c.serve()
	return true
}

// dialPipe connects a client to the proxy in memory (net.Pipe): the same
// serialization and fast paths as a connection to its listener, without
// the loopback socket's system calls on either side.
func (p *proxy) dialPipe() (net.Conn, error) {
	client, server := net.Pipe()
	if !p.accept(server) {
		client.Close()
		return nil, net.ErrClosed
	}
	return client, nil
}

// close stops accepting, closes every connection, both sides, and waits for
// their goroutines. A write in flight may or may not complete; the caller
// (Server.Close) then stops FerretDB, which waits for its command handlers to
// return, so no write of this proxy can land after a new Start.
//
// Every client side is closed before any upstream side: closing an upstream
// side releases the lock while FerretDB may still be running that write, and
// by then no connection may take the lock and forward another (see lock).
func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	_ = p.ln.Close()
	for c := range p.conns {
		c.closeClient()
	}
	for c := range p.conns {
		c.closeUpstream()
	}
	if p.fast.conn != nil { // guarded by p.mu as well as p.fast.mu
		_ = p.fast.conn.Close()
	}
	close(p.stopping)
	p.mu.Unlock()
	p.wg.Wait()
}

// proxyConn is one client connection and its upstream connection.
//
// The two sides end separately. When the client goes (it closed the
// connection, or its driver gave up on a timeout), its writes already
// forwarded may still be running inside FerretDB, so the upstream connection
// stays open and its replies are read and dropped until none is pending; only
// then is the lock released and the upstream connection closed. When the
// upstream side ends, FerretDB has closed the connection, which it does only
// once the command it was running has returned (clientconn.conn.run handles
// one message at a time), so nothing of this connection is still running.
type proxyConn struct {
	p                *proxy
	client, upstream net.Conn // upstream is set before the copying starts
	done             chan struct{}
	closeOnce        sync.Once
	upstreamOnce     sync.Once

	mu           sync.Mutex
	idle         *sync.Cond     // signalled when the lock is released or the upstream side ends
	held         bool           // this connection holds p.writeLock
	pending      map[int32]bool // request IDs of forwarded writes awaiting a reply
	swallow      map[int32]bool // request IDs sent with moreToCome: their replies are dropped
	reads        map[int32]bool // request IDs of forwarded reads holding a read slot
	inflight     int            // forwarded requests whose (last) reply has not come
	upstreamDone bool           // no further reply can come
	timer        *time.Timer    // warns when the lock is held too long
	heldSince    time.Time      // when this connection took p.writeLock
}

// closeClient closes the client side; forwardRequests then ends. The write
// lock, if held, stays held until FerretDB has replied.
func (c *proxyConn) closeClient() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.client.Close()
	})
}

// closeUpstream closes the upstream side; forwardReplies then ends.
func (c *proxyConn) closeUpstream() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upstream != nil {
		c.upstreamOnce.Do(func() { _ = c.upstream.Close() })
	}
}

func (c *proxyConn) serve() {
	defer c.p.wg.Done()
	defer func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	}()
	upstream, err := net.Dial("tcp", c.p.upstream)
	if err != nil {
		c.p.log.Warn("proxy dial ferretdb", "error", err)
		c.closeClient()
		return
	}
	c.mu.Lock() // pairs with a concurrent closeUpstream from proxy.close
	c.upstream = upstream
	c.mu.Unlock()
	select {
	case <-c.done: // closed while dialing
		c.closeUpstream()
		return
	default:
	}

	replies := make(chan struct{})
	go func() {
		defer close(replies)
		c.report("reply", c.forwardReplies())
		c.mu.Lock()
		c.upstreamDone = true
		c.idle.Broadcast()
		c.mu.Unlock()
		c.closeClient()
	}()
	c.report("request", c.forwardRequests())
	c.closeClient()

	// Wait for FerretDB to answer every write already forwarded: until
	// then it may still apply them, and the lock must keep other writes
	// (and the fast path's lookups) out. Likewise for the reads: one whose
	// client left still runs, and keeps its read slot (readlimit.go).
	c.mu.Lock()
	for (c.held || len(c.reads) > 0) && !c.upstreamDone {
		c.idle.Wait()
	}
	c.mu.Unlock()
	c.closeUpstream()
	<-replies
	c.releaseAll()
}

// report logs anything but an ordinary end of one direction.
func (c *proxyConn) report(dir string, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	select {
	case <-c.done:
	default:
		c.p.log.Warn("proxy "+dir, "error", err)
	}
}

func (c *proxyConn) forwardRequests() error {
	r := bufio.NewReader(c.client)
	for {
		msg, err := readMessage(r)
		if err != nil {
			return err
		}
		cmd, write, moreToCome := classify(msg)
		id := requestID(msg)
		if wireLookupCommands[cmd] && !moreToCome { // answered here, never forwarded
			if _, err := c.client.Write(c.answerWireLookup(cmd, msg)); err != nil {
				return err
			}
			continue
		}
		// A find by _id or a look-up by name is answered from SQLite when
		// nothing else of this connection is in flight, so that its reply
		// cannot overtake another (finddirect.go).
		if cmd == "find" && !moreToCome && c.quiet() {
			if srv := c.p.server.Load(); srv != nil {
				if reply := srv.findDirect(msg); reply != nil {
					if _, err := c.client.Write(reply); err != nil {
						return err
					}
					continue
				}
			}
		}
		if !write && !moreToCome && readLimited[cmd] && !pointRead(cmd, msg) {
			started, err := c.startRead(id, readWait(msg))
			if err != nil {
				return err
			}
			if !started {
				if _, err := c.client.Write(c.busyReply(id, cmd)); err != nil {
					return err
				}
				continue
			}
		}
		msg = stripMaxTimeMS(msg) // see maxtime.go
		if moreToCome {
			// The client expects no reply. Ask for one all the same (FerretDB
			// v1 sends one anyway) and drop it: for a write it is the only
			// sign that FerretDB has finished, and a reply the client does
			// not expect would be read as the answer to its next command.
			msg = clearMoreToCome(msg)
			c.mu.Lock()
			c.swallow[id] = true
			c.mu.Unlock()
		}
		if write {
			if err := c.lock(id); err != nil {
				return err
			}
			c.p.stats.commands.Add(1)
			// The fast path reads the document on another connection, so
			// only when no earlier pipelined write of this connection may
			// still be running.
			if fastPathCommands[cmd] && !moreToCome && !c.p.fastPathOff.Load() && c.sole(id) {
				forward, reply := c.p.fastPath(msg)
				if reply != nil { // written in SQL, or it cannot match: answered here
					b := c.p.openBatch()
					c.unlock(id)
					// The reply rests on the open transaction: it goes once
					// that is durable, or not at all (groupcommit.go).
					if err := c.p.awaitCommit(b); err != nil {
						return err
					}
					if _, err := c.client.Write(reply); err != nil {
						return err
					}
					continue
				}
				msg = forward
			}
			c.p.flushBeforeForward() // FerretDB must see the direct writes
		}
		c.mu.Lock()
		c.inflight++
		c.mu.Unlock()
		if _, err := c.upstream.Write(msg); err != nil {
			return err
		}
		if write && brokenLock(c.p.broken.Load()) == lockReleaseOnForward {
			c.unlock(id) // deliberately wrong; see proxy.broken
		}
	}
}

func (c *proxyConn) forwardReplies() error {
	r := bufio.NewReader(c.upstream)
	clientGone := false
	for {
		msg, err := readMessage(r)
		if err != nil {
			return err
		}
		// Exhaust replies (moreToCome) only answer reads, so the first
		// reply to a write request ends it. FerretDB has finished the write
		// once it replies, so the lock is released before the reply is
		// passed on: the client's next write then never finds this
		// connection still holding it, which would keep the fast path
		// (fastpath.go) from being used.
		to := responseTo(msg)
		if len(msg) >= headerLen+4 && binary.LittleEndian.Uint32(msg[16:20])&flagMoreToCome == 0 {
			c.mu.Lock()
			c.inflight-- // its last reply: an exhaust cursor's others have moreToCome
			c.mu.Unlock()
		}
		c.unlock(to)
		c.endRead(to)
		c.mu.Lock()
		drop := c.swallow[to]
		delete(c.swallow, to)
		c.mu.Unlock()
		if drop || clientGone {
			continue
		}
		if _, err := c.client.Write(msg); err != nil {
			// Keep reading: replies to writes still pending release the
			// lock. serve closes the upstream side once none is.
			clientGone = true
			c.closeClient()
		}
	}
}

// clearMoreToCome returns msg without the moreToCome flag, and without its
// checksum, which covers the flags.
func clearMoreToCome(msg []byte) []byte {
	le := binary.LittleEndian
	flags := le.Uint32(msg[16:20])
	end := len(msg)
	if flags&flagChecksumPresent != 0 {
		end -= 4
	}
	out := append([]byte(nil), msg[:end]...)
	le.PutUint32(out[0:], uint32(len(out)))
	le.PutUint32(out[16:], flags&^uint32(flagMoreToCome|flagChecksumPresent))
	return out
}

// lock takes the write lock for request id, unless this connection already
// holds it for an earlier pipelined write.
func (c *proxyConn) lock(id int32) error {
	c.mu.Lock()
	if c.held {
		c.pending[id] = true
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	select {
	case c.p.writeLock <- struct{}{}:
	case <-c.done:
		return net.ErrClosed
	}
	select {
	case <-c.done: // the proxy is closing: the lock may have been freed early
		<-c.p.writeLock
		return net.ErrClosed
	default:
	}
	c.mu.Lock()
	c.held = true
	c.heldSince = time.Now()
	c.pending[id] = true
	c.timer = time.AfterFunc(c.p.lockTimeout, func() {
		c.mu.Lock()
		held := c.held
		c.mu.Unlock()
		if held {
			c.p.log.Warn("proxy write lock held long: FerretDB has not answered a write; other writes wait",
				"timeout", c.p.lockTimeout)
		}
	})
	c.mu.Unlock()
	return nil
}

// sole reports whether request id is the only write of this connection
// awaiting a reply.
// quiet reports whether no request of this connection is in flight.
func (c *proxyConn) quiet() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inflight == 0
}

func (c *proxyConn) sole(id int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held && len(c.pending) == 1 && c.pending[id]
}

// unlock ends request id and releases the lock once no write is pending.
func (c *proxyConn) unlock(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pending[id] {
		return
	}
	delete(c.pending, id)
	if len(c.pending) == 0 {
		c.releaseLocked()
	}
}

// releaseAll releases the lock whatever is pending: only once the upstream
// connection is closed and its reader has stopped.
func (c *proxyConn) releaseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.pending)
	c.releaseLocked()
	c.endAllReadsLocked()
}

func (c *proxyConn) releaseLocked() {
	if !c.held {
		return
	}
	c.held = false
	c.p.stats.held.Add(int64(time.Since(c.heldSince)))
	c.timer.Stop()
	<-c.p.writeLock
	c.idle.Broadcast()
}
