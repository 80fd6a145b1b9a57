package contracttest

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	client "github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
)

// baseURL is what a client of the document uses: the server's root plus the
// document's servers entry.
func baseURL(t *testing.T, root string) string {
	t.Helper()
	res, err := http.Get(root + "/api/resources/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URL != "/api/resources/v1" {
		t.Fatalf("servers = %+v, want one entry /api/resources/v1", doc.Servers)
	}
	return root + doc.Servers[0].URL
}

// TestGeneratedClient drives the API with the client oapi-codegen generates
// from the served document, given the documented base URL: create, list,
// get by name, a merge patch that sends null (back to unlimited), delete.
func TestGeneratedClient(t *testing.T) {
	ctx := context.Background()
	c, err := client.NewClientWithResponses(baseURL(t, startAPI(t)))
	if err != nil {
		t.Fatal(err)
	}

	created, err := c.CreateQueueWithResponse(ctx, &client.CreateQueueParams{}, client.QueueBody{
		Name: "Default", MaximumAllowedWorkerInstances: nullable.NewNullableWithValue[int64](10),
	})
	if err != nil || created.JSON201 == nil {
		t.Fatalf("create queue: %v %s", err, bodyOf(created))
	}
	if v, _ := created.JSON201.MaximumAllowedWorkerInstances.Get(); v != 10 {
		t.Fatalf("created limit = %v, want 10", v)
	}

	list, err := c.ListQueuesWithResponse(ctx, &client.ListQueuesParams{})
	if err != nil || list.JSON200 == nil {
		t.Fatalf("list queues: %v %s", err, bodyOf(list))
	}
	names := map[string]bool{}
	for _, q := range list.JSON200.Items {
		names[q.Name] = true
	}
	if !names["Default"] || !names["simulation-controller-queue"] {
		t.Errorf("list has %v, want Default and the built-in queues", names)
	}

	got, err := c.GetQueueWithResponse(ctx, "Default")
	if err != nil || got.JSON200 == nil || *got.JSON200.Id != *created.JSON201.Id {
		t.Fatalf("get queue by name: %v %s", err, bodyOf(got))
	}

	etag := got.HTTPResponse.Header.Get("ETag")
	patch := client.QueueMergePatch{MaximumAllowedWorkerInstances: nullable.NewNullNullable[int64]()}
	patched, err := c.PatchQueueWithApplicationMergePatchPlusJSONBodyWithResponse(ctx, "Default", &client.PatchQueueParams{IfMatch: &etag}, patch)
	if err != nil || patched.JSON200 == nil {
		t.Fatalf("patch queue with null: %v %s", err, bodyOf(patched))
	}
	if !patched.JSON200.MaximumAllowedWorkerInstances.IsNull() {
		t.Errorf("after a patch with null, maximum_allowed_worker_instances = %+v, want null (unlimited)", patched.JSON200.MaximumAllowedWorkerInstances)
	}

	stale := etag // the version before the patch
	refused, err := c.DeleteQueueWithResponse(ctx, "Default", &client.DeleteQueueParams{IfMatch: &stale})
	if err != nil || refused.StatusCode() != http.StatusPreconditionFailed {
		t.Fatalf("delete with a stale If-Match: %v %s, want 412", err, bodyOf(refused))
	}
	current := patched.HTTPResponse.Header.Get("ETag")
	deleted, err := c.DeleteQueueWithResponse(ctx, "Default", &client.DeleteQueueParams{IfMatch: &current})
	if err != nil || deleted.StatusCode() != http.StatusNoContent {
		t.Fatalf("delete queue: %v %s", err, bodyOf(deleted))
	}
	gone, err := c.GetQueueWithResponse(ctx, "Default")
	if err != nil || gone.StatusCode() != http.StatusNotFound || gone.ApplicationproblemJSON404 == nil {
		t.Fatalf("get deleted queue: %v %s, want a 404 problem", err, bodyOf(gone))
	}
}

type response interface {
	StatusCode() int
}

func bodyOf(r response) string {
	if r == nil {
		return "(no response)"
	}
	raw, _ := json.Marshal(r)
	return http.StatusText(r.StatusCode()) + " " + string(raw)
}
