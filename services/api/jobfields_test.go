package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

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

// anyList is v as it reads back from JSON into any; nil stays nil.
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
}
