package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/store"
)

// A submission's dependencies are read by _id alone, which the embedded
// store answers from its _id index: with the tombstone and the caller's
// readable queues in the filter, FerretDB read every job for each
// submission that named one. What may be named is as before: a job the
// caller may read (a queue of theirs, or a job they own), not a deleted
// one.
func TestDependenciesReadByID(t *testing.T) {
	mon, scans := mongotest.FindsNotByID(store.Jobs)
	is := newTestIssuer(t)
	e := &authEnv{artifactEnv: newEnvSeen(t, is.authenticator(), true, mon), is: is}
	e.admin, e.alice, e.bob = is.bearer("root", "rm-admin"), is.bearer("alice", "rm-user"), is.bearer("bob", "rm-user")
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "secret",
		"access": map[string]any{"read": []string{"user:alice"}, "submit": []string{"user:alice"}}}, nil, "Authorization", e.admin)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Default"}, nil, "Authorization", e.admin)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1.0", "image": "registry.example/sim:1.0"}, nil, "Authorization", e.admin)
	submit := func(who, queue string, deps ...string) (string, answer) {
		body := e.jobBody(queue)
		var list []map[string]any
		for _, d := range deps {
			list = append(list, map[string]any{"job_id": d, "condition": "succeeded"})
		}
		if len(list) > 0 {
			body["depends_on"] = list
		}
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		a := e.do(http.MethodPost, "/jobs", bytes.NewReader(raw), "Content-Type", "application/json", "Authorization", who)
		var j events.Job
		_ = json.Unmarshal(a.body, &j)
		return j.ID, a
	}
	secret, _ := submit(e.alice, "secret")
	bobs, _ := submit(e.bob, "Default")
	gone, _ := submit(e.bob, "Default")
	if _, err := e.db.Collection(store.Jobs).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: gone}},
		bson.D{{Key: "$set", Value: bson.D{{Key: outbox.DeletedField, Value: true}}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, who string
		deps      []string
		want      int
	}{
		{"alice on her queue's job", e.alice, []string{secret}, http.StatusCreated},
		{"bob on his own job", e.bob, []string{bobs}, http.StatusCreated},
		{"bob on a queue he may not read", e.bob, []string{bobs, secret}, http.StatusUnprocessableEntity},
		{"the admin on any job", e.admin, []string{secret, bobs}, http.StatusCreated},
		{"a deleted job", e.admin, []string{gone}, http.StatusUnprocessableEntity},
	} {
		_, a := submit(c.who, "Default", c.deps...)
		if a.status != c.want {
			t.Errorf("%s: %s, want %d", c.name, a, c.want)
		} else if c.want != http.StatusCreated && !strings.Contains(string(a.body), `"depends_on[`) {
			t.Errorf("%s: %s does not name the dependency", c.name, a)
		}
	}
	if s := scans(); len(s) > 0 {
		t.Errorf("the API read jobs by another field than _id %d times, first %s", len(s), s[0])
	}
}
