package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/exportdoc"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// artifactEnv is the API over real FerretDB and NATS, with a small upload limit.
type artifactEnv struct {
	t      *testing.T
	srv    *Server
	base   string
	db     *mongo.Database
	js     jetstream.JetStream
	ferret *ferretembed.Server
}

const uploadLimit = 1 << 20

// newArtifactEnv is newEnv without auth, whose API does not read the event
// stream, with an upload limit of uploadLimit.
func newArtifactEnv(t *testing.T) *artifactEnv {
	t.Helper()
	return newEnv(t, nil, artifactOptions)
}

// artifactOptions are the Options of newArtifactEnv.
func artifactOptions(o *Options) { o.JS, o.Artifacts = nil, ArtifactConfig{UploadLimit: uploadLimit} }

// job stores a job record directly, as the jobs API would.
func (e *artifactEnv) job() string {
	e.t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := events.Job{Meta: events.Meta{ID: events.NewID("job"), CreatedAt: now, UpdatedAt: now, Version: 1},
		Name: "sweep", QueueID: "q-test", Status: events.JobRunning, WorkerInstances: 1, SubmittedAt: now}
	if _, err := e.db.Collection(store.Jobs).InsertOne(context.Background(), j); err != nil {
		e.t.Fatal(err)
	}
	return j.ID
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, a.body) }

func (e *artifactEnv) do(method, path string, body io.Reader, headers ...string) answer {
	e.t.Helper()
	return e.read(e.send(context.Background(), method, path, body, headers...))
}

// read reads the answer res whole and closes its body.
func (e *artifactEnv) read(res *http.Response) answer {
	e.t.Helper()
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{status: res.StatusCode, header: res.Header, body: raw}
}

// send sends a request under ctx (headers are name, value pairs); the
// caller closes the answer's body.
func (e *artifactEnv) send(ctx context.Context, method, path string, body io.Reader, headers ...string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *artifactEnv) put(path string, data []byte) answer {
	e.t.Helper()
	return e.do(http.MethodPut, path, bytes.NewReader(data))
}

// count is how many documents coll holds once the blobs queued for removal
// are gone.
func (e *artifactEnv) count(coll string) int64 {
	e.t.Helper()
	e.srv.blobRemovals.pending.Wait()
	return e.countNow(coll)
}

func (e *artifactEnv) countNow(coll string) int64 {
	e.t.Helper()
	n, err := e.db.Collection(coll).CountDocuments(context.Background(), bson.D{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// stored is what the artifact collections hold: records, blobs, chunks.
func (e *artifactEnv) stored() [3]int64 {
	return [3]int64{e.count(artifactsColl), e.count(artifactBucket + ".files"), e.count(artifactBucket + ".chunks")}
}

func content(seed byte, n int) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func hexSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestArtifactUploadListReplace(t *testing.T) {
	t.Run("without index", func(t *testing.T) { testArtifactUploadListReplace(t, newArtifactEnv(t)) })
	// As the all-in-one reads a job's artifacts: by the Lookup's index.
	t.Run("by index", func(t *testing.T) { testArtifactUploadListReplace(t, newEnvOn(t, nil, true, artifactOptions)) })
}

func testArtifactUploadListReplace(t *testing.T, e *artifactEnv) {
	job := e.job()
	files := map[string][]byte{
		"/jobs/" + job + "/artifacts/scenarios/s-001/scenario.xosc":              content(1, 1000),
		"/jobs/" + job + "/artifacts/scenarios/s-001/params/p.json":              []byte(`{"speed": 3}`),
		"/jobs/" + job + "/artifacts/scenarios/s-002/scenario.xosc":              content(2, 3000),
		"/jobs/" + job + "/artifacts/assets/catalog.xml":                         content(3, 10),
		"/jobs/" + job + "/artifacts/assets/town.xodr?declaration=road-network":  content(4, 200<<10),
		"/jobs/" + job + "/artifacts/assets/maps/a%20b.bin?declaration=road-net": content(5, 0),
	}
	for path, data := range files {
		a := e.put(path, data)
		if a.status != http.StatusCreated {
			t.Fatalf("PUT %s = %s", path, a)
		}
		var got Artifact
		if err := json.Unmarshal(a.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Size != int64(len(data)) || got.SHA256 != hexSHA(data) || a.header.Get("ETag") != `"`+hexSHA(data)+`"` {
			t.Errorf("PUT %s recorded %+v", path, got)
		}
	}
	// A JSON file sent as JSON, larger than the 1 MiB JSON body limit but
	// within the upload limit, is still streamed as bytes.
	big := bytes.Repeat([]byte(`{"a":1}`), (uploadLimit-100)/7)
	if a := e.do(http.MethodPut, "/jobs/"+job+"/artifacts/scenarios/s-003/big.json", bytes.NewReader(big), "Content-Type", "application/json"); a.status != http.StatusCreated {
		t.Fatalf("PUT big JSON file = %s", a)
	}

	list := func(query string) ListBody[Artifact] {
		t.Helper()
		a := e.do(http.MethodGet, "/jobs/"+job+"/artifacts"+query, nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET artifacts%s = %s", query, a)
		}
		var l ListBody[Artifact]
		if err := json.Unmarshal(a.body, &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	names := func(items []Artifact) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.Kind+":"+it.SampleID+it.Declaration+":"+it.Path)
		}
		return out
	}
	all := []string{"asset::catalog.xml", "asset:road-net:maps/a b.bin", "asset:road-network:town.xodr",
		"scenario:s-001:params/p.json", "scenario:s-001:scenario.xosc", "scenario:s-002:scenario.xosc", "scenario:s-003:big.json"}
	if diff := cmp.Diff(all, names(list("").Items)); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	filters := map[string][]string{
		"?kind=scenario":           all[3:],
		"?kind=asset":              all[:3],
		"?sample_id=s-001":         all[3:5],
		"?declaration=road-net":    all[1:2],
		"?kind=asset&sample_id=s1": nil,
	}
	for q, want := range filters {
		if diff := cmp.Diff(want, names(list(q).Items)); diff != "" {
			t.Errorf("list%s (-want +got):\n%s", q, diff)
		}
	}
	// Pages of 3 walk the whole list.
	var paged []string
	for q := "?limit=3"; ; {
		l := list(q)
		paged = append(paged, names(l.Items)...)
		if l.NextCursor == "" {
			break
		}
		q = "?limit=3&cursor=" + l.NextCursor
	}
	if diff := cmp.Diff(all, paged); diff != "" {
		t.Errorf("paged list (-want +got):\n%s", diff)
	}

	// A re-upload replaces the file and leaves no blob behind.
	before := e.stored()
	path := "/jobs/" + job + "/artifacts/scenarios/s-001/scenario.xosc"
	if a := e.put(path, []byte("v2")); a.status != http.StatusOK {
		t.Fatalf("re-upload = %s", a)
	}
	after := e.stored()
	if after[0] != before[0] || after[1] != before[1] {
		t.Errorf("after a re-upload: records/blobs %v, before %v", after, before)
	}
	l := list("?sample_id=s-001")
	if l.Items[1].Size != 2 || l.Items[1].SHA256 != hexSHA([]byte("v2")) {
		t.Errorf("re-uploaded artifact = %+v", l.Items[1])
	}

	// Deleting the job's artifacts leaves nothing.
	if err := e.srv.removeJobArtifacts(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if got := e.stored(); got != [3]int64{} {
		t.Errorf("after removing the job's artifacts: records, blobs, chunks = %v", got)
	}
}

func TestArtifactUploadRejects(t *testing.T) {
	e := newArtifactEnv(t)
	job := e.job()
	sc := "/jobs/" + job + "/artifacts/scenarios/"
	as := "/jobs/" + job + "/artifacts/assets/"
	tests := map[string]struct {
		path   string
		body   io.Reader
		status int
		field  string
	}{
		"dot-dot":                   {as + "../x", nil, 422, "path"},
		"escaped dot-dot":           {as + "%2e%2e/x", nil, 422, "path"},
		"dot-dot inside":            {sc + "s-1/a/%2E%2E/b", nil, 422, "path"},
		"dot segment":               {as + "./x", nil, 422, "path"},
		"absolute":                  {as + "/etc/passwd", nil, 422, "path"},
		"escaped slash":             {as + "a%2Fb", nil, 422, "path"},
		"backslash":                 {as + "a%5C..%5Cb", nil, 422, "path"},
		"empty segment":             {as + "a//b", nil, 422, "path"},
		"trailing slash":            {as + "a/", nil, 422, "path"},
		"no path":                   {sc + "s-1/", nil, 422, "path"},
		"NUL":                       {as + "a%00b", nil, 422, "path"},
		"newline":                   {as + "a%0Ab", nil, 422, "path"},
		"not UTF-8":                 {as + "a%FFb", nil, 422, "path"},
		"right-to-left override":    {sc + "s-1/report%E2%80%AEfdp.exe", nil, 422, "path"},
		"bidi isolate":              {as + "a%E2%81%A6b", nil, 422, "path"},
		"too long":                  {as + strings.Repeat("abcdefgh/", 120) + "x", nil, 422, "path"},
		"segment too long":          {as + strings.Repeat("a", 256), nil, 422, "path"},
		"bad sample":                {sc + "-s/x", nil, 422, "sample_id"},
		"escaped sample traversal":  {sc + "%2e%2e/x", nil, 422, "sample_id"},
		"bad declaration":           {as + "x?declaration=a%20b", nil, 422, "declaration"},
		"declaration on a scenario": {sc + "s-1/x?declaration=road", nil, 422, "declaration"},
		"declaration twice":         {as + "x?declaration=a&declaration=b", nil, 422, "declaration"},
		"misspelt declaration":      {as + "x?decl=road", nil, 422, "decl"},
		"query on a scenario":       {sc + "s-1/x?overwrite=1", nil, 422, "overwrite"},
		"unknown job":               {"/jobs/job-NOPE/artifacts/assets/x", nil, 404, ""},
		"over the limit":            {as + "big", bytes.NewReader(make([]byte, uploadLimit+1)), 413, "body"},
		// No Content-Length: the limit is found while streaming, after
		// chunks were written, which must then be removed.
		"over the limit, chunked": {as + "big", io.MultiReader(bytes.NewReader(make([]byte, uploadLimit)), strings.NewReader("x")), 413, "body"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			body := tc.body
			if body == nil {
				body = strings.NewReader("data")
			}
			if _, ok := body.(*bytes.Reader); !ok {
				body = struct{ io.Reader }{body} // hide the length: sent chunked
			}
			a := e.do(http.MethodPut, tc.path, body)
			if a.status != tc.status || a.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("PUT %s = %d %s %s, want %d problem", tc.path, a.status, a.header.Get("Content-Type"), a.body, tc.status)
			}
			if tc.field != "" {
				var p struct {
					Errors []struct{ Field string }
				}
				if err := json.Unmarshal(a.body, &p); err != nil || len(p.Errors) == 0 || p.Errors[0].Field != tc.field {
					t.Errorf("problem %s does not name %q", a.body, tc.field)
				}
			}
			if got := e.stored(); got != [3]int64{} {
				t.Errorf("stored records, blobs, chunks = %v, want none", got)
			}
		})
	}
}

func TestExportRequests(t *testing.T) {
	e := newArtifactEnv(t)
	job := e.job()
	for _, p := range []string{"scenarios/s-001/a.xosc", "scenarios/s-007/a.xosc", "assets/common.xml", "assets/town.xodr?declaration=road-network"} {
		if a := e.put("/jobs/"+job+"/artifacts/"+p, []byte(p)); a.status != http.StatusCreated {
			t.Fatalf("PUT %s = %s", p, a)
		}
	}
	post := func(jobID, body string) answer {
		return e.do(http.MethodPost, "/jobs/"+jobID+"/scenario-exports", strings.NewReader(body), "Content-Type", "application/json")
	}
	bad := map[string]struct {
		job, body string
		status    int
		fields    []string
	}{
		"unknown sample":      {job, `{"samples": ["s-001", "s-404"]}`, 422, []string{"samples[1]"}},
		"unknown declaration": {job, `{"filter_by_asset_declaration": ["weather"]}`, 422, []string{"filter_by_asset_declaration[0]"}},
		"bad include":         {job, `{"include": ["scenario", "video"]}`, 422, []string{"include[1]"}},
		"include twice":       {job, `{"include": ["asset", "asset"]}`, 422, []string{"include[1]"}},
		"sample twice":        {job, `{"samples": ["s-001", "s-007", "s-001"]}`, 422, []string{"samples[2]"}},
		"declaration twice":   {job, `{"filter_by_asset_declaration": ["road-network", "road-network"]}`, 422, []string{"filter_by_asset_declaration[1]"}},
		"unknown field":       {job, `{"sample": ["s-001"]}`, 422, []string{"sample"}},
		"wrong type":          {job, `{"samples": "s-001"}`, 422, []string{"samples"}},
		"bad sample name":     {job, `{"samples": ["../s"]}`, 422, []string{"samples[0]"}},
		"unknown job":         {"job-NOPE", `{}`, 404, nil},
		"not JSON":            {job, `{"samples": [`, 400, nil},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			a := post(tc.job, tc.body)
			if a.status != tc.status || a.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("POST = %s, want %d problem", a, tc.status)
			}
			var p struct {
				Errors []struct{ Field string }
			}
			_ = json.Unmarshal(a.body, &p)
			var fields []string
			for _, f := range p.Errors {
				fields = append(fields, f.Field)
			}
			if tc.fields != nil {
				if diff := cmp.Diff(tc.fields, fields); diff != "" {
					t.Errorf("fields named (-want +got):\n%s\n%s", diff, a.body)
				}
			}
			if n := e.count(store.Exports); n != 0 {
				t.Errorf("%d exports stored", n)
			}
		})
	}

	// A name the job lacks is refused saying which it has.
	for body, want := range map[string]string{
		`{"samples": ["s-404"]}`:                       `job \"` + job + `\" has no scenario file of sample \"s-404\"; it has scenario files of samples s-001, s-007`,
		`{"filter_by_asset_declaration": ["weather"]}`: `job \"` + job + `\" has no asset of declaration \"weather\"; it has assets of declarations road-network`,
	} {
		if a := post(job, body); !strings.Contains(string(a.body), want) {
			t.Errorf("POST %s = %s, want it to say %s", body, a, want)
		}
	}

	a := post(job, `{"samples": ["s-001", "s-007"], "include": ["scenario", "asset"], "filter_by_asset_declaration": ["road-network"]}`)
	if a.status != http.StatusAccepted {
		t.Fatalf("POST = %s", a)
	}
	var x ScenarioExport
	if err := json.Unmarshal(a.body, &x); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(x.ID, "exp-") || x.Status != exportPending || x.JobID != job || a.header.Get("Location") != BasePath+"/scenario-exports/"+x.ID ||
		x.ExpiresAt.Sub(x.CreatedAt) != 7*24*time.Hour {
		t.Errorf("created %s (Location %s)", a.body, a.header.Get("Location"))
	}
	evs := eventstest.ReadAll(t, e.js, events.FilterSubject(events.KindExport, "", x.ID))
	if len(evs) != 1 || evs[0].Type != events.TypeExportRequested || evs[0].QueueID != "q-test" {
		t.Fatalf("events %+v", evs)
	}
	if g := e.do(http.MethodGet, "/scenario-exports/"+x.ID, nil); g.status != http.StatusOK || !bytes.Contains(g.body, []byte(`"status":"pending"`)) {
		t.Errorf("GET export = %s", g)
	}
	if d := e.do(http.MethodGet, "/scenario-exports/"+x.ID+"/download", nil); d.status != http.StatusConflict {
		t.Errorf("download while pending = %s", d)
	}
	if d := e.do(http.MethodGet, "/scenario-exports/exp-NOPE", nil); d.status != http.StatusNotFound {
		t.Errorf("GET unknown export = %s", d)
	}

	// Deleting the job deletes its exports, with an event.
	if err := e.srv.removeJobArtifacts(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if d := e.do(http.MethodGet, "/scenario-exports/"+x.ID, nil); d.status != http.StatusNotFound {
		t.Errorf("GET export of a deleted job = %s", d)
	}
	evs = eventstest.ReadAll(t, e.js, events.FilterSubject(events.KindExport, "", x.ID))
	if len(evs) != 2 || evs[1].Type != typeExportDeleted {
		t.Errorf("events after delete: %+v", evs)
	}
}

func TestExportDownload(t *testing.T) {
	e := newArtifactEnv(t)
	data := content(9, 3<<20+5) // several chunks
	path := "/scenario-exports/" + e.readyExport(data) + "/download"
	a := e.do(http.MethodGet, path, nil)
	if a.status != http.StatusOK || !bytes.Equal(a.body, data) || a.header.Get("Content-Type") != "application/zip" ||
		a.header.Get("Content-Length") != fmt.Sprint(len(data)) || a.header.Get("ETag") != `"`+hexSHA(data)+`"` {
		t.Fatalf("download = %d %v (%d bytes)", a.status, a.header, len(a.body))
	}
	r := e.do(http.MethodGet, path, nil, "Range", "bytes=1048570-1048590")
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, data[1048570:1048591]) ||
		r.header.Get("Content-Range") != fmt.Sprintf("bytes 1048570-1048590/%d", len(data)) {
		t.Errorf("range across a chunk boundary = %d %v %x", r.status, r.header, r.body)
	}
	r = e.do(http.MethodGet, path, nil, "Range", fmt.Sprintf("bytes=-%d", 10))
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, data[len(data)-10:]) {
		t.Errorf("suffix range = %d %x", r.status, r.body)
	}
	if r := e.do(http.MethodGet, path, nil, "If-None-Match", `"`+hexSHA(data)+`"`); r.status != http.StatusNotModified {
		t.Errorf("If-None-Match = %d", r.status)
	}
}

func TestUploadOperationsDocumented(t *testing.T) {
	e := newArtifactEnv(t)
	paths := e.srv.API.OpenAPI().Paths
	for _, p := range []string{"/jobs/{id}/artifacts/scenarios/{sample_id}/{path}", "/jobs/{id}/artifacts/assets/{path}"} {
		item := paths[p] // relative to the servers entry, BasePath
		if item == nil || item.Put == nil || item.Put.RequestBody == nil || item.Put.Responses["413"] == nil {
			t.Errorf("PUT %s is not documented", p)
		}
	}
	for _, p := range []string{"/jobs/{id}/artifacts", "/scenario-exports/{id}", "/scenario-exports/{id}/download"} {
		if item := paths[p]; item == nil || item.Get == nil {
			t.Errorf("GET %s is not documented", p)
		}
	}
}

// TestExportDelete: DELETE /scenario-exports/{id} removes a ready export and
// its zip with rm.export.deleted, and a pending one before it is built; an
// unknown or deleted export is 404.
func TestExportDelete(t *testing.T) {
	e := newArtifactEnv(t)
	id := e.readyExport(content(3, 2<<20+7))
	if got := e.stored(); got != [3]int64{} {
		t.Fatalf("artifacts stored: %v", got)
	}
	if n := e.count(zipBucket + ".chunks"); n != 3 {
		t.Fatalf("%d zip chunks before the delete, want 3", n)
	}
	if a := e.do(http.MethodDelete, "/scenario-exports/"+id, nil, "If-Match", `"2"`); a.status != http.StatusPreconditionFailed {
		t.Fatalf("DELETE with a stale If-Match = %s", a)
	}
	if a := e.do(http.MethodDelete, "/scenario-exports/"+id, nil, "If-Match", `"3"`); a.status != http.StatusNoContent {
		t.Fatalf("DELETE ready export = %s", a)
	}
	for _, p := range []string{"", "/download"} {
		if a := e.do(http.MethodGet, "/scenario-exports/"+id+p, nil); a.status != http.StatusNotFound {
			t.Errorf("GET%s after the delete = %s", p, a)
		}
	}
	if n, c := e.count(zipBucket+".files"), e.count(zipBucket+".chunks"); n != 0 || c != 0 {
		t.Errorf("zip left: %d files, %d chunks", n, c)
	}
	evs := eventstest.ReadAll(t, e.js, events.FilterSubject(events.KindExport, "", id))
	if len(evs) != 1 || evs[0].Type != typeExportDeleted {
		t.Errorf("events %+v, want one %s", evs, typeExportDeleted)
	}
	if a := e.do(http.MethodDelete, "/scenario-exports/"+id, nil); a.status != http.StatusNotFound ||
		a.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("DELETE again = %s", a)
	}

	job := e.job()
	e.put("/jobs/"+job+"/artifacts/scenarios/s-001/a.xosc", []byte("a"))
	a := e.do(http.MethodPost, "/jobs/"+job+"/scenario-exports", strings.NewReader(`{"samples":["s-001"]}`), "Content-Type", "application/json")
	var x ScenarioExport
	if err := json.Unmarshal(a.body, &x); a.status != http.StatusAccepted || err != nil {
		t.Fatalf("POST = %s", a)
	}
	if a := e.do(http.MethodDelete, "/scenario-exports/"+x.ID, nil); a.status != http.StatusNoContent {
		t.Fatalf("DELETE pending export = %s", a)
	}
	if l := e.do(http.MethodGet, "/jobs/"+job+"/scenario-exports", nil); l.status != http.StatusOK || bytes.Contains(l.body, []byte(x.ID)) {
		t.Errorf("the job's exports after the delete = %s", l)
	}
	if a := e.do(http.MethodDelete, "/scenario-exports/exp-NOPE", nil); a.status != http.StatusNotFound {
		t.Errorf("DELETE unknown export = %s", a)
	}
}

// TestExportDownloadExpired: past expires_at (before the sweep removes it)
// the zip is 410, on HEAD too, and the export still reads.
func TestExportDownloadExpired(t *testing.T) {
	e := newArtifactEnv(t)
	id := e.readyExport([]byte("zip bytes"))
	if _, err := e.db.Collection(store.Exports).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expires_at", Value: time.Now().Add(-time.Minute)}}}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		if a := e.do(m, "/scenario-exports/"+id+"/download", nil, "Range", "bytes=0-1"); a.status != http.StatusGone {
			t.Errorf("%s download of an expired export = %s, want 410", m, a)
		}
	}
	if a := e.do(http.MethodGet, "/scenario-exports/"+id, nil); a.status != http.StatusOK {
		t.Errorf("GET expired export = %s", a)
	}
}

func TestTheOnes(t *testing.T) {
	set := map[string]bool{}
	if got := theOnes("samples", "it has scenario files of", set); got != "it has none" {
		t.Errorf("none: %q", got)
	}
	for i := range 12 {
		set[fmt.Sprintf("s-%02d", i)] = true
	}
	if got, want := theOnes("samples", "it has scenario files of", set),
		"it has scenario files of samples s-00, s-01, s-02, s-03, s-04, s-05, s-06, s-07, s-08, s-09 and 2 more"; got != want {
		t.Errorf("12 samples: %q, want %q", got, want)
	}
}

// TestJobDeleteAnswersBeforeTheBytes: DELETE /jobs/{id} removed the bytes of
// the job's artifacts and zips before answering, a 1 MiB chunk at a time:
// minutes for GiBs on the embedded store, so the CLI gave up after 30 s and
// cancelled the removal half-way, the job still there. It answers once the
// records are gone (exports with rm.export.deleted); the bytes follow in
// the background, and nothing is left.
func TestJobDeleteAnswersBeforeTheBytes(t *testing.T) {
	e := newArtifactEnv(t)
	job := e.job()
	for _, p := range []string{"scenarios/s-001/a.xosc", "assets/map.xodr"} {
		if a := e.put("/jobs/"+job+"/artifacts/"+p, content(4, 2<<20/3)); a.status != http.StatusCreated {
			t.Fatalf("PUT %s = %s", p, a)
		}
	}
	x := e.readyExport(content(5, 2<<20+1))
	if _, err := e.db.Collection(store.Exports).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: x}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "job_id", Value: job}}}}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	r := &e.srv.blobRemovals
	r.mu.Lock()
	r.before = func(string, string) { <-release }
	r.mu.Unlock()
	if a := e.do(http.MethodDelete, "/jobs/"+job, nil); a.status != http.StatusNoContent {
		close(release)
		t.Fatalf("DELETE job = %s", a)
	}
	for _, p := range []string{"/jobs/" + job, "/scenario-exports/" + x} {
		if a := e.do(http.MethodGet, p, nil); a.status != http.StatusNotFound {
			t.Errorf("GET %s after the delete = %s", p, a)
		}
	}
	if n := e.countNow(artifactsColl); n != 0 {
		t.Errorf("%d artifact records after the delete", n)
	}
	if a, z := e.countNow(artifactBucket+".chunks"), e.countNow(zipBucket+".chunks"); a == 0 || z == 0 {
		t.Errorf("artifact chunks %d, zip chunks %d when DELETE answered: it waited for the bytes to be removed", a, z)
	}
	close(release)
	if got := e.stored(); got != [3]int64{} {
		t.Errorf("records, blobs, chunks = %v once the bytes are removed, want none", got)
	}
	if n, c := e.count(zipBucket+".files"), e.count(zipBucket+".chunks"); n != 0 || c != 0 {
		t.Errorf("zip left: %d files, %d chunks", n, c)
	}
}

// TestExportDeleteBreaksOffADownload: DELETE /scenario-exports/{id} answers
// before the zip's bytes are removed; a download under way breaks off
// (API.md) rather than finish from the chunks still there.
func TestExportDeleteBreaksOffADownload(t *testing.T) {
	e := newArtifactEnv(t)
	zip := content(6, 5*exportLiveCheck)
	id := e.readyExport(zip)
	release := make(chan struct{})
	defer close(release)
	r := &e.srv.blobRemovals
	r.mu.Lock()
	r.before = func(string, string) { <-release }
	r.mu.Unlock()
	res, err := http.Get(e.base + "/scenario-exports/" + id + "/download")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.ReadFull(res.Body, make([]byte, 1<<20)); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("download: %d, %v", res.StatusCode, err)
	}
	if a := e.do(http.MethodDelete, "/scenario-exports/"+id, nil); a.status != http.StatusNoContent {
		t.Fatalf("DELETE = %s", a)
	}
	n, err := io.Copy(io.Discard, res.Body)
	if err == nil || 1<<20+n == int64(len(zip)) {
		t.Errorf("the download went on to the end (%d bytes, %v) after its export was deleted", 1<<20+n, err)
	}
}

// An upload with a Content-Digest (RFC 9530) is kept only if the bytes
// received have that digest: a body changed or cut on the way is a 400
// naming the header, and nothing is stored; a digest that matches stores
// the file as one without. A header that is malformed, or names no
// algorithm checked here, is refused before anything is read.
func TestArtifactUploadChecksContentDigest(t *testing.T) {
	e := newArtifactEnv(t)
	path := "/jobs/" + e.job() + "/artifacts/scenarios/s-1/run.xosc"
	data := content(7, uploadLimit-1)
	sum256, sum512 := sha256.Sum256(data), sha512.Sum512(data)
	b64 := base64.StdEncoding.EncodeToString
	other := sha256.Sum256([]byte("something else"))
	for _, tc := range []struct {
		name, digest string
		status       int
		says         string
	}{
		{"sha-256 of other bytes", "sha-256=:" + b64(other[:]) + ":", 400, "the body's sha-256 digest is :" + b64(sum256[:]) + ":"},
		{"sha-512 of other bytes", "sha-512=:" + b64(make([]byte, sha512.Size)) + ":", 400, "the body's sha-512 digest"},
		{"one of two wrong", "sha-256=:" + b64(sum256[:]) + ":, sha-512=:" + b64(make([]byte, sha512.Size)) + ":", 400, "sha-512"},
		{"not a byte sequence", "sha-256=" + hex.EncodeToString(sum256[:]), 400, "is not algorithm=:base64 digest:"},
		{"wrong length", "sha-256=:" + b64(sum256[:16]) + ":", 400, "the sha-256 digest is 16 bytes, want 32"},
		{"only deprecated algorithms", "md5=:" + b64(make([]byte, 16)) + ":", 400, "names no algorithm checked here (md5)"},
	} {
		a := e.do(http.MethodPut, path, bytes.NewReader(data), "Content-Digest", tc.digest)
		if a.status != tc.status || !strings.Contains(string(a.body), tc.says) || !strings.Contains(string(a.body), `"field":"Content-Digest"`) {
			t.Errorf("%s: PUT with Content-Digest %q = %d %s, want %d saying %q and naming the header", tc.name, tc.digest, a.status, a.body, tc.status, tc.says)
		}
		if got := e.stored(); got != [3]int64{} {
			t.Errorf("%s: stored records, blobs, chunks = %v, want none", tc.name, got)
		}
	}
	for i, digest := range []string{
		"sha-256=:" + b64(sum256[:]) + ":",
		"sha-512=:" + b64(sum512[:]) + ":;note=1, unixsum=:AAA=:",
		"sha-256=:" + b64(sum256[:]) + ":,sha-512=:" + b64(sum512[:]) + ":",
	} {
		a := e.do(http.MethodPut, path, bytes.NewReader(data), "Content-Digest", digest)
		if want := map[bool]int{true: 201, false: 200}[i == 0]; a.status != want || a.header.Get("ETag") != `"`+hexSHA(data)+`"` {
			t.Errorf("PUT with Content-Digest %q = %d %s, want %d with its sha256", digest, a.status, a.body, want)
		}
	}
	if got := e.stored(); got[0] != 1 || got[1] != 1 {
		t.Errorf("stored records, blobs, chunks = %v, want the one file", got)
	}
}

// On the embedded store a job's artifact records are found by an index of
// job_id (the Lookup's): the API asks the store for artifacts by _id only.
// It sent {job_id} filters, which FerretDB answers by reading the records
// of every job: a list of a job's files, an export's check and a job's
// deletion each read all of them.
func TestJobArtifactsReadByIndex(t *testing.T) {
	mon, scans := mongotest.FindsNotByID(artifactsColl)
	e := newEnvSeen(t, nil, true, mon, artifactOptions)
	job := e.job()
	for _, p := range []string{"scenarios/s-001/a.xosc", "scenarios/s-001/b.xosc", "scenarios/s-002/a.xosc",
		"assets/common.xml", "assets/town.xodr?declaration=road-network"} {
		if a := e.put("/jobs/"+job+"/artifacts/"+p, []byte(p)); a.status != http.StatusCreated {
			t.Fatalf("PUT %s = %s", p, a)
		}
	}
	// Other jobs' records, before and after this job's in _id order.
	const others = 300
	var docs []any
	for i := range others {
		other := fmt.Sprintf("job-%03d", i)
		if i%2 == 1 {
			other = job + fmt.Sprint(i) // shares the job's id as a prefix
		}
		docs = append(docs, artifactDoc{ID: artifactKey(other, kindScenario, "s-001", "a.xosc"), JobID: other, Kind: kindScenario,
			SampleID: "s-001", Path: "a.xosc", FileID: "none", CreatedAt: time.Now()})
	}
	if _, err := e.db.Collection(artifactsColl).InsertMany(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
	pages := func(query string) []string {
		var got []string
		for cursor := ""; ; {
			var out ListBody[Artifact]
			e.json(http.StatusOK, http.MethodGet, "/jobs/"+job+"/artifacts?limit=2"+query+"&cursor="+cursor, nil, &out)
			for _, it := range out.Items {
				got = append(got, it.Kind+":"+it.SampleID+it.Declaration+":"+it.Path)
			}
			if cursor = out.NextCursor; cursor == "" {
				return got
			}
		}
	}
	all := []string{"asset::common.xml", "asset:road-network:town.xodr", "scenario:s-001:a.xosc", "scenario:s-001:b.xosc", "scenario:s-002:a.xosc"}
	for query, want := range map[string][]string{"": all, "&kind=scenario": all[2:], "&sample_id=s-001": all[2:4],
		"&declaration=road-network": all[1:2], "&kind=asset&sample_id=s-001": nil} {
		if diff := cmp.Diff(want, pages(query)); diff != "" {
			t.Errorf("pages of %q (-want +got):\n%s", query, diff)
		}
	}
	a := e.do(http.MethodPost, "/jobs/"+job+"/scenario-exports", strings.NewReader(`{"samples": ["s-002", "s-404"]}`), "Content-Type", "application/json")
	if a.status != http.StatusUnprocessableEntity || !strings.Contains(string(a.body), `"samples[1]"`) ||
		!strings.Contains(string(a.body), "s-001, s-002") {
		t.Errorf("export of an unknown sample = %s, want 422 naming samples[1] and the job's samples", a)
	}
	if err := e.srv.removeJobArtifacts(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if n := e.count(artifactsColl); n != others {
		t.Errorf("after removing the job's artifacts %d records are left, want the other jobs' %d", n, others)
	}
	if s := scans(); len(s) > 0 {
		t.Errorf("the API asked the store for artifacts by another field than _id %d times, first %s", len(s), s[0])
	}
}

// TestJobExportsReadByIndex: with a Lookup (the embedded store) a job's
// pages of exports and a job's deletion read its exports by the index of
// job_id and _id, never asking the store for exports by another field than
// _id (a find FerretDB answers by decoding every export); the pages hold
// the job's live exports in _id order, and the deletion removes those
// only.
func TestJobExportsReadByIndex(t *testing.T) {
	mon, scans := mongotest.FindsNotByID(exportdoc.Collection)
	e := newEnvSeen(t, nil, true, mon, artifactOptions)
	job := e.job()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	export := func(jobID string) exportdoc.ScenarioExport {
		return exportdoc.ScenarioExport{Meta: events.Meta{ID: events.NewID("exp"), CreatedAt: now, UpdatedAt: now, Version: 1},
			JobID: jobID, QueueID: "q-test", Status: exportdoc.StatusReady, ExpiresAt: now.Add(time.Hour)}
	}
	var docs []any
	var want []string
	for i := range 206 {
		switch {
		case i%40 == 0: // the job's (five), among the others in _id order
			x := export(job)
			want = append(want, x.ID)
			docs = append(docs, x)
		case i == 101: // the job's, deleted
			x := export(job)
			docs = append(docs, bson.D{{Key: "_id", Value: x.ID}, {Key: "job_id", Value: job}, {Key: "_deleted", Value: true}})
		case i%2 == 1:
			docs = append(docs, export(job+fmt.Sprint(i))) // shares the job's id as a prefix
		default:
			docs = append(docs, export(fmt.Sprintf("job-%03d", i)))
		}
	}
	if _, err := e.db.Collection(exportdoc.Collection).InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	var got []string
	for cursor := ""; ; {
		var out ListBody[ScenarioExport]
		e.json(http.StatusOK, http.MethodGet, "/jobs/"+job+"/scenario-exports?limit=2&cursor="+cursor, nil, &out)
		for _, it := range out.Items {
			got = append(got, it.ID)
		}
		if cursor = out.NextCursor; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the job's pages of exports (-want +got):\n%s", diff)
	}
	if err := e.srv.removeJobArtifacts(ctx, job); err != nil {
		t.Fatal(err)
	}
	left, err := e.db.Collection(exportdoc.Collection).CountDocuments(ctx, bson.D{{Key: "job_id", Value: job}, {Key: "_deleted", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err != nil || left != 0 {
		t.Errorf("after removing the job's exports %d are left (%v), want none", left, err)
	}
	if n := e.count(exportdoc.Collection); n != int64(len(docs)-len(want)) {
		t.Errorf("%d exports stored after, want the other jobs' and the tombstone, %d", n, len(docs)-len(want))
	}
	if s := scans(); len(s) > 0 {
		t.Errorf("the API asked the store for exports by another field than _id %d times, first %s", len(s), s[0])
	}
}

// TestUnfilteredListsReadByIndex: with a Lookup (the embedded store) an
// unfiltered list of a resource (here the job arrays') reads its pages by
// the _id index, never asking the store for the collection with a sort (a
// find FerretDB answers by decoding every document); on a collection
// without an _id index yet it answers all the same, from the find.
func TestUnfilteredListsReadByIndex(t *testing.T) {
	mon, scans := mongotest.FindsNotByID(events.JobArraysCollection)
	e := newEnvSeen(t, nil, true, mon)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	var docs []any
	var want []string
	for i := range 8 {
		a := events.JobArray{Meta: events.Meta{ID: events.NewID("arr"), CreatedAt: now, UpdatedAt: now, Version: 1},
			Name: fmt.Sprintf("a%d", i), QueueID: "q-test", Count: 1, MaxParallel: 1}
		if i == 4 {
			docs = append(docs, bson.D{{Key: "_id", Value: a.ID}, {Key: "_deleted", Value: true}})
			continue
		}
		want = append(want, a.ID)
		docs = append(docs, a)
	}
	// Stored through FerretDB, which gives the new collection no _id index.
	if _, err := e.db.Collection(events.JobArraysCollection).InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	pages := func() []string {
		var got []string
		for cursor := ""; ; {
			var out ListBody[*events.JobArray]
			e.json(http.StatusOK, http.MethodGet, "/job-arrays?limit=3&cursor="+cursor, nil, &out)
			for _, it := range out.Items {
				got = append(got, it.ID)
			}
			if cursor = out.NextCursor; cursor == "" {
				return got
			}
		}
	}
	if diff := cmp.Diff(want, pages()); diff != "" {
		t.Errorf("the arrays' pages without an _id index (-want +got):\n%s", diff)
	}
	if len(scans()) == 0 {
		t.Error("without an _id index the list sent no find: the test checked nothing of the fallback")
	}
	before := len(scans())
	if err := e.ferret.EnsureIDIndex(ctx, "rm", events.JobArraysCollection); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, pages()); diff != "" {
		t.Errorf("the arrays' pages by the _id index (-want +got):\n%s", diff)
	}
	if s := scans()[before:]; len(s) > 0 {
		t.Errorf("the API asked the store for arrays by another field than _id %d times, first %s", len(s), s[0])
	}
}
