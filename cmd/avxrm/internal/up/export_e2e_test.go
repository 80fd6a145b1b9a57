package up_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

// upload is one artifact a worker sends: its URL under the job and the zip
// path it must have in an export.
type upload struct {
	url, zipPath string
	data         []byte
}

func exportBytes(seed byte, n int) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// TestScenarioExportSelectionRules uploads a job's artifacts through the API,
// asks for exports covering every selection rule of API.md, lets the export
// service build them, downloads each zip and checks it byte for byte.
func TestScenarioExportSelectionRules(t *testing.T) {
	sys := startSystem(t)
	base := "http://" + sys.HTTPAddr + "/api/resources/v1"
	ctx := context.Background()

	now := time.Now().UTC().Truncate(time.Millisecond)
	job := events.Job{Meta: events.Meta{ID: events.NewID("job"), CreatedAt: now, UpdatedAt: now, Version: 1},
		Name: "export-e2e", QueueID: "q-e2e", Status: events.JobSucceeded, WorkerInstances: 1, SubmittedAt: now}
	if _, err := sys.DB.Collection("jobs").InsertOne(ctx, job); err != nil {
		t.Fatal(err)
	}
	uploads := []upload{
		{"scenarios/s-001/scenario.xosc", "scenarios/s-001/scenario.xosc", exportBytes(1, 5000)},
		{"scenarios/s-001/params/p.json", "scenarios/s-001/params/p.json", []byte(`{"seed": 1}`)},
		{"scenarios/s-007/scenario.xosc", "scenarios/s-007/scenario.xosc", exportBytes(2, 2<<20+12345)}, // several GridFS chunks
		{"scenarios/s-009/scenario.xosc", "scenarios/s-009/scenario.xosc", exportBytes(3, 10)},
		{"assets/catalogs/vehicles.xml", "assets/catalogs/vehicles.xml", exportBytes(4, 700)},
		{"assets/sky.png", "assets/sky.png", []byte{}},
		{"assets/town.xodr?declaration=road-network", "assets/road-network/town.xodr", exportBytes(5, 30000)},
		{"assets/lanes/l.bin?declaration=road-network", "assets/road-network/lanes/l.bin", exportBytes(6, 64)},
		{"assets/rain.json?declaration=weather", "assets/weather/rain.json", []byte(`{"mm": 3}`)},
	}
	byZip := map[string][]byte{}
	for _, u := range uploads {
		req, _ := http.NewRequest(http.MethodPut, base+"/jobs/"+job.ID+"/artifacts/"+u.url, bytes.NewReader(u.data))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s = %d %s", u.url, res.StatusCode, body)
		}
		byZip[u.zipPath] = u.data
	}

	commonAssets := []string{"assets/catalogs/vehicles.xml", "assets/sky.png"}
	roadNetwork := []string{"assets/road-network/lanes/l.bin", "assets/road-network/town.xodr"}
	s001 := []string{"scenarios/s-001/params/p.json", "scenarios/s-001/scenario.xosc"}
	cat := func(xs ...[]string) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x...)
		}
		sort.Strings(out)
		return out
	}
	tests := map[string]struct {
		body string
		want []string
	}{
		"no samples, no filter: all common asset data, no scenario file": {`{}`, commonAssets},
		"samples: every file of those samples":                           {`{"samples": ["s-001", "s-007"]}`, cat(s001, []string{"scenarios/s-007/scenario.xosc"}, commonAssets)},
		"include scenario only":                                          {`{"samples": ["s-009"], "include": ["scenario"]}`, []string{"scenarios/s-009/scenario.xosc"}},
		"include asset only":                                             {`{"samples": ["s-001"], "include": ["asset"]}`, commonAssets},
		"include scenario, no samples: nothing":                          {`{"include": ["scenario"]}`, nil},
		"declaration filter: only those declarations":                    {`{"filter_by_asset_declaration": ["road-network"]}`, roadNetwork},
		"two declarations":                                               {`{"filter_by_asset_declaration": ["weather", "road-network"], "include": ["asset"]}`, cat(roadNetwork, []string{"assets/weather/rain.json"})},
		"the API.md example": {`{"samples": ["s-001", "s-007"], "include": ["scenario", "asset"], "filter_by_asset_declaration": ["road-network"]}`,
			cat(s001, []string{"scenarios/s-007/scenario.xosc"}, roadNetwork)},
	}
	ids := map[string]string{}
	for name, tc := range tests {
		res, err := http.Post(base+"/jobs/"+job.ID+"/scenario-exports", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var x struct{ ID, Status string }
		if res.StatusCode != http.StatusAccepted || json.Unmarshal(body, &x) != nil || x.Status != "pending" {
			t.Fatalf("%s: POST = %d %s", name, res.StatusCode, body)
		}
		ids[name] = x.ID
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id := ids[name]
			x := waitExport(t, base, id)
			if x.Status != "ready" || x.FileCount != len(tc.want) {
				t.Fatalf("export %+v, want ready with %d files", x, len(tc.want))
			}
			res, err := http.Get(base + "/scenario-exports/" + id + "/download")
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			sum := sha256.Sum256(raw)
			if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/zip" || int64(len(raw)) != x.Size ||
				res.Header.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` || x.SHA256 != hex.EncodeToString(sum[:]) {
				t.Fatalf("download = %d %v, %d bytes; export %+v", res.StatusCode, res.Header, len(raw), x)
			}
			zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]byte{}
			var names []string
			for _, f := range zr.File {
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatalf("read %s: %v", f.Name, err)
				}
				got[f.Name] = b
				if f.Name != "manifest.json" {
					names = append(names, f.Name)
				}
			}
			sort.Strings(names)
			if !slices.Equal(tc.want, names) {
				t.Errorf("zip entries %q, want %q", names, tc.want)
			}
			var man struct {
				ExportID string `json:"export_id"`
				Files    []struct {
					Path   string
					Size   int64
					SHA256 string
				}
			}
			if err := json.Unmarshal(got["manifest.json"], &man); err != nil || man.ExportID != id {
				t.Fatalf("manifest of %s: %v %s", man.ExportID, err, got["manifest.json"])
			}
			var manPaths []string
			for _, f := range man.Files {
				manPaths = append(manPaths, f.Path)
				want := byZip[f.Path]
				s := sha256.Sum256(want)
				if f.Size != int64(len(want)) || f.SHA256 != hex.EncodeToString(s[:]) {
					t.Errorf("manifest entry %+v, upload has %d bytes", f, len(want))
				}
			}
			if !slices.Equal(tc.want, manPaths) {
				t.Errorf("manifest paths %q, want %q", manPaths, tc.want)
			}
			for _, p := range tc.want {
				if !bytes.Equal(got[p], byZip[p]) {
					t.Errorf("%s: %d bytes in the zip differ from the %d uploaded", p, len(got[p]), len(byZip[p]))
				}
			}
		})
	}

	// Each export was requested and became ready exactly once.
	evs := eventstest.ReadAll(t, sys.JS, events.FilterSubject(events.KindExport, "", ""))
	counts := map[string]int{}
	for _, e := range evs {
		counts[e.Type]++
	}
	if counts[events.TypeExportRequested] != len(tests) || counts[events.TypeExportReady] != len(tests) || counts[events.TypeExportFailed] != 0 {
		t.Errorf("export events %v, want %d requested and ready", counts, len(tests))
	}
}

type exportView struct {
	ID, Status, Reason, SHA256 string
	Size                       int64
	FileCount                  int `json:"file_count"`
}

// waitExport polls an export until it is ready or failed.
func waitExport(t *testing.T, base, id string) exportView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(base + "/scenario-exports/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var x exportView
		err = json.NewDecoder(res.Body).Decode(&x)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if x.Status == "ready" || x.Status == "failed" {
			return x
		}
		if time.Now().After(deadline) {
			t.Fatalf("export %s still %s", id, x.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
