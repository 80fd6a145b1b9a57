package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/google/go-cmp/cmp"
)

// A job's command and args override the runtime's: they are returned as
// submitted and stored in the runtime spec the launcher starts every
// instance from.
func TestSubmitJobCommandAndArgs(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	app := e.create("/applications", obj{"name": "sim", "version": "1", "image": "registry.example/sim:1",
		"command": []string{"/opt/sim/run"}, "args": []string{"--app"}})
	ref := obj{"id": app.str("id")}
	for name, tc := range map[string]struct {
		body                 obj
		wantCommand, wantArg []string
	}{
		"none: the application's": {obj{}, []string{"/opt/sim/run"}, []string{"--app"}},
		"args replace args":       {obj{"args": []string{"--seed", "42"}}, []string{"/opt/sim/run"}, []string{"--seed", "42"}},
		"command replaces both":   {obj{"command": []string{"sleep"}}, []string{"sleep"}, nil},
		"command and args":        {obj{"command": []string{"sleep"}, "args": []string{"1"}}, []string{"sleep"}, []string{"1"}},
	} {
		t.Run(name, func(t *testing.T) {
			b := jobBody("Default", 1).with("application", ref)
			for k, v := range tc.body {
				b = b.with(k, v)
			}
			j := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", b).obj(t)
			got := e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+j.str("id"), nil).obj(t)
			for _, f := range []string{"command", "args"} {
				if !cmp.Equal(got[f], j[f]) || !cmp.Equal(anyList(tc.body[f]), got[f]) {
					t.Errorf("%s: submitted %v, returned %v, read back %v", f, tc.body[f], j[f], got[f])
				}
			}
			rt := e.storedJob(j.str("id")).Runtime
			if !cmp.Equal(tc.wantCommand, rt.Command) || !cmp.Equal(tc.wantArg, rt.Args) {
				t.Errorf("runtime command %q args %q, want %q %q", rt.Command, rt.Args, tc.wantCommand, tc.wantArg)
			}
		})
	}
}

// anyList is v as it reads back from JSON into any (a list, an object); nil stays nil.
func anyList(v any) any {
	raw, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(raw, &out)
	return out
}

// Kubernetes-style label keys hold dots, which FerretDB refuses in field
// names: they are stored escaped, and the JSON and the label filter see
// them as they were given.
func TestLabelKeysWithDots(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	labels := obj{"example.com/team": "adas", "a.b.c": "1", "plain": "x"}
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1).with("labels", labels)).obj(t).str("id")
	other := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1).with("labels", obj{"example.com/team": "hmi"})).obj(t).str("id")
	got := e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+id, nil).obj(t)["labels"]
	if !cmp.Equal(any(map[string]any(labels)), got) {
		t.Errorf("labels read back %v, want %v", got, labels)
	}
	if got := e.storedJob(id).Labels; got["example.com/team"] != "adas" || got["a.b.c"] != "1" {
		t.Errorf("stored labels decode to %v", got)
	}
	for q, want := range map[string][]string{
		"example.com/team=adas":               {id},
		"example.com/team=hmi":                {other},
		"a.b.c=1":                             {id},
		"example.com/team=adas&label=plain=x": {id},
		"example.com/team=nobody":             nil,
	} {
		var ids []string
		for _, it := range e.must(http.StatusOK, http.MethodGet, v1+"/jobs?label="+url.PathEscape(q), nil).obj(t)["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		if !cmp.Equal(want, ids) {
			t.Errorf("label=%s: %v, want %v", q, ids, want)
		}
	}

	// A queue's node selector, labels and annotations likewise.
	attrs := obj{"node_selector": obj{"kubernetes.io/hostname": "n1"}, "labels": obj{"example.com/team": "adas"},
		"annotations": obj{"example.com/note.v1": "x"}}
	e.create("/queues", obj{"name": "dotted", "attributes": attrs})
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/queues/dotted", nil).obj(t)["attributes"]; !cmp.Equal(anyList(attrs), got) {
		t.Errorf("queue attributes read back %v, want %v", got, attrs)
	}
	patched := e.must(http.StatusOK, http.MethodPatch, v1+"/queues/dotted", obj{"attributes": obj{"node_selector": obj{"kubernetes.io/hostname": nil, "a.b": "c"}}}).obj(t)
	if got := patched["attributes"].(map[string]any)["node_selector"]; !cmp.Equal(any(map[string]any{"a.b": "c"}), got) {
		t.Errorf("patched node selector %v", got)
	}
}

// GET /jobs/{id}/scenario-exports lists the job's exports, oldest first,
// paged; an unknown job is a 404.
func TestListJobScenarioExports(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	job := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1)).obj(t).str("id")
	other := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1)).obj(t).str("id")
	var want []string
	for range 3 {
		want = append(want, e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+job+"/scenario-exports", obj{}).obj(t).str("id"))
	}
	e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+other+"/scenario-exports", obj{})

	page := func(query string) ([]string, string) {
		t.Helper()
		o := e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+job+"/scenario-exports"+query, nil).obj(t)
		var ids []string
		for _, it := range o["items"].([]any) {
			ex := it.(map[string]any)
			if ex["job_id"] != job || ex["status"] == nil {
				t.Errorf("item %v", ex)
			}
			ids = append(ids, ex["id"].(string))
		}
		next, _ := o["next_cursor"].(string)
		return ids, next
	}
	if got, next := page(""); !cmp.Equal(want, got) || next != "" {
		t.Errorf("all: %v (next %q), want %v", got, next, want)
	}
	first, next := page("?limit=2")
	rest, last := page("?limit=2&cursor=" + next)
	if !cmp.Equal(want, append(first, rest...)) || last != "" {
		t.Errorf("pages %v %v (next %q), want %v", first, rest, last, want)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/jobs/job-nope/scenario-exports", nil)
	r := e.must(http.StatusBadRequest, http.MethodGet, v1+"/jobs/"+job+"/scenario-exports?cursor="+job, nil)
	assertProblem(t, r, "cursor")
	none := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1)).obj(t).str("id")
	if items := e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+none+"/scenario-exports", nil).obj(t)["items"].([]any); len(items) != 0 {
		t.Errorf("a job without exports lists %v", items)
	}
}

// GET /jobs/{id}/events lists the job's own events from the stream, in
// order and paged, each with the job as it was; other jobs' events and
// other kinds are not in it.
func TestListJobEvents(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1)).obj(t).str("id")
	other := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1)).obj(t).str("id")
	e.create("/queues", queueBody("between"))
	e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+other+"/cancel", nil)
	e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+id+"/post-controller", nil)
	e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+id+"/cancel", nil)
	var want []string
	for _, ev := range e.events(events.FilterSubject(events.KindJob, "", id)) {
		want = append(want, ev.Type)
	}
	if len(want) != 3 {
		t.Fatalf("stream holds %v for the job, want 3 events", want)
	}

	page := func(query string) (types []string, seqs []float64, next string) {
		t.Helper()
		o := e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+id+"/events"+query, nil).obj(t)
		for _, it := range o["items"].([]any) {
			m := it.(map[string]any)
			data := m["data"].(map[string]any)
			if data["id"] != id || m["id"] == "" || m["time"] == nil || m["source"] == "" {
				t.Errorf("item %v", m)
			}
			types = append(types, m["type"].(string))
			seqs = append(seqs, m["sequence"].(float64))
		}
		next, _ = o["next_cursor"].(string)
		return types, seqs, next
	}
	all, seqs, next := page("")
	if !cmp.Equal(want, all) || next != "" || !slices.IsSorted(seqs) {
		t.Errorf("all: %v at %v (next %q), want %v", all, seqs, next, want)
	}
	first, _, next := page("?limit=2")
	rest, _, last := page("?limit=2&cursor=" + next)
	if !cmp.Equal(want, append(first, rest...)) || len(first) != 2 || last != "" {
		t.Errorf("pages %v %v (next %q), want %v", first, rest, last, want)
	}
	// The data is the job as it was: cancel_requested only in the last.
	o := e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+id+"/events", nil).obj(t)["items"].([]any)
	if o[0].(map[string]any)["data"].(map[string]any)["cancel_requested"] != nil ||
		o[2].(map[string]any)["data"].(map[string]any)["cancel_requested"] != true {
		t.Errorf("the events' data is not the job as it was: %v", o)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/jobs/job-nope/events", nil)
	assertProblem(t, e.must(http.StatusBadRequest, http.MethodGet, v1+"/jobs/"+id+"/events?cursor="+other, nil), "cursor")
	// The largest sequence is no item's: the page after it wrapped round to the first event.
	assertProblem(t, e.must(http.StatusBadRequest, http.MethodGet, v1+"/jobs/"+id+"/events?cursor=18446744073709551615", nil), "cursor")
}
