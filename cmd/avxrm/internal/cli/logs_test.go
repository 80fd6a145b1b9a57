package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
)

// Following a log asks only for what it has not printed (?offset=), so a
// long log is not read again on every poll; a restart reads the new log
// from its start.
func TestFollowLogAsksFromWhereItWas(t *testing.T) {
	var mu sync.Mutex
	logs := [][]byte{[]byte("one\n")}
	var offsets []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		offsets = append(offsets, r.URL.Query().Get("offset"))
		log := logs[len(logs)-1]
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		w.Header().Set("Content-Type", "text/plain")
		if off < len(log) {
			_, _ = w.Write(log[off:])
		}
	}))
	defer srv.Close()
	out := followFake(t, srv.URL, 0, &mu, func(polls int) (bool, bool) {
		switch polls {
		case 2:
			logs[0] = append(logs[0], "two\n"...)
		case 3:
			logs = append(logs, []byte("again\n")) // a new replica's log
			return false, true
		case 4:
			return true, false
		}
		return false, false
	})
	if got, want := out, "one\ntwo\nagain\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	if got, want := offsets, []string{"0", "4", "0", "6"}; !slices.Equal(got, want) {
		t.Errorf("offsets asked %q, want %q", got, want)
	}
}

// --tail asks for the last lines once, then follows from where the answer
// said they start (Rm-Log-Offset) plus what it printed.
func TestLogsTailThenFollow(t *testing.T) {
	var mu sync.Mutex
	log := "one\ntwo\nthree\n"
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, r.URL.RawQuery)
		start := 0
		if r.URL.Query().Has("tail") {
			start = strings.Index(log, "two") // the last 2 lines of 3
		} else {
			start, _ = strconv.Atoi(r.URL.Query().Get("offset"))
		}
		w.Header().Set("Rm-Log-Offset", strconv.Itoa(start))
		_, _ = w.Write([]byte(log[min(start, len(log)):]))
	}))
	defer srv.Close()
	out := followFake(t, srv.URL, 2, &mu, func(polls int) (bool, bool) {
		if polls == 2 {
			log += "four\n"
		}
		return polls == 3, false
	})
	if got, want := out, "two\nthree\nfour\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	if want := []string{"tail=2", "offset=14", "offset=19"}; !slices.Equal(asked, want) {
		t.Errorf("asked %q, want %q", asked, want)
	}
}

// followFake follows the log the fake server at url serves, with tail,
// polling with poll (given the poll's count, under mu) and returns what it
// printed.
func followFake(t *testing.T, url string, tail int, mu *sync.Mutex, poll func(polls int) (ended, restarted bool)) string {
	t.Helper()
	c, err := avxrm.New(url)
	if err != nil {
		t.Fatal(err)
	}
	polls := 0
	var out bytes.Buffer
	err = followLog(context.Background(), c, "/jobs/job-1/instances/worker/0/logs", tail, true, &out, io.Discard, func() (bool, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		polls++
		ended, restarted := poll(polls)
		return ended, restarted, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// A connection lost while following a log is said on stderr and the log read
// again once the server is back, nothing printed twice or left out; a first
// read that fails ends the command at once.
func TestFollowLogThroughALostConnection(t *testing.T) {
	var mu sync.Mutex
	log := "one\n"
	down := 0 // requests still to be cut off
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if cutOff(w, &down) {
			return
		}
		start, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		_, _ = w.Write([]byte(log[min(start, len(log)):]))
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	path := "/jobs/job-1/instances/worker/0/logs"
	var out, errw bytes.Buffer
	polls := 0
	err = followLog(context.Background(), c, path, 0, true, &out, &errw, func() (bool, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		polls++
		if polls == 2 {
			log += "two\n"
			down = 7 // more than the client's own attempts (5) of one read
		}
		return polls == 4, false, nil
	})
	want := lostAndBack(srv.URL)
	if err != nil || out.String() != "one\ntwo\n" || errw.String() != want {
		t.Errorf("followed %q, %v; stderr %q, want %q", out.String(), err, errw.String(), want)
	}

	refused := &url.Error{Op: "Get", URL: srv.URL, Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	began := time.Now()
	err = followLog(context.Background(), c, path, 0, true, io.Discard, io.Discard, func() (bool, bool, error) { return false, false, refused })
	if !errors.Is(err, refused) || time.Since(began) > time.Second {
		t.Errorf("first read refused: %v after %s, want it at once", err, time.Since(began))
	}
}

// Following an array's counts goes on through a lost connection as
// following a log does.
func TestFollowArrayThroughALostConnection(t *testing.T) {
	var mu sync.Mutex
	reads, down := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if cutOff(w, &down) {
			return
		}
		reads++
		counts := `{"running": 2}`
		if reads == 1 {
			down = 7 // more than the client's own attempts (5) of one read
		} else {
			counts = `{"succeeded": 2}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id": "arr-1", "count": 2, "counts": %s}`, counts)
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var errw bytes.Buffer
	a, err := followArray(context.Background(), c, "arr-1", io.Discard, &errw, 10*time.Millisecond)
	want := lostAndBack(srv.URL)
	if err != nil || a == nil || (*a.Counts)["succeeded"] != 2 || errw.String() != want {
		t.Errorf("followed %v, %v; stderr %q, want %q", a, err, errw.String(), want)
	}
}

// cutOff closes the request's connection without an answer while *down
// requests are still to be cut off, and says whether it did.
func cutOff(w http.ResponseWriter, down *int) bool {
	if *down == 0 {
		return false
	}
	*down--
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
	return true
}

// lostAndBack is what stderr says of a connection to server lost once and back.
func lostAndBack(server string) string {
	return "avxrm: lost the connection to " + server + " (the server ended the stream); reconnecting\n" +
		"avxrm: reconnected to " + server + "\n"
}
