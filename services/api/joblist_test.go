package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/services/api/internal/apitest"
)

// TestJobListsByIndex: on the embedded store a list of jobs is read by
// index, not by a store query that decodes every job the store holds: of
// an array, its jobs' _ids by the index of the arrays' jobs, then those
// jobs a page takes (indexed.Reader.ScanIDs); of a status a job has before
// it ends, every such job (then filtered and paged as the store pages); of
// a status that has ended, the _ids of the jobs of that status in _id order
// from the cursor on, by the index of the ended jobs (indexed.Reader.ScanWhere);
// of every status, the jobs in _id order from the cursor on
// (indexed.Reader.Scan). Either must select and
// order exactly what the same filters select of the jobs, page after page.
// The jobs here differ in status, queue, labels and array; each filter is
// checked against the jobs as written, and each list's reads are counted
// to have gone the way they are to go.
func TestJobListsByIndex(t *testing.T) {
	var byIndex, inOrder, endedInOrder atomic.Int64
	a := apitest.StartIndexedWith(t, apitest.TestLogger(t), func(l indexed.Lookup) indexed.Lookup {
		return countingLookup{Lookup: l, matching: &byIndex, after: &inOrder, matchingAfter: &endedInOrder}
	})
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

	for _, status := range append(statuses, "") {
		for _, f := range []struct{ queue, team, array string }{{}, {queue: "qa"}, {queue: qb}, {team: "x"}, {queue: "qa", team: "x"}, {array: arr}, {array: arr, team: "y"}} {
			var want []string
			for _, j := range jobs {
				if (status == "" || j.status == status) && (f.queue == "" || j.queue == map[string]string{"qa": qa, "qb": qb, qb: qb}[f.queue]) &&
					(f.team == "" || j.team == f.team) && (f.array == "" || j.array == f.array) {
					want = append(want, j.id)
				}
			}
			q := url.Values{"limit": {"2"}}
			if status != "" {
				q.Set("status", status)
			}
			for k, v := range map[string]string{"queue_id": f.queue, "array_id": f.array} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if f.team != "" {
				q.Set("label", "team="+f.team)
			}
			var got []string
			byIndex0, inOrder0, ended0 := byIndex.Load(), inOrder.Load(), endedInOrder.Load()
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
			// (Reads by index also come from the estimates of pending jobs.)
			n, m, k := byIndex.Load()-byIndex0, inOrder.Load()-inOrder0, endedInOrder.Load()-ended0
			var wrong bool
			switch {
			case f.array != "" || status != "" && !events.JobFinal(status): // by index only
				wrong = n == 0 || m != 0 || k != 0
			case f.team != "" || f.queue != "": // a label or a queue, with an ended status or none: their jobs' _ids in order
				wrong = m != 0 || k == 0
			case status != "": // an ended status: its own _ids in order
				wrong = m != 0 || k == 0
			default: // every status: every _id in order
				wrong = m == 0 || k != 0
			}
			if wrong {
				t.Errorf("GET /jobs?%s: %d reads by index, %d of _ids in order, %d of an ended status's _ids in order", q.Encode(), n, m, k)
			}
		}
	}
}

// countingLookup counts the reads of a job list: by an index of fields
// (MatchingIDs), of _ids in order (IDsAfter), and of the _ids of those
// matching an index in order (MatchingIDsAfter).
type countingLookup struct {
	indexed.Lookup
	matching, after, matchingAfter *atomic.Int64
}

func (c countingLookup) MatchingIDs(ctx context.Context, coll string, where, residual []indexed.Cond) ([]string, error) {
	if coll == "jobs" {
		c.matching.Add(1)
	}
	return c.Lookup.MatchingIDs(ctx, coll, where, residual)
}

func (c countingLookup) IDsAfter(ctx context.Context, coll, after string, limit int) ([]string, error) {
	c.after.Add(1)
	return c.Lookup.IDsAfter(ctx, coll, after, limit)
}

func (c countingLookup) MatchingIDsAfter(ctx context.Context, coll string, where []indexed.Cond, after string, limit int) ([]string, error) {
	c.matchingAfter.Add(1)
	return c.Lookup.MatchingIDsAfter(ctx, coll, where, after, limit)
}
