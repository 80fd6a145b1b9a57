package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// 'avxrm events -o json' prints each event as a CloudEvent in JSON: with
// the attributes the stream sent, specversion among them (without it no
// CloudEvents reader takes the line for one).
func TestEventsJSONLinesAreCloudEvents(t *testing.T) {
	const ce = `{"specversion":"1.0","id":"ev-1","source":"/rm/api","type":"rm.queue.created","subject":"q-1","datacontenttype":"application/json","time":"2026-12-06T23:26:34.204Z","data":{"id":"q-1"},"queueid":"q-1"}`
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 { // the reconnect after the event: end the command
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"title":"Unprocessable Entity","status":422,"detail":"done"}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("id: 1\nevent: rm.queue.created\ndata: " + ce + "\n\n"))
	}))
	defer srv.Close()
	_, _, out := run(t, "", "events", "--after", "0", "-o", "json", "--server", srv.URL)
	line, _, _ := strings.Cut(out, "\n")
	var got, want map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	_ = json.Unmarshal([]byte(ce), &want)
	for k, v := range want {
		if k != "data" && got[k] != v {
			t.Errorf("attribute %s = %v, want %v (line %s)", k, got[k], v, line)
		}
	}
}
