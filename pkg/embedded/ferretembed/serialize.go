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

// defaultWriteLockTimeout bounds how long one write command may hold the
// write lock. When it passes, the connection that holds the lock is closed,
// which releases it; the write itself may still finish inside FerretDB.
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
	// goroutine that forwards the reply and awaited alongside a close.
	writeLock chan struct{}

	// fast is the connection of the conditional-write fast path
	// (fastpath.go); fastPathOff turns the fast path off.
	fast        fastPathConn
	fastPathOff atomic.Bool

	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newProxy(ln net.Listener, upstream string, lockTimeout time.Duration, log *slog.Logger) *proxy {
	p := &proxy{
		ln: ln, upstream: upstream, lockTimeout: lockTimeout, log: log,
		writeLock: make(chan struct{}, 1),
		conns:     make(map[*proxyConn]struct{}),
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
		c := &proxyConn{p: p, client: client, done: make(chan struct{}), pending: make(map[int32]bool)}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go c.serve()
	}
}

// close stops accepting, closes every connection and waits for their
// goroutines.
func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	_ = p.ln.Close()
	for c := range p.conns {
		c.close()
	}
	if p.fast.conn != nil { // guarded by p.mu as well as p.fast.mu
		_ = p.fast.conn.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// proxyConn is one client connection and its upstream connection.
type proxyConn struct {
	p                *proxy
	client, upstream net.Conn // upstream is set before the copying starts
	done             chan struct{}
	closeOnce        sync.Once

	mu      sync.Mutex
	held    bool           // this connection holds p.writeLock
	pending map[int32]bool // request IDs of forwarded writes awaiting a reply
	timer   *time.Timer    // closes the connection when the lock is held too long
}

func (c *proxyConn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.client.Close()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.upstream != nil {
			_ = c.upstream.Close()
		}
	})
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
		c.close()
		return
	}
	c.mu.Lock() // pairs with a concurrent close from proxy.close
	c.upstream = upstream
	c.mu.Unlock()
	select {
	case <-c.done: // closed while dialing
		_ = upstream.Close()
		return
	default:
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.report("request", c.forwardRequests()) }()
	go func() { defer wg.Done(); c.report("reply", c.forwardReplies()) }()
	wg.Wait()
	c.releaseAll() // never leak the lock, whatever ended the connection
}

// report closes the connection when either direction stops, logging
// anything but an ordinary end.
func (c *proxyConn) report(dir string, err error) {
	select {
	case <-c.done:
	default:
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.p.log.Warn("proxy "+dir, "error", err)
		}
	}
	c.close()
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
		if write {
			if err := c.lock(id); err != nil {
				return err
			}
			// The fast path reads the document on another connection, so
			// only when no earlier pipelined write of this connection may
			// still be running.
			if fastPathCommands[cmd] && !moreToCome && !c.p.fastPathOff.Load() && c.sole(id) {
				forward, reply := c.p.fastPath(msg)
				if reply != nil { // the write cannot match: answered here
					c.unlock(id)
					if _, err := c.client.Write(reply); err != nil {
						return err
					}
					continue
				}
				msg = forward
			}
		}
		if _, err := c.upstream.Write(msg); err != nil {
			return err
		}
		if write && moreToCome {
			// No reply will come. FerretDB may still be executing the
			// write, so unacknowledged writes are serialized only as far
			// as the forwarding; the services never use them.
			c.unlock(id)
		}
	}
}

func (c *proxyConn) forwardReplies() error {
	r := bufio.NewReader(c.upstream)
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
		c.unlock(responseTo(msg))
		if _, err := c.client.Write(msg); err != nil {
			return err
		}
	}
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
	c.mu.Lock()
	c.held = true
	c.pending[id] = true
	c.timer = time.AfterFunc(c.p.lockTimeout, func() {
		c.mu.Lock()
		held := c.held
		c.mu.Unlock()
		if !held { // released just as the timer fired
			return
		}
		c.p.log.Warn("proxy write lock held too long; closing the connection", "timeout", c.p.lockTimeout)
		c.close()
	})
	c.mu.Unlock()
	return nil
}

// sole reports whether request id is the only write of this connection
// awaiting a reply.
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

func (c *proxyConn) releaseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.pending)
	c.releaseLocked()
}

func (c *proxyConn) releaseLocked() {
	if !c.held {
		return
	}
	c.held = false
	c.timer.Stop()
	<-c.p.writeLock
}
