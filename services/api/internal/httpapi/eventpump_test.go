package httpapi

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// A reader that stops reading fills its socket's buffers and blocks the
// stream's writes; the stream ends once a write has waited sseWriteTimeout,
// instead of holding its connection and goroutine until the client leaves.
func TestStalledEventReaderIsCutOff(t *testing.T) {
	old := sseWriteTimeout
	sseWriteTimeout = 300 * time.Millisecond
	t.Cleanup(func() { sseWriteTimeout = old })

	ended := make(chan struct{})
	sub := &hubSub{ch: make(chan *hubEvent, hubSubBuffer)}
	e := echo.New()
	e.GET("/events", func(c echo.Context) error {
		defer close(ended)
		c.Response().Header().Set("Content-Type", "text/event-stream")
		c.Response().WriteHeader(200)
		w := c.Response()
		p := &eventPump{ctx: c.Request().Context(), w: w}
		p.rc = http.NewResponseController(w)
		p.flush()
		p.live(sub)
		return nil
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	// A client with a small receive buffer that never reads.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	conn, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"data":"` + strings.Repeat("x", 64<<10) + `"}`)
	go func() {
		for i := uint64(1); ; i++ {
			select {
			case sub.ch <- &hubEvent{seq: i, data: data}:
			case <-ended:
				return
			}
		}
	}()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the stream of a reader that stopped reading did not end")
	}
}
