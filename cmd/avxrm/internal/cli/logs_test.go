package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

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
	err = followLog(context.Background(), c, "/jobs/job-1/instances/worker/0/logs", tail, true, &out, func() (bool, bool, error) {
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
