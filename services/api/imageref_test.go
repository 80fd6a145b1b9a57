package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Image references: the API takes what Docker and Kubernetes can run (the
// grammar of github.com/distribution/reference, whose test table these cases
// come from) and refuses the rest with a 422 naming the field, before
// anything is written; the launcher would otherwise fail the job at its
// start ("invalid reference format"). The local and simulated drivers
// ignore the image, and the values given them ("local", "local/sim:1") are
// references too.

var (
	hex64 = strings.Repeat("f", 64)

	goodImages = []string{
		"local",
		"local/sim:1",
		"i",
		"busybox",
		"registry.example/sim:1.2.0",
		"Registry.Example/sim:1",
		"localhost/sim",
		"localhost:5000/team/sim:v1",
		"test:5000/repo@sha256:" + hex64,
		"test:5000/repo:tag@sha256:" + hex64,
		"sub-dom1.foo.com/bar/baz/quux:some-long-tag",
		"b.gcr.io/test.example.com/my-app:test.example.com",
		"xn--n3h.com/myimage:xn--n3h.com",
		"xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + strings.Repeat("f", 128),
		"foo_bar.com:8080",
		"192.168.1.1:5000/repo:5050",
		"[2001:db8::1]:5000/repo:tag",
		"[::1]:5000/repo",
		"a__b/c-d--e.f:TAG_1",
		"lowercase:Uppercase",
		"sim:" + strings.Repeat("t", 128),
		"example.com/" + strings.Repeat("a", 243) + ":tag", // a name of 255 characters
		"sha256:" + hex64,                                  // an image id, as docker create takes it
		hex64,
	}

	badImages = []string{
		"BAD//Name:x",
		"sim//x:1",
		"Sim:1",
		"team/Sim:1",
		"test:5000/Uppercase/lowercase:tag",
		"sim:",
		"sim/",
		"sim_",
		"a___b",
		"sim:.x",
		"sim:-x",
		"sim:" + strings.Repeat("t", 129),
		"repo@sha256:" + strings.Repeat("f", 34),
		"validname@invaliddigest:" + hex64,
		"domain/" + strings.Repeat("a", 256) + ":tag",
		"[2001:db8::1]:5000",
		"[fe80::1%eth0]:5000/repo",
		"aa/asdf$$^/aa",
		"/bin/sh",
		"a b",
	}
)

func TestImageReferences(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	target := e.create("/applications", appBody("target", "1")).str("id")
	arcPath := v1 + "/app-runtime-config/Default/application/" + target

	for i, ref := range goodImages {
		t.Run("good/"+cut(ref), func(t *testing.T) {
			for _, c := range []struct {
				method, path string
				body         any
				want         int
			}{
				{http.MethodPost, v1 + "/applications", obj{"name": fmt.Sprintf("good%d", i), "version": "1", "image": ref}, http.StatusCreated},
				{http.MethodPost, v1 + "/jobs", jobBody("Default", 1).with("application", obj{"name": "i", "version": "1", "image": ref}), http.StatusCreated},
				{http.MethodPost, arcPath, arcBody().with("image", ref), http.StatusCreated},
				{http.MethodDelete, arcPath, nil, http.StatusNoContent},
			} {
				if r := e.do(c.method, c.path, c.body); r.Status != c.want {
					t.Fatalf("%s %s with image %q = %s, want %d", c.method, c.path, ref, truncate(r), c.want)
				}
			}
		})
	}
	for i, ref := range badImages {
		t.Run("bad/"+cut(ref), func(t *testing.T) {
			colls := []string{"applications", "jobs", "job_arrays", "app_runtime_configs"}
			before := map[string]int64{}
			for _, c := range colls {
				before[c] = e.count(c)
			}
			evs := len(e.events(""))
			for _, c := range []struct {
				path  string
				body  obj
				field string
			}{
				{v1 + "/applications", obj{"name": fmt.Sprintf("bad%d", i), "version": "1", "image": ref}, "image"},
				{v1 + "/jobs", jobBody("Default", 1).with("application", obj{"name": "i", "version": "1", "image": ref}), "application.image"},
				{v1 + "/job-arrays", obj{"job": jobBody("Default", 1).with("application", obj{"image": ref}), "count": 2, "max_parallel": 1}, "job.application.image"},
				{arcPath, arcBody().with("image", ref), "image"},
			} {
				r := e.do(http.MethodPost, c.path, c.body)
				if r.Status != http.StatusUnprocessableEntity {
					t.Fatalf("POST %s with image %q = %s, want 422", c.path, ref, truncate(r))
				}
				assertProblem(t, r, c.field)
			}
			for _, c := range colls {
				if n := e.count(c); n != before[c] {
					t.Errorf("%s: %d documents, was %d", c, n, before[c])
				}
			}
			if n := len(e.events("")); n != evs {
				t.Errorf("%d events published, was %d", n, evs)
			}
		})
	}

	// The message says what is wrong with the reference, not only that it is one.
	r := e.do(http.MethodPost, v1+"/applications", obj{"name": "upper", "version": "1", "image": "team/Sim:1"})
	if !strings.Contains(string(r.Body), "lowercase") {
		t.Errorf("an uppercase path is refused with %s, which does not say it must be lowercase", r.Body)
	}
}

// cut shortens a reference for a subtest's name.
func cut(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
