package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/blob"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestByteRanges(t *testing.T) {
	for h, want := range map[string]string{
		"bytes=0-4":                    "bytes=0-4",
		"bytes=5-":                     "bytes=5-",
		"bytes=-10":                    "bytes=-10",
		"BYTES=0-4":                    "bytes=0-4",
		"bytes= 0-1 , ,4-5,":           "bytes=0-1,4-5",
		"bytes=007-9":                  "bytes=7-9",
		"bytes=0-99999999999999999999": "bytes=0-9223372036854775807",
		"bytes=99999999999999999999-":  "bytes=9223372036854775807-",
		"bytes=-0":                     "bytes=9223372036854775807-",
		"bytes=4-4":                    "bytes=4-4",
		"bytes=5-1":                    "",
		"bytes=0-1,5-1":                "",
		"garbage":                      "",
		"bytes":                        "",
		"bytes=":                       "",
		"bytes=,":                      "",
		"items=0-4":                    "",
		"bytes=+1-2":                   "",
		"bytes=1-+2":                   "",
		"bytes=--1":                    "",
		"bytes=1":                      "",
		"bytes=1-2-3":                  "",
		"bytes=0 - 4":                  "",
		"bytes = 0-4":                  "",
	} {
		if got := byteRanges(h); got != want {
			t.Errorf("byteRanges(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestDownloadRanges: on both downloads a Range that is not a valid bytes
// range is ignored (200, the whole content), one beyond the end is a 416
// problem with Content-Range, and ranges within it still answer 206.
func TestDownloadRanges(t *testing.T) {
	e := newArtifactEnv(t)
	job := e.job()
	data := content(3, 1000)
	artifact := "/jobs/" + job + "/artifacts/scenarios/s-001/a/b.xosc"
	if a := e.put(artifact, data); a.status != http.StatusCreated {
		t.Fatalf("PUT = %s", a)
	}
	export := "/scenario-exports/" + e.readyExport(data) + "/download"
	size := strconv.Itoa(len(data))

	type want struct {
		Status       int
		Body         string // for a 206 of one range or a 200: which bytes (of describes)
		ContentRange string
	}
	whole := want{Status: http.StatusOK, Body: of(data)}
	unsatisfiable := want{Status: http.StatusRequestedRangeNotSatisfiable, ContentRange: "bytes */" + size}
	for _, path := range []string{artifact, export} {
		for rng, w := range map[string]want{
			"garbage":                        whole,
			"bytes=5-1":                      whole,
			"items=0-4":                      whole,
			"bytes=0-1,5-1":                  whole,
			"bytes=0-4":                      {http.StatusPartialContent, of(data[:5]), "bytes 0-4/" + size},
			"BYTES=0-4":                      {http.StatusPartialContent, of(data[:5]), "bytes 0-4/" + size},
			"bytes=-10":                      {http.StatusPartialContent, of(data[990:]), "bytes 990-999/" + size},
			"bytes=990-99999999999999999999": {http.StatusPartialContent, of(data[990:]), "bytes 990-999/" + size},
			"bytes=999999-":                  unsatisfiable,
			"bytes=1000-1001,2000-":          unsatisfiable,
			"bytes=-0":                       unsatisfiable,
		} {
			a := e.do(http.MethodGet, path, nil, "Range", rng)
			got := want{Status: a.status, Body: of(a.body), ContentRange: a.header.Get("Content-Range")}
			if a.status == http.StatusRequestedRangeNotSatisfiable {
				got.Body = ""
				checkRangeProblem(t, a)
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("GET %s with Range %q (-want +got):\n%s", path, rng, diff)
			}
		}
		// Several ranges, as before: a multipart answer.
		if a := e.do(http.MethodGet, path, nil, "Range", "bytes=0-1,4-5"); a.status != http.StatusPartialContent ||
			!strings.HasPrefix(a.header.Get("Content-Type"), "multipart/byteranges") {
			t.Errorf("GET %s with two ranges = %d %v", path, a.status, a.header)
		}
		if a := e.do(http.MethodHead, path, nil, "Range", "bytes=999999-"); a.status != http.StatusRequestedRangeNotSatisfiable ||
			a.header.Get("Content-Range") != "bytes */"+size || a.header.Get("Content-Type") != "application/problem+json" || len(a.body) != 0 {
			t.Errorf("HEAD %s beyond the end = %d %v %q", path, a.status, a.header, a.body)
		}
		a := e.do(http.MethodGet, path, nil, "If-Match", `"other"`)
		if a.status != http.StatusPreconditionFailed || a.header.Get("Content-Type") != "application/problem+json" ||
			a.header.Get("ETag") != "" || !strings.Contains(string(a.body), "If-Match") {
			t.Errorf("GET %s If-Match other = %d %v %s", path, a.status, a.header, a.body)
		}
	}
}

// of describes bytes for a diff.
func of(b []byte) string { return fmt.Sprintf("%d bytes, sha256 %.12s", len(b), hexSHA(b)) }

// checkRangeProblem fails the test unless a is a problem naming Range.
func checkRangeProblem(t *testing.T, a answer) {
	t.Helper()
	var p struct {
		Status int
		Errors []struct{ Field string }
	}
	if err := json.Unmarshal(a.body, &p); err != nil || a.header.Get("Content-Type") != "application/problem+json" ||
		p.Status != a.status || len(p.Errors) != 1 || p.Errors[0].Field != "Range" {
		t.Errorf("416 is not a problem naming Range: %v %s", a.header, a.body)
	}
	for _, h := range []string{"Content-Disposition", "ETag"} {
		if v := a.header.Get(h); v != "" {
			t.Errorf("416 carries the content's %s: %s", h, v)
		}
	}
}

// TestHEADReadsNoContent: a HEAD on a download answers its headers from
// the stored file's record; its chunks are not read (here they are gone).
func TestHEADReadsNoContent(t *testing.T) {
	e := newArtifactEnv(t)
	data := content(4, 3<<20)
	path := "/scenario-exports/" + e.readyExport(data) + "/download"
	if _, err := blob.NewBucket(e.db, zipBucket, 0).Chunks.DeleteMany(context.Background(), bson.D{}); err != nil {
		t.Fatal(err)
	}
	a := e.do(http.MethodHead, path, nil)
	if a.status != http.StatusOK || a.header.Get("Content-Length") != strconv.Itoa(len(data)) ||
		a.header.Get("ETag") != `"`+hexSHA(data)+`"` || a.header.Get("Content-Type") != "application/zip" {
		t.Errorf("HEAD = %d %v", a.status, a.header)
	}
}

// readyExport stores data as the zip of a ready scenario export, as the
// export service would, and returns the export's id.
func (e *artifactEnv) readyExport(data []byte) string {
	e.t.Helper()
	ctx := context.Background()
	w, err := blob.NewBucket(e.db, zipBucket, 0).Create(ctx, "exp-x", time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		e.t.Fatal(err)
	}
	f, err := w.Commit()
	if err != nil {
		e.t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	x := ScenarioExport{Meta: events.Meta{ID: events.NewID("exp"), CreatedAt: now, UpdatedAt: now, Version: 3}, JobID: "job-x",
		Status: exportReady, Size: f.Length, SHA256: f.Metadata.SHA256, ZipFileID: f.ID, ExpiresAt: now.Add(time.Hour), ReadyAt: &now}
	if _, err := e.db.Collection(store.Exports).InsertOne(ctx, x); err != nil {
		e.t.Fatal(err)
	}
	return x.ID
}
