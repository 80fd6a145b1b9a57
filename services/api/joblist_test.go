package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/services/api/internal/apitest"
)

// A list of jobs of a status a job has before it ends is read by index on
// the embedded store (every such job, then filtered and paged as the store
// pages), not by a store query that decodes every job the store holds: it
// must select and order exactly what the same filters select of the jobs,
// page after page. The jobs here differ in status, queue, labels and
// array; each filter is checked against the jobs as written.
func TestActiveJobListsByIndex(t *testing.T) {
	a := apitest.StartIndexed(t, apitest.TestLogger(t))
	e := &env{t: t, base: a.URL, db: a.DB, js: a.JS, ob: a.Outbox, svc: a.Svc, ferret: a.Ferret}
	qa, qb := e.create("/queues", queueBody("qa")).str("id"), e.create("/queues", queueBody("qb")).str("id")
	arr := e.create("/job-arrays", obj{"job": jobBody("qa", 1).with("labels", obj{"team": "x"}), "count": 3}).str("id")
	type job struct{ id, queue, status, team, array string }
	var jobs []job
	statuses := []string{"submitted", "pending", "admitted", "running", "succeeded", "failed", "cancelled"}
	for i := range 21 {
		queue, team := []string{"qa", "qb"}[i%2], []string{"x", "y", ""}[i%3]
		body := jobBody(queue, 1)
		if team != "" {
			body = body.with("labels", obj{"team": team, "n": fmt.Sprint(i)})
		}
		jobs = append(jobs, job{id: e.create("/jobs", body).str("id"), queue: map[string]string{"qa": qa, "qb": qb}[queue], team: team, status: statuses[i%7]})
	}
	cur, err := e.db.Collection("jobs").Find(context.Background(), bson.D{{Key: "array_id", Value: arr}})
	if err != nil {
		t.Fatal(err)
	}
	for cur.Next(context.Background()) {
		jobs = append(jobs, job{id: cur.Current.Lookup("_id").StringValue(), queue: qa, team: "x", array: arr, status: "submitted"})
	}
	if len(jobs) != 24 {
		t.Fatalf("%d jobs, want 24", len(jobs))
	}
	// The statuses as the scheduler and the launcher would write them.
	for _, j := range jobs {
		if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: j.id}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: j.status}}}}); err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(jobs, func(a, b job) int { return strings.Compare(a.id, b.id) })

	for _, status := range statuses[:4] {
		for _, f := range []struct{ queue, team, array string }{{}, {queue: "qa"}, {queue: qb}, {team: "x"}, {queue: "qa", team: "x"}, {array: arr}, {array: arr, team: "y"}} {
			var want []string
			for _, j := range jobs {
				if j.status == status && (f.queue == "" || j.queue == map[string]string{"qa": qa, "qb": qb, qb: qb}[f.queue]) &&
					(f.team == "" || j.team == f.team) && (f.array == "" || j.array == f.array) {
					want = append(want, j.id)
				}
			}
			q := url.Values{"status": {status}, "limit": {"2"}}
			for k, v := range map[string]string{"queue_id": f.queue, "array_id": f.array} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if f.team != "" {
				q.Set("label", "team="+f.team)
			}
			var got []string
			for page := 0; ; page++ {
				o := e.must(http.StatusOK, http.MethodGet, v1+"/jobs?"+q.Encode(), nil).obj(t)
				items, _ := o["items"].([]any)
				if len(items) > 2 || page > 20 {
					t.Fatalf("%s: page %d of %d items", q.Encode(), page, len(items))
				}
				for _, it := range items {
					got = append(got, it.(map[string]any)["id"].(string))
				}
				next, _ := o["next_cursor"].(string)
				if next == "" {
					break
				}
				q.Set("cursor", next)
			}
			if !slices.Equal(got, want) {
				t.Errorf("GET /jobs?%s: %v\nwant %v", q.Encode(), got, want)
			}
		}
	}
}
