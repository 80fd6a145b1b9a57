package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/avxrm/rm/pkg/events"
)

// Every event about a job stays under 64 KiB: the largest job the API
// accepts makes a smaller rm.job.submitted, and a larger one is refused,
// naming the field, with nothing written.
func TestJobEventSizeIsBounded(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	env := func(n, size int) obj {
		m := obj{}
		for i := range n {
			m[fmt.Sprintf("V%03d", i)] = strings.Repeat("<", size) // escaped as \u003c in JSON: 6 bytes each
		}
		return m
	}
	labels := obj{}
	for i := range 40 {
		labels[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", 63)
	}
	ok := jobBody("Default", 100000).with("environment_variables", env(4, 1200)).with("labels", labels)
	ok["application"].(obj)["environment_variables"] = env(2, 900)
	ok["command"] = []string{strings.Repeat("<", 400)}
	ok["args"] = []string{strings.Repeat("<", 250), strings.Repeat("<", 250)}
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", ok).obj(t).str("id")
	for _, ev := range e.events(events.FilterSubject(events.KindJob, "", id)) {
		if n := len(ev.Data); n > 64<<10 {
			t.Errorf("%s event of %d bytes", ev.Type, n)
		}
	}

	before := e.count("jobs")
	big := jobBody("Default", 1).with("environment_variables", env(8, 2000))
	r := e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/jobs", big)
	if !strings.Contains(string(r.Body), `"field":"environment_variables"`) {
		t.Errorf("too large a job: %s, want a 422 naming environment_variables", r.Body)
	}
	if n := e.count("jobs"); n != before {
		t.Errorf("a refused job was stored: %d jobs, want %d", n, before)
	}
}
