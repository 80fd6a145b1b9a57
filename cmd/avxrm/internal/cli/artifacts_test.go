package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Inside a job's instance avxrm needs no settings: the server is
// $RM_API_URL and the token $RM_JOB_TOKEN, which the launcher gives every
// instance; $RM_SERVER and $RM_TOKEN win over them.
func TestInstanceEnvironment(t *testing.T) {
	var got []string // "<server> <Authorization>" of each request
	srv := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = append(got, name+" "+r.Header.Get("Authorization"))
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"items":[]}`))
		}))
		t.Cleanup(s.Close)
		return s
	}
	api, chosen := srv("api-url"), srv("server")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"RM_SERVER": "", "RM_API_URL": api.URL, "RM_TOKEN": "", "RM_JOB_TOKEN": "job-token"}, "api-url Bearer job-token"},
		{map[string]string{"RM_SERVER": chosen.URL, "RM_API_URL": api.URL, "RM_TOKEN": "user-token", "RM_JOB_TOKEN": "job-token"}, "server Bearer user-token"},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		got = nil
		root := Root()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs([]string{"artifacts", "ls", "job-x"})
		if err := root.Execute(); err != nil || len(got) != 1 || got[0] != c.want {
			t.Errorf("%v: requests %q (%v), want %q", c.env, got, err, c.want)
		}
	}
}

// An artifact is named as the API's URLs name it; a name of neither kind,
// or a declaration for a scenario file, is refused before anything is sent.
func TestArtifactPath(t *testing.T) {
	for _, c := range []struct{ name, decl, want, err string }{
		{"scenarios/s-001/scenario.xosc", "", "/jobs/job-x/artifacts/scenarios/s-001/scenario.xosc", ""},
		{"scenarios/s 1/dir/a b.xosc", "", "/jobs/job-x/artifacts/scenarios/s%201/dir/a%20b.xosc", ""},
		{"assets/roads/a.xodr", "road-network", "/jobs/job-x/artifacts/assets/roads/a.xodr?declaration=road-network", ""},
		{"assets/common.txt", "", "/jobs/job-x/artifacts/assets/common.txt", ""},
		{"scenarios/s-001/a.xosc", "road-network", "", "--declaration is for assets"},
		{"scenario.xosc", "", "", "want scenarios/<sample>/<path> or assets/<path>"},
		{"scenarios/s-001", "", "", "want scenarios/<sample>/<path>"},
	} {
		got, err := artifactPath("job-x", c.name, c.decl)
		if got != c.want || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("artifactPath(%q, %q) = %q, %v; want %q, %q", c.name, c.decl, got, err, c.want, c.err)
		}
	}
}

// artifacts get makes its .part only once the server answers with the
// file: a 404 or an unreachable server leaves nothing behind; -O naming a
// directory writes into it under the artifact's name.
func TestArtifactGetFiles(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{"GET /jobs/job-x/artifacts/scenarios/s-1/a.xosc": {200, "scenario\n"}})
	dir := t.TempDir()
	t.Chdir(dir)
	for _, server := range []string{srv, "http://127.0.0.1:1"} {
		if _, _, err := runCLI(t, server, "artifacts", "get", "job-x", "scenarios/s-1/missing.xosc"); err == nil {
			t.Errorf("%s: get of a missing artifact succeeded", server)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: a failed get left %v", server, ents)
		}
	}
	sub := filepath.Join(dir, "out")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, errs, err := runCLI(t, srv, "artifacts", "get", "job-x", "scenarios/s-1/a.xosc", "-O", sub); err != nil {
		t.Fatalf("get -O <dir>: %v\n%s%s", err, out, errs)
	}
	if got, err := os.ReadFile(filepath.Join(sub, "a.xosc")); err != nil || string(got) != "scenario\n" {
		t.Errorf("get -O <dir>: %q, %v", got, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("get -O <dir> left %v", ents)
	}
	// A directory -O names by its trailing / is made if missing.
	if out, errs, err := runCLI(t, srv, "artifacts", "get", "job-x", "scenarios/s-1/a.xosc", "-O", filepath.Join(sub, "new")+"/"); err != nil {
		t.Fatalf("get -O <new dir>/: %v\n%s%s", err, out, errs)
	}
	if got, err := os.ReadFile(filepath.Join(sub, "new", "a.xosc")); err != nil || string(got) != "scenario\n" {
		t.Errorf("get -O <new dir>/: %q, %v", got, err)
	}
}

// A file is uploaded with its digest (Content-Digest, RFC 9530), which the
// server checks before it keeps the file; stdin, read as it is sent, goes
// without one.
func TestArtifactPutSendsTheFilesDigest(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, fmt.Sprintf("%s %d bytes, Content-Digest %q", r.Method, len(body), r.Header.Get("Content-Digest")))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"kind":"scenario","sample_id":"s-1","path":"a.xosc","size":9}`))
	}))
	defer srv.Close()
	f := filepath.Join(t.TempDir(), "a.xosc")
	if err := os.WriteFile(f, []byte("scenario\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{f, "-"} {
		if out, errs, err := runCLI(t, srv.URL, "artifacts", "put", "job-x", "scenarios/s-1/a.xosc", file); err != nil {
			t.Fatalf("artifacts put %s: %v\n%s%s", file, err, out, errs)
		}
	}
	sum := sha256.Sum256([]byte("scenario\n"))
	want := []string{
		fmt.Sprintf("PUT 9 bytes, Content-Digest %q", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":"),
		`PUT 0 bytes, Content-Digest ""`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("uploads %q, want %q", got, want)
	}
}
