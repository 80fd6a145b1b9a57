package devidp_test

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
)

// GET /jobs?owner= selects the jobs whose owner has that subject or that
// username, within what the caller may read anyway; a job's events and
// exports are readable by who may read the job.
func TestListJobsByOwner(t *testing.T) {
	for _, indexed := range []bool{false, true} {
		t.Run(map[bool]string{false: "store", true: "indexed"}[indexed], func(t *testing.T) { testListJobsByOwner(t, indexed) })
	}
}

func testListJobsByOwner(t *testing.T, indexed bool) {
	e := startStore(t, devidp.Config{}, indexed)
	admin, user, viewer := bearer(e.login("admin")), bearer(e.login("user")), bearer(e.login("viewer"))
	submit := e.openAndRestricted(admin)
	userJob := submit(user, "open", "")
	adminOpen, adminRestricted := submit(admin, "open", "")["id"], submit(admin, "restricted", "")["id"]
	userSubject := userJob["owner"].(map[string]any)["subject"].(string)

	list := func(token, path string) []any {
		t.Helper()
		var ids []any
		for _, it := range e.must(http.StatusOK, token, http.MethodGet, v1+path, nil).obj(t)["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"])
		}
		return ids
	}
	for _, tc := range []struct {
		who, token, path string
		want             []any
	}{
		{"viewer", viewer, "/jobs?owner=user", []any{userJob["id"]}},
		{"viewer", viewer, "/jobs?owner=" + url.QueryEscape(userSubject), []any{userJob["id"]}},
		{"admin", admin, "/jobs?owner=admin", []any{adminOpen, adminRestricted}},
		{"user", user, "/jobs?owner=admin", []any{adminOpen}}, // not the restricted queue's
		{"admin", admin, "/queues/open/jobs?owner=admin", []any{adminOpen}},
		{"admin", admin, "/jobs?owner=admin&status=submitted&queue_id=restricted", []any{adminRestricted}},
		{"admin", admin, "/jobs?owner=nobody", nil},
		// A status of a job that has not ended is read by index on the
		// embedded store; what the caller may read is the same.
		{"user", user, "/jobs?status=submitted", []any{userJob["id"], adminOpen}},
		{"viewer", viewer, "/jobs?status=submitted&owner=admin", []any{adminOpen}},
		{"admin", admin, "/jobs?status=submitted", []any{userJob["id"], adminOpen, adminRestricted}},
		{"admin", admin, "/jobs?status=submitted&limit=1&cursor=" + userJob["id"].(string), []any{adminOpen}},
		{"user", user, "/jobs?status=running", nil},
		// Any other list is read in _id order there; the same again.
		{"user", user, "/jobs", []any{userJob["id"], adminOpen}},
		{"admin", admin, "/jobs?limit=2&cursor=" + userJob["id"].(string), []any{adminOpen, adminRestricted}},
		{"user", user, "/jobs?status=failed", nil},
	} {
		if got := list(tc.token, tc.path); !reflect.DeepEqual(tc.want, got) {
			t.Errorf("%s: GET %s = %v, want %v", tc.who, tc.path, got, tc.want)
		}
	}
	// A status that has ended is read by the index of the ended jobs
	// there; what the caller may read is the same.
	if _, err := e.db.Collection("jobs").UpdateMany(context.Background(), bson.D{},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "failed"}}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who, token, path string
		want             []any
	}{
		{"user", user, "/jobs?status=failed", []any{userJob["id"], adminOpen}},
		{"viewer", viewer, "/jobs?status=failed&owner=admin", []any{adminOpen}},
		{"admin", admin, "/jobs?status=failed", []any{userJob["id"], adminOpen, adminRestricted}},
		{"admin", admin, "/jobs?status=failed&limit=1&cursor=" + userJob["id"].(string), []any{adminOpen}},
		{"admin", admin, "/jobs?owner=admin&status=failed&queue_id=restricted", []any{adminRestricted}},
		{"user", user, "/jobs?status=failed&queue_id=restricted", nil},
		{"user", user, "/jobs?status=succeeded", nil},
	} {
		if got := list(tc.token, tc.path); !reflect.DeepEqual(tc.want, got) {
			t.Errorf("%s: GET %s = %v, want %v", tc.who, tc.path, got, tc.want)
		}
	}

	// A job's events and exports are read as the job is.
	for _, sub := range []string{"/events", "/scenario-exports"} {
		e.must(http.StatusForbidden, user, http.MethodGet, v1+"/jobs/"+adminRestricted.(string)+sub, nil)
		e.must(http.StatusOK, admin, http.MethodGet, v1+"/jobs/"+adminRestricted.(string)+sub, nil)
		e.must(http.StatusOK, viewer, http.MethodGet, v1+"/jobs/"+userJob["id"].(string)+sub, nil)
	}
}

// The stream gives a caller the events of its own jobs' exports in a queue
// it may not read, as GET /scenario-exports/{id} does, and not those of
// another's job there.
func TestStreamExportEventsOfOwnJob(t *testing.T) {
	e := start(t, devidp.Config{})
	admin, user, viewer := bearer(e.login("admin")), bearer(e.login("user")), bearer(e.login("viewer"))
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "open"})
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "dropbox",
		"access": map[string]any{"submit": []string{"group:adas", "user:admin"}, "read": []string{"role:rm-admin"}}})
	app := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	submit := func(token, queue string) string {
		t.Helper()
		return e.must(http.StatusCreated, token, http.MethodPost, v1+"/jobs", map[string]any{
			"queue_id": queue, "application": map[string]any{"id": app["id"]}, "worker_instances": 1}).obj(t)["id"].(string)
	}
	export := func(token, job string) string {
		t.Helper()
		return e.must(http.StatusAccepted, token, http.MethodPost, v1+"/jobs/"+job+"/scenario-exports", map[string]any{}).obj(t)["id"].(string)
	}
	userJob, adminJob := submit(user, "dropbox"), submit(admin, "dropbox")
	userExport, adminExport := export(user, userJob), export(admin, adminJob)
	e.must(http.StatusOK, user, http.MethodGet, v1+"/scenario-exports/"+userExport, nil)
	e.must(http.StatusForbidden, user, http.MethodGet, v1+"/scenario-exports/"+adminExport, nil)
	e.must(http.StatusForbidden, viewer, http.MethodGet, v1+"/scenario-exports/"+userExport, nil)

	all := "type=rm.export.requested,rm.job.submitted"
	// The outbox publishes each collection's events on its own: the marker
	// is submitted once the exports' events are in the stream.
	e.replayed(admin, all, userExport, adminExport)
	marker := submit(admin, "open")
	if got := e.replayed(user, all, marker); !got[userJob] || !got[userExport] || got[adminJob] || got[adminExport] {
		t.Errorf("user's stream saw %v, want its job %s and its export %s, not admin's %s and %s", got, userJob, userExport, adminJob, adminExport)
	}
	if got := e.replayed(viewer, all, marker); got[userJob] || got[userExport] || got[adminExport] {
		t.Errorf("viewer's stream saw %v, want none of the dropbox queue's", got)
	}
}

// The stream gives every reader the events of deployments and
// app-runtime-configs on a queue whose access.read does not name it, as
// GET /deployments/{id} and GET /app-runtime-config/… give them the
// resources: access.read is about the queue's jobs. The stream left them
// out, so a viewer watching the stream missed changes it could read.
func TestStreamDeploymentAndRuntimeConfigEventsAsTheyRead(t *testing.T) {
	e := start(t, devidp.Config{})
	admin, viewer := bearer(e.login("admin")), bearer(e.login("viewer"))
	submit := e.openAndRestricted(admin)
	arc := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/app-runtime-config/restricted/application/sim:1",
		map[string]any{"image": "sim:2", "working_directory": "/work"}).obj(t)
	dep := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/deployments",
		map[string]any{"name": "viz", "application_id": "sim:1", "queue_id": "restricted", "replicas": 0}).obj(t)
	arcID, depID := arc["id"].(string), dep["id"].(string)
	e.must(http.StatusOK, viewer, http.MethodGet, v1+"/deployments/"+depID, nil)
	e.must(http.StatusOK, viewer, http.MethodGet, v1+"/app-runtime-config/restricted/application/sim:1", nil)

	all := "type=rm.deployment.created,rm.app-runtime-config.created,rm.job.submitted"
	e.replayed(admin, all, arcID, depID)
	marker := submit(admin, "open", "")["id"].(string)
	if got := e.replayed(viewer, all, marker); !got[arcID] || !got[depID] {
		t.Errorf("viewer's stream saw %v, want the app-runtime-config %s and the deployment %s it may read", got, arcID, depID)
	}
}

// A caller's own job on a queue it may not read is listed by
// GET /queues/{id}/pending at its place among all the queue's waiting
// jobs, as GET /jobs/{id} gives it: the list counted only the jobs the
// caller may read, so the user's job read as first in line behind two.
func TestPendingPositionCountsJobsTheCallerMayNotRead(t *testing.T) {
	e := start(t, devidp.Config{})
	admin, user := bearer(e.login("admin")), bearer(e.login("user"))
	submit := e.openAndRestricted(admin)
	submit(admin, "restricted", "")
	submit(admin, "restricted", "")
	own := submit(user, "restricted", "")["id"].(string)
	items := e.must(http.StatusOK, user, http.MethodGet, v1+"/queues/restricted/pending", nil).obj(t)["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["id"] != own || items[0].(map[string]any)["queue_position"] != 3.0 {
		t.Errorf("user's GET /queues/restricted/pending = %v, want its job %s alone at queue_position 3", items, own)
	}
	if got := e.must(http.StatusOK, user, http.MethodGet, v1+"/jobs/"+own, nil).obj(t)["queue_position"]; got != 3.0 {
		t.Errorf("user's GET /jobs/%s: queue_position %v, want 3", own, got)
	}
}
