package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/services/api/internal/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// An export request stored, its Idempotency-Key's record never completed
// (the API died): the retry after the claim expired answers 202 with that
// export and stores no second one.
func TestIdempotentExportRetryAfterDeath(t *testing.T) {
	e := newArtifactEnv(t)
	job := e.job()
	if a := e.put("/jobs/"+job+"/artifacts/scenarios/s-001/a.xosc", []byte("x")); a.status != http.StatusCreated {
		t.Fatalf("PUT = %s", a)
	}
	path := "/jobs/" + job + "/scenario-exports"
	post := func() ScenarioExport {
		t.Helper()
		a := e.do(http.MethodPost, path, strings.NewReader(`{"samples": ["s-001"]}`), "Content-Type", "application/json", "Idempotency-Key", "x")
		var x ScenarioExport
		if a.status != http.StatusAccepted || json.Unmarshal(a.body, &x) != nil || a.header.Get("Location") != BasePath+"/scenario-exports/"+x.ID {
			t.Fatalf("POST = %s %v", a, a.header)
		}
		return x
	}
	first := post()
	res, err := e.db.Collection(store.IdempotencyKeys).UpdateOne(context.Background(),
		bson.D{{Key: "_id", Value: "POST " + BasePath + path + " x"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "done", Value: false}, {Key: "claimed_until", Value: time.Now().Add(-time.Second)}}}})
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("rewrite the key's record: %v", err)
	}
	if again := post(); again.ID != first.ID {
		t.Errorf("retry answered %s, want %s", again.ID, first.ID)
	}
	if n := e.count(store.Exports); n != 1 {
		t.Errorf("%d exports stored, want 1", n)
	}
}
