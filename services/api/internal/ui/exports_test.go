package ui_test

import (
	"context"
	"net/http"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A job's page shows an export's warnings (paths that differ only in case)
// under its status.
func TestJobPageShowsExportWarnings(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Zips", "maximum_allowed_worker_instances": 4}, http.StatusCreated)
	id := e.submit("zipped", "Zips", 1, nil)
	x := e.must(http.MethodPost, "/api/resources/v1/jobs/"+id+"/scenario-exports", map[string]any{"include": []string{"asset"}}, http.StatusAccepted)
	// No export service runs: the export is made ready by hand, as it
	// records one whose paths clash in case.
	warning := "assets/Map.xodr and assets/map.xodr differ only in case: unpacked where case is ignored (macOS, Windows), one replaces the other"
	if _, err := e.db.Collection("scenario_exports").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: x["id"]}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "ready"}, {Key: "file_count", Value: 2}, {Key: "warnings", Value: bson.A{warning}}}}}); err != nil {
		t.Fatal(err)
	}
	wantIn(t, "job page", e.page("/ui/jobs/"+id), `<ul class="warnings"><li>`+warning+`</li></ul>`)
}
