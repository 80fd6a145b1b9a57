package api_test

// One test per defect of issue 14 ("what third-party clients and a new user
// tripped on"); the generated client and kin-openapi's validator are in
// the contracttest module.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rawDoc is the served document as plain JSON.
func rawDoc(t *testing.T, e *env) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(e.must(http.StatusOK, http.MethodGet, v1+"/openapi.json", nil).Body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

// 1. The document has one servers entry, /api/resources/v1, and its paths
// are relative to it: root + server + path is a route.
func TestDocumentPathsAreRelativeToServers(t *testing.T) {
	e := startEnv(t)
	doc := rawDoc(t, e)
	servers, _ := doc["servers"].([]any)
	if len(servers) != 1 || dig(servers[0], "url") != v1 {
		t.Fatalf("servers = %v, want [{url: %s}]", doc["servers"], v1)
	}
	for p := range doc["paths"].(map[string]any) {
		if strings.HasPrefix(p, v1) {
			t.Errorf("path %s repeats the servers entry", p)
		}
	}
	for _, p := range []string{"/queues", "/plugins", "/applications", "/deployments", "/jobs", "/app-runtime-config"} {
		if dig(doc, "paths", p, "get") == nil {
			t.Errorf("GET %s is not in the document", p)
			continue
		}
		e.must(http.StatusOK, http.MethodGet, dig(servers[0], "url").(string)+p, nil)
	}
}

// 2. A name that looks like an id is looked up as a name once no id matches.
func TestNamesThatLookLikeIDs(t *testing.T) {
	e := startEnv(t)
	q := e.create("/queues", queueBody("q-lookalike"))
	p := e.create("/plugins", pluginBody("plg-x"))
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/queues/q-lookalike", nil).obj(t); got.str("id") != q.str("id") {
		t.Errorf("GET /queues/q-lookalike = %v", got)
	}
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/plugins/plg-x", nil).obj(t); got.str("id") != p.str("id") {
		t.Errorf("GET /plugins/plg-x = %v", got)
	}
	e.must(http.StatusOK, http.MethodPatch, v1+"/queues/q-lookalike", obj{"description": "found by name"})

	// A name of an id's exact form would hide behind the id (of a queue
	// stored now or later): refused, on create and on rename, naming name.
	for _, r := range []struct{ method, path string }{{http.MethodPost, "/queues"}, {http.MethodPatch, "/queues/q-lookalike"}} {
		body := queueBody(q.str("id"))
		if r.method == http.MethodPatch {
			body = obj{"name": q.str("id")}
		}
		got := e.must(http.StatusUnprocessableEntity, r.method, v1+r.path, body)
		if !strings.Contains(string(got.Body), `"field":"name"`) || !strings.Contains(string(got.Body), "form of a queue id") {
			t.Errorf("%s %s named %s: %s", r.method, r.path, q.str("id"), got.Body)
		}
	}
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/queues/"+q.str("id"), nil).obj(t); got.str("name") != "q-lookalike" {
		t.Errorf("after the refused rename the queue is %v", got)
	}
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/queues/q-lookalike", nil)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/queues/q-lookalike", nil)
}

// 3. A malformed or foreign cursor is a 400 naming cursor, not the first page.
func TestForeignCursorIsRefused(t *testing.T) {
	e := startEnv(t)
	q := e.create("/queues", queueBody("Default"))
	e.create("/queues", queueBody("Other"))
	job := e.create("/jobs", jobBody("Default", 1)).str("id")
	for _, path := range []string{
		"/jobs?cursor=garbage", "/jobs?cursor=" + q.str("id"), "/queues?cursor=garbage", "/queues?cursor=job-01M8NCMF0Z1DKP3YY2AYV5N0TT",
		"/queues/Default/jobs?cursor=garbage", "/plugins?cursor=" + q.str("id"),
		"/queues?cursor=" + strings.Repeat("a", 65), "/queues?cursor=a%2Fb", // the schema's length and pattern
		"/jobs/" + job + "/artifacts?cursor=garbage",
	} {
		r := e.must(http.StatusBadRequest, http.MethodGet, v1+path, nil)
		if !strings.Contains(string(r.Body), `"field":"cursor"`) {
			t.Errorf("GET %s: %s, want the problem to name cursor", path, r.Body)
		}
	}
	page := e.must(http.StatusOK, http.MethodGet, v1+"/queues?limit=1", nil).obj(t)
	next := page.str("next_cursor")
	if next == "" {
		t.Fatalf("no next_cursor: %v", page)
	}
	e.must(http.StatusOK, http.MethodGet, v1+"/queues?limit=1&cursor="+next, nil)
}

// 4. Every optional field of a merge patch may be null, and the document
// says what null does; a patch with null resets a queue to unlimited.
func TestMergePatchSchemasTakeNull(t *testing.T) {
	e := startEnv(t)
	doc := rawDoc(t, e)
	schemas := dig(doc, "components", "schemas").(map[string]any)
	for _, name := range []string{"QueueMergePatch", "PluginMergePatch", "ApplicationMergePatch", "AppRuntimeConfigMergePatch", "DeploymentMergePatch", "ResourceLimitsPatch", "QueueSchedulingPatch"} {
		s, ok := schemas[name].(map[string]any)
		if !ok {
			t.Errorf("no schema %s", name)
			continue
		}
		body := strings.TrimSuffix(strings.TrimSuffix(name, "MergePatch"), "Patch")
		required := map[string]bool{}
		if full, ok := schemas[body+"Body"].(map[string]any); ok {
			for _, r := range full["required"].([]any) {
				required[r.(string)] = true
			}
		}
		for field, prop := range s["properties"].(map[string]any) {
			raw, _ := json.Marshal(prop)
			if required[field] {
				continue
			}
			if !strings.Contains(string(raw), `"null"`) {
				t.Errorf("%s.%s does not take null: %s", name, field, raw)
			}
			if !strings.Contains(string(raw), "null: ") && !strings.Contains(string(raw), "null or absent") {
				t.Errorf("%s.%s does not say what null does: %s", name, field, raw)
			}
		}
	}
	e.create("/queues", queueBody("Default").with("maximum_allowed_worker_instances", 10))
	got := e.must(http.StatusOK, http.MethodPatch, v1+"/queues/Default", obj{"maximum_allowed_worker_instances": nil, "resource_limits": obj{"cpu": nil}}).obj(t)
	if got["maximum_allowed_worker_instances"] != nil {
		t.Errorf("after a patch with null: %v, want unlimited (null)", got["maximum_allowed_worker_instances"])
	}
}

// 5. The label filter is an array of strings, form style, exploded: never
// typed null, which validators refuse.
func TestLabelParameterIsArrayOfStrings(t *testing.T) {
	e := startEnv(t)
	doc := rawDoc(t, e)
	seen := 0
	for p, item := range doc["paths"].(map[string]any) {
		if !strings.HasSuffix(p, "/jobs") {
			continue
		}
		params, _ := dig(item, "get", "parameters").([]any)
		for _, param := range params {
			if dig(param, "name") != "label" {
				continue
			}
			if typ := dig(param, "schema", "type"); typ != "array" || dig(param, "schema", "items", "type") != "string" || dig(param, "explode") != true {
				raw, _ := json.Marshal(param)
				t.Errorf("GET %s label parameter: %s", p, raw)
			}
			if style := dig(param, "style"); style != nil && style != "form" {
				t.Errorf("GET %s label style %v", p, style)
			}
			seen++
		}
	}
	if seen != 2 {
		t.Errorf("found %d label parameters, want 2 (GET /jobs and GET /queues/{queue_id}/jobs)", seen)
	}
	// No parameter of any operation is typed null.
	raw, _ := json.Marshal(doc["paths"])
	if strings.Contains(string(raw), `"in":"query","name":"label","schema":{"description":"key=value; repeat for several (all must match)","items":{"type":"string"},"type":["array","null"]`) {
		t.Error("a label parameter is still typed [array, null]")
	}
}

// 6. DELETE /jobs/{id} honours If-Match, and the document says so.
func TestDeleteJobHonoursIfMatch(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	j := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 2))
	id := j.obj(t).str("id")
	e.must(http.StatusPreconditionFailed, http.MethodDelete, v1+"/jobs/"+id, nil, "If-Match", `"999"`)
	e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+id, nil)
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/jobs/"+id, nil, "If-Match", j.Header.Get("ETag"))
	e.must(http.StatusNotFound, http.MethodGet, v1+"/jobs/"+id, nil)
	doc := rawDoc(t, e)
	for p, item := range doc["paths"].(map[string]any) {
		del := dig(item, "delete")
		if del == nil {
			continue
		}
		raw, _ := json.Marshal(del)
		if !strings.Contains(string(raw), `"name":"If-Match"`) || dig(del, "responses", "412") == nil {
			t.Errorf("DELETE %s does not document If-Match and 412", p)
		}
	}
}

// 7. A job submitted without a name is named after its id.
func TestJobNameDefaultsToID(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	j := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1).with("name", nil)).obj(t)
	if j.str("name") != j.str("id") || j.str("name") == "" {
		t.Errorf("name %q, id %q: want the name to default to the id", j.str("name"), j.str("id"))
	}
	named := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1).with("name", "sweep-42")).obj(t)
	if named.str("name") != "sweep-42" {
		t.Errorf("name %q, want sweep-42", named.str("name"))
	}
}

// 8. Every job event type pkg/events defines is documented, with the _
// queue segment and how to follow one queue's jobs by name.
func TestEventTypesDocumented(t *testing.T) {
	types, err := os.ReadFile("../../pkg/events/types.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	api := string(doc)
	list := regexp.MustCompile("`rm\\.job\\.([a-z|-]+)`").FindStringSubmatch(api)
	if list == nil {
		t.Fatal("docs/API.md has no list of job event types")
	}
	documented := map[string]bool{}
	for _, a := range strings.Split(list[1], "|") {
		documented[a] = true
	}
	for _, m := range regexp.MustCompile(`"rm\.job\.([a-z-]+)"`).FindAllStringSubmatch(string(types), -1) {
		if !documented[m[1]] {
			t.Errorf("rm.job.%s is emitted but not in docs/API.md", m[1])
		}
	}
	for _, want := range []string{"use `_` as the\n  queue segment", "rm.events.job.q-….>", "/events?queue_id=Default"} {
		if !strings.Contains(api, want) {
			t.Errorf("docs/API.md does not say %q", want)
		}
	}
}

// 9. The document is as strict as the server on requests and open on responses.
func TestDocumentMatchesServerStrictness(t *testing.T) {
	e := startEnv(t)
	doc := rawDoc(t, e)
	schemas := dig(doc, "components", "schemas").(map[string]any)
	for _, q := range []string{"cpu", "memory"} {
		if p, _ := dig(schemas, "ResourceLimits", "properties", q, "pattern").(string); p == "" {
			t.Errorf("ResourceLimits.%s has no pattern", q)
		}
	}
	oneOf, _ := dig(schemas, "PluginBody", "oneOf").([]any)
	if len(oneOf) != 4 {
		t.Errorf("PluginBody oneOf by type: %v", oneOf)
	}
	for _, name := range []string{"KubernetesPluginConfig", "DockerPluginConfig", "LocalPluginConfig", "SimulatedPluginConfig"} {
		if dig(schemas, name, "additionalProperties") != false {
			t.Errorf("%s is not strict", name)
		}
	}
	for _, name := range []string{"QueueBody", "PluginBody", "JobBody", "ResourceLimits", "QueueAttributes"} {
		if dig(schemas, name, "additionalProperties") != false {
			t.Errorf("request schema %s allows unknown fields", name)
		}
	}
	for _, name := range []string{"Queue", "Plugin", "Job", "Application", "ResourceLimitsOut", "QueueAttributesOut", "Problem"} {
		if s, ok := schemas[name].(map[string]any); !ok || s["additionalProperties"] == false {
			t.Errorf("response schema %s refuses fields added later", name)
		}
	}
	if ref := dig(schemas, "Queue", "properties", "resource_limits", "$ref"); ref != "#/components/schemas/ResourceLimitsOut" {
		t.Errorf("Queue.resource_limits refers to %v", ref)
	}
	for p, item := range doc["paths"].(map[string]any) {
		for m, op := range item.(map[string]any) {
			if dig(op, "requestBody") != nil && dig(op, "responses", "415") == nil {
				t.Errorf("%s %s takes a body but does not document 415", strings.ToUpper(m), p)
			}
			if m == "patch" && dig(op, "requestBody", "content", "application/json") == nil {
				t.Errorf("PATCH %s does not document application/json", p)
			}
		}
	}
	// The server does what the document says: 415 for another media type,
	// application/json taken for a PATCH.
	e.create("/queues", queueBody("Default"))
	e.must(http.StatusOK, http.MethodPatch, v1+"/queues/Default", `{"description":"plain JSON"}`, "Content-Type", "application/json")
	r := e.must(http.StatusUnsupportedMediaType, http.MethodPost, v1+"/queues", `{"name":"x"}`, "Content-Type", "text/plain")
	if !strings.Contains(string(r.Body), "application/json") {
		t.Errorf("415 does not say which type is expected: %s", r.Body)
	}
}

// 10. Resuming after an event the stream does not have is a 416.
func TestLastEventIDBeyondStream(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	// Bounded: before the fix the answer was an endless 200 stream.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+v1+"/events", nil)
	req.Header.Set("Last-Event-ID", "999999")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestedRangeNotSatisfiable || !strings.Contains(string(body), `"field":"Last-Event-ID"`) {
		t.Errorf("Last-Event-ID beyond the stream = %d %s, want 416 naming Last-Event-ID", res.StatusCode, body)
	}
	// Within the stream, it resumes.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, e.base+v1+"/events", nil)
	req.Header.Set("Last-Event-ID", "0")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("Last-Event-ID 0 = %d, want 200", res.StatusCode)
	}
}

// 11. A 3 MiB body gets the 413 problem every time, not a reset: the
// server reads the rest of the body before it answers.
func TestOversizedBodyGetsTheProblem(t *testing.T) {
	e := startEnv(t)
	body := []byte(`{"name":"` + strings.Repeat("x", 3<<20) + `"}`)
	for i := range 4 {
		// A fresh connection each time, as the client that saw resets used.
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s/queues HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", v1, len(body))
		// Sent as a client on a real network does, a piece at a time: a
		// server that answers and closes while the rest is on its way makes
		// the client's kernel reset the connection, and the answer is lost.
		var sendErr error
		for off := 0; off < len(body) && sendErr == nil; off += 32 << 10 {
			_, sendErr = conn.Write(body[off:min(off+32<<10, len(body))])
			time.Sleep(10 * time.Millisecond) // about 1 s for the whole body, longer than net/http's 500 ms before it closes
		}
		if sendErr != nil {
			t.Errorf("try %d: sending the body: %v", i, sendErr)
			conn.Close()
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		answer, err := io.ReadAll(conn)
		conn.Close()
		if err != nil && len(answer) == 0 {
			t.Errorf("try %d: reading the answer: %v", i, err)
			continue
		}
		if !bytes.HasPrefix(answer, []byte("HTTP/1.1 413")) || !bytes.Contains(answer, []byte("application/problem+json")) {
			t.Errorf("try %d: %q, want the 413 problem", i, trimTo(answer, 300))
		}
	}
}

func trimTo(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// 12. Messages a user reads: what exists, where the JSON breaks, which
// content type is expected, what an image is; and descriptions keep their
// <placeholders> for Swagger UI.
func TestHumanMessages(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	for name, tc := range map[string]struct {
		method, path, body string
		headers            []string
		status             int
		detail             string
	}{
		"duplicate name": {http.MethodPost, "/queues", `{"name":"Default"}`, nil, 409, `"detail":"a queue named Default already exists"`},
		"bad JSON":       {http.MethodPost, "/queues", `{"name": "x",, }`, nil, 400, `not valid JSON at byte 14 (line 1, column 14): expected a field name in double quotes, found ','`},
		"truncated JSON": {http.MethodPost, "/queues", `{"name": "x"`, nil, 400, `the body ends at byte 12 before the JSON value is complete`},
		"bad patch JSON": {http.MethodPatch, "/queues/Default", `{"a":,}`, nil, 400, `not valid JSON at byte 6`},
		"content type":   {http.MethodPost, "/queues", `{"name":"x"}`, []string{"Content-Type", "text/plain"}, 415, `"detail":"the body is text/plain; this endpoint takes application/json"`},
		"patch type":     {http.MethodPatch, "/queues/Default", `{}`, []string{"Content-Type", "text/plain"}, 415, `application/merge-patch+json`},
		"image path": {http.MethodPost, "/applications", `{"name":"a","version":"1","image":"/bin/sh"}`, nil, 422,
			`{"field":"image","message":"expected a container image reference such as registry.example/sim:1.2`},
		"name": {http.MethodPost, "/queues", `{"name":"-x"}`, nil, 422, `"message":"expected a name: letters, digits`},
		"bound in full": {http.MethodPost, "/jobs", `{"queue_id":"Default","worker_instances":1,"application":{"image":"i"},"priority":2000000}`, nil, 422,
			`"message":"expected number <= 1000000"`},
		"key twice":           {http.MethodPost, "/queues", `{"name":5,"name":"x"}`, nil, 422, `{"field":"name","message":"given twice in one object"}`},
		"number out of range": {http.MethodPost, "/queues", `{"name":"x","maximum_allowed_worker_instances":1e400}`, nil, 400, `not valid JSON at byte 53: the number 1e400 is out of range`},
		"NUL":                 {http.MethodPost, "/queues", `{"name":"x","description":"a\u0000"}`, nil, 422, `{"field":"description","message":"contains a NUL byte, which no field takes"}`},
		"upper-case type":     {http.MethodPost, "/queues", `{"name":"upper"}`, []string{"Content-Type", "Application/JSON; Charset=UTF-8"}, 201, `"name":"upper"`},
		"another charset":     {http.MethodPost, "/queues", `{"name":"x"}`, []string{"Content-Type", "application/json; charset=utf-16"}, 415, `this API reads JSON in UTF-8`},
		"not a media type":    {http.MethodPost, "/queues", `{"name":"x"}`, []string{"Content-Type", "application/json;;"}, 415, `is not a media type`},
		"JSON Patch":          {http.MethodPatch, "/queues/Default", `{"description":"x"}`, []string{"Content-Type", "application/json-patch+json"}, 415, `application/merge-patch+json`},
	} {
		r := e.do(tc.method, v1+tc.path, tc.body, tc.headers...)
		if r.Status != tc.status || !strings.Contains(string(r.Body), tc.detail) {
			t.Errorf("%s: %s, want %d with %s", name, r, tc.status, tc.detail)
		}
		if strings.Contains(string(r.Body), "^[") || strings.Contains(string(r.Body), "looking for beginning") {
			t.Errorf("%s: the message quotes a regular expression or encoding/json: %s", name, r.Body)
		}
	}
	raw := string(e.must(http.StatusOK, http.MethodGet, v1+"/openapi.json", nil).Body)
	// Outside code spans, a <word> is an HTML tag to Swagger UI's Markdown and vanishes.
	bare := regexp.MustCompile("(?:^|[^`])<[A-Za-z][A-Za-z0-9_ ]*>")
	var doc struct {
		Info struct{ Description string } `json:"info"`
	}
	_ = json.Unmarshal([]byte(raw), &doc)
	for _, d := range regexp.MustCompile(`"description":"((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(raw, -1) {
		var text string
		_ = json.Unmarshal([]byte(`"`+d[1]+`"`), &text)
		for _, span := range regexp.MustCompile("`[^`]*`").Split(text, -1) {
			if bare.MatchString(span) {
				t.Errorf("description with a bare placeholder: %q", text)
				break
			}
		}
	}
	if !strings.Contains(doc.Info.Description, "`ETag: \"<version>\"`") {
		t.Errorf("the API description does not keep ETag: \"<version>\" in a code span")
	}
}

// A path parameter is decoded however the client escaped it: %2E%2E is
// "..", and the 404 names it so.
func TestPathParametersAreDecoded(t *testing.T) {
	e := startEnv(t)
	q := e.create("/queues", queueBody("a.b")).str("id")
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/queues/a%2Eb", nil).obj(t); got.str("id") != q {
		t.Errorf("GET /queues/a%%2Eb = %v, want queue a.b", got)
	}
	r := e.must(http.StatusNotFound, http.MethodGet, v1+"/jobs/%2E%2E", nil)
	if d := r.obj(t).str("detail"); d != `job ".." not found` {
		t.Errorf("GET /jobs/%%2E%%2E: detail %q", d)
	}
}
