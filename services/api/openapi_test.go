package api_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"
)

// openAPIDoc is the part of the OpenAPI document the tests read.
type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas         map[string]json.RawMessage `json:"schemas"`
		SecuritySchemes map[string]struct {
			Type   string `json:"type"`
			Scheme string `json:"scheme"`
		} `json:"securitySchemes"`
	} `json:"components"`
	Security []map[string][]string `json:"security"`
	Tags     []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"tags"`
}

type openAPIOperation struct {
	OperationID string   `json:"operationId"`
	Summary     string   `json:"summary"`
	Tags        []string `json:"tags"`
	Parameters  []struct {
		Name string `json:"name"`
		In   string `json:"in"`
	} `json:"parameters"`
	RequestBody *struct {
		Content map[string]json.RawMessage `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		Content map[string]struct {
			Schema struct {
				Ref string `json:"$ref"`
			} `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
}

func fetchOpenAPI(t *testing.T, e *env) openAPIDoc {
	t.Helper()
	// Open: no Authorization header.
	r := e.must(http.StatusOK, http.MethodGet, "/api/resources/v1/openapi.json", nil)
	var doc openAPIDoc
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// notOperations are the routes that are deliberately outside the API document
// (the web view at /ui is HTML for people, docs/ui.md; the two well-known
// documents describe the API's tokens, docs/auth.md).
var notOperations = regexp.MustCompile(`^(/healthz|/readyz|/version|/metrics|/\.well-known/(jwks\.json|oauth-protected-resource)|/ui(/.*)?|/api/resources/docs(/.*)?|/api/resources/v1/openapi(\.json|\.yaml|-3\.0\.json|-3\.0\.yaml)?)$`)

// TestRoutesMatchOpenAPI: every route of the router is an operation of the
// document, and every operation of the document is routed.
func TestRoutesMatchOpenAPI(t *testing.T) {
	e := startEnv(t)
	doc := fetchOpenAPI(t, e)

	param := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	var routed []string
	for _, r := range e.svc.Handler().(*echo.Echo).Routes() {
		if notOperations.MatchString(r.Path) || r.Method == echo.RouteNotFound {
			continue
		}
		routed = append(routed, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+v1+path) // paths are relative to the servers entry
		}
	}
	// A route ending in echo's wildcard (a path of several segments) is
	// documented with a parameter there.
	lastParam := regexp.MustCompile(`\{[^}]+\}$`)
	for i, r := range routed {
		if strings.HasSuffix(r, "/*") {
			for _, d := range documented {
				if lastParam.ReplaceAllString(d, "*") == r {
					routed[i] = d
				}
			}
		}
	}
	slices.Sort(routed)
	routed = slices.Compact(routed)
	slices.Sort(documented)
	if diff := cmp.Diff(documented, routed); diff != "" {
		t.Errorf("routes vs OpenAPI operations (-documented +routed):\n%s", diff)
	}
	for _, want := range []string{
		"POST /api/resources/v1/queues", "GET /api/resources/v1/queues", "GET /api/resources/v1/queues/{queue_id}",
		"PUT /api/resources/v1/queues/{queue_id}", "PATCH /api/resources/v1/queues/{queue_id}", "DELETE /api/resources/v1/queues/{queue_id}",
		"POST /api/resources/v1/plugins", "PATCH /api/resources/v1/plugins/{plugin_id}",
		"POST /api/resources/v1/applications", "DELETE /api/resources/v1/applications/{app_id}",
		"POST /api/resources/v1/app-runtime-config/{queue_id}/application/{app_id}", "GET /api/resources/v1/app-runtime-config",
		"POST /api/resources/v1/deployments", "PUT /api/resources/v1/deployments/{deployment_id}",
	} {
		if !slices.Contains(documented, want) {
			t.Errorf("OpenAPI lacks %s", want)
		}
	}
}

// TestOpenAPIDocument checks what the document says about the API as a whole.
func TestOpenAPIDocument(t *testing.T) {
	e := startEnv(t)
	doc := fetchOpenAPI(t, e)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	if b := doc.Components.SecuritySchemes["bearer"]; b.Type != "http" || b.Scheme != "bearer" {
		t.Errorf("bearer scheme %+v", b)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
		t.Errorf("global security %v", doc.Security)
	}
	tagged := map[string]bool{}
	for _, tg := range doc.Tags {
		if tg.Description == "" {
			t.Errorf("tag %s has no description", tg.Name)
		}
		tagged[tg.Name] = true
	}
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op openAPIOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			where := strings.ToUpper(method) + " " + path
			if op.OperationID == "" || op.Summary == "" || len(op.Tags) == 0 || ids[op.OperationID] {
				t.Errorf("%s: operationId %q summary %q tags %v", where, op.OperationID, op.Summary, op.Tags)
			}
			ids[op.OperationID] = true
			for _, tg := range op.Tags {
				if !tagged[tg] {
					t.Errorf("%s: tag %q is not described", where, tg)
				}
			}
			// Errors are problems.
			def, ok := op.Responses["default"]
			if !ok {
				t.Errorf("%s: no default (error) response", where)
			} else if s := def.Content["application/problem+json"].Schema.Ref; s != "#/components/schemas/Problem" {
				t.Errorf("%s: error response schema %q", where, s)
			}
			if method == "post" && op.Responses["201"].Content != nil && !slices.ContainsFunc(op.Parameters, func(p struct {
				Name string `json:"name"`
				In   string `json:"in"`
			}) bool {
				return p.Name == "Idempotency-Key" && p.In == "header"
			}) {
				t.Errorf("%s: creating POST without the Idempotency-Key header", where)
			}
			if method == "patch" && op.RequestBody != nil {
				if _, ok := op.RequestBody.Content["application/merge-patch+json"]; !ok {
					t.Errorf("%s: PATCH body is not application/merge-patch+json", where)
				}
			}
		}
	}
	if !strings.Contains(string(doc.Components.Schemas["Application"]), "resource_version") ||
		!strings.Contains(string(doc.Components.Schemas["Application"]), `\"version\" is the application's own version`) {
		t.Errorf("Application schema does not explain version vs resource_version: %s", doc.Components.Schemas["Application"])
	}
	var problem struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(doc.Components.Schemas["Problem"], &problem); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"type", "title", "status", "detail", "instance", "errors"} {
		if problem.Properties[f] == nil {
			t.Errorf("Problem schema lacks %s", f)
		}
	}
}

// TestDocsPage: Swagger UI and its assets are served from the binary, open,
// pointed at the document.
func TestDocsPage(t *testing.T) {
	e := startEnv(t)
	page := e.must(http.StatusOK, http.MethodGet, "/api/resources/docs", nil)
	body := string(page.Body)
	if !strings.Contains(body, "/api/resources/v1/openapi.json") || strings.Contains(body, "cdn") || strings.Contains(body, "unpkg") {
		t.Errorf("docs page: %s", body)
	}
	for _, asset := range []string{"swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"} {
		r := e.must(http.StatusOK, http.MethodGet, "/api/resources/docs/"+asset, nil)
		if len(r.Body) < 1000 {
			t.Errorf("%s: %d bytes", asset, len(r.Body))
		}
	}
	e.must(http.StatusOK, http.MethodGet, "/api/resources/v1/openapi.yaml", nil)
}
