package httpapi

import (
	"bytes"
	"net/http"
	"testing"
)

// An uploaded artifact is downloaded from its upload's URL: its bytes, its
// ETag, a file name, ranges; unknown files and jobs are 404, bad names 422 (as for uploads).
func TestArtifactDownload(t *testing.T) {
	e := newArtifactEnv(t)
	job := e.job()
	scen, asset := content(7, 70000), content(8, 300)
	for path, data := range map[string][]byte{
		"/jobs/" + job + "/artifacts/scenarios/s-001/params/scenario.xosc":      scen,
		"/jobs/" + job + "/artifacts/assets/maps/town.xodr?declaration=road-nw": asset,
	} {
		if a := e.put(path, data); a.status != http.StatusCreated {
			t.Fatalf("PUT %s = %s", path, a)
		}
	}
	for path, want := range map[string][]byte{
		"/jobs/" + job + "/artifacts/scenarios/s-001/params/scenario.xosc":      scen,
		"/jobs/" + job + "/artifacts/assets/maps/town.xodr?declaration=road-nw": asset,
	} {
		a := e.do(http.MethodGet, path, nil)
		if a.status != http.StatusOK || !bytes.Equal(a.body, want) {
			t.Errorf("GET %s = %d, %d bytes, want %d", path, a.status, len(a.body), len(want))
		}
		if a.header.Get("ETag") != `"`+hexSHA(want)+`"` || a.header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("GET %s headers %v", path, a.header)
		}
	}
	a := e.do(http.MethodGet, "/jobs/"+job+"/artifacts/scenarios/s-001/params/scenario.xosc", nil)
	if cd := a.header.Get("Content-Disposition"); cd != `attachment; filename=scenario.xosc` {
		t.Errorf("Content-Disposition %q", cd)
	}
	a = e.do(http.MethodGet, "/jobs/"+job+"/artifacts/scenarios/s-001/params/scenario.xosc", nil, "Range", "bytes=100-199")
	if a.status != http.StatusPartialContent || !bytes.Equal(a.body, scen[100:200]) {
		t.Errorf("range: %d %d bytes", a.status, len(a.body))
	}
	for path, want := range map[string]int{
		"/jobs/" + job + "/artifacts/scenarios/s-002/params/scenario.xosc":                    http.StatusNotFound, // another sample
		"/jobs/" + job + "/artifacts/assets/maps/town.xodr":                                   http.StatusNotFound, // common data, not road-nw
		"/jobs/job-nope/artifacts/assets/maps/town.xodr?declaration=road-nw":                  http.StatusNotFound,
		"/jobs/" + job + "/artifacts/scenarios/s-001/params/%2E%2E/x":                         http.StatusUnprocessableEntity, // as for uploads
		"/jobs/" + job + "/artifacts/assets/town.xodr?declaration=not%20a%20n":                http.StatusUnprocessableEntity,
		"/jobs/" + job + "/artifacts/assets/maps/town.xodr?declaration=road-nw&declaration=x": http.StatusUnprocessableEntity,
		"/jobs/" + job + "/artifacts/scenarios/s-001/params/scenario.xosc?download=1":         http.StatusUnprocessableEntity,
	} {
		if a := e.do(http.MethodGet, path, nil); a.status != want {
			t.Errorf("GET %s = %s, want %d", path, a, want)
		}
	}
	paths := e.srv.API.OpenAPI().Paths
	for _, p := range []string{"/jobs/{id}/artifacts/scenarios/{sample_id}/{path}", "/jobs/{id}/artifacts/assets/{path}"} {
		if item := paths[p]; item == nil || item.Get == nil || item.Get.Responses["200"] == nil || item.Get.Responses["401"] == nil {
			t.Errorf("GET %s is not documented", p)
		}
	}
}
