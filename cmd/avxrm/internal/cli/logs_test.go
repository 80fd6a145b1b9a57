package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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
	c, err := avxrm.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	polls := 0
	var out bytes.Buffer
	err = followLog(context.Background(), c, "/jobs/job-1/instances/worker/0/logs", true, &out, func() (bool, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		polls++
		switch polls {
		case 2:
			logs[0] = append(logs[0], "two\n"...)
		case 3:
			logs = append(logs, []byte("again\n")) // a new replica's log
			return false, true, nil
		case 4:
			return true, false, nil
		}
		return false, false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "one\ntwo\nagain\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	if got, want := offsets, []string{"0", "4", "0", "6"}; !slices.Equal(got, want) {
		t.Errorf("offsets asked %q, want %q", got, want)
	}
}
