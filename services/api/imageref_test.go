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
		hex64,                                              // so too, but not on Kubernetes: TestImageIDsOnKubernetes
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

// A bare 64-hex image id parses as a reference, and Docker's engine creates
// a container from it, but the kubelet parses an image as a name and
// leaves such a container waiting as InvalidImageName until the job's
// start timeout. Where the API knows the queue, hence its plugin (an
// app-runtime-config, a job, a job array, a deployment), it refuses the id
// on a queue of the kubernetes plugin, or of no plugin while a kubernetes
// one is the default, with a 422 naming the field. An application alone
// has no queue and keeps it, as do queues of other runtimes;
// sha256:<id>, which the kubelet parses (a tag of "sha256") and containerd
// resolves as an image id on the node, and references by digest pass.
func TestImageIDsOnKubernetes(t *testing.T) {
	e := startEnv(t)
	k8s := e.create("/plugins", k8sPluginBody("k8s")).str("id")
	sim := e.create("/plugins", pluginBody("sim")).str("id")
	e.create("/queues", queueBody("Kube").with("plugin_id", k8s))
	e.create("/queues", queueBody("Sim").with("plugin_id", sim))
	e.create("/queues", queueBody("Default")) // no plugin; none is the default yet

	refused := func(image string) bool { return image == hex64 }
	for i, image := range []string{hex64, "sha256:" + hex64, "registry.example/sim@sha256:" + hex64, "local"} {
		app := e.create("/applications", obj{"name": fmt.Sprintf("app%d", i), "version": "1", "image": image}).str("id")
		for _, queue := range []string{"Kube", "Sim", "Default"} {
			arc := v1 + "/app-runtime-config/" + queue + "/application/" + app
			cases := []struct {
				method, path string
				body         obj
				created      int
				field        string
			}{
				{http.MethodPost, v1 + "/jobs", jobBody(queue, 1).with("application", obj{"id": app}), http.StatusCreated, "application.image"},
				{http.MethodPost, v1 + "/jobs", jobBody(queue, 1).with("application", obj{"name": "i", "version": "1", "image": image}), http.StatusCreated, "application.image"},
				{http.MethodPost, v1 + "/job-arrays", obj{"job": jobBody(queue, 1).with("application", obj{"image": image}), "count": 2, "max_parallel": 1},
					http.StatusCreated, "job.application.image"},
				{http.MethodPost, v1 + "/deployments", deploymentBody(fmt.Sprintf("d%d-%s", i, queue), app, queue).with("replicas", 0),
					http.StatusCreated, "application_id"},
				{http.MethodPost, arc, arcBody().with("image", image), http.StatusCreated, "image"},
			}
			for _, c := range cases {
				jobs, deployments, arcs := e.count("jobs"), e.count("deployments"), e.count("app_runtime_configs")
				r := e.do(c.method, c.path, c.body)
				switch want := queue == "Kube" && refused(image); {
				case want && r.Status != http.StatusUnprocessableEntity:
					t.Errorf("%s %s with image %q on queue %s = %s, want 422", c.method, c.path, cut(image), queue, truncate(r))
				case want:
					assertProblem(t, r, c.field)
					if !strings.Contains(string(r.Body), "InvalidImageName") || !strings.Contains(string(r.Body), "kubernetes plugin k8s") {
						t.Errorf("%s %s: %s does not say why", c.method, c.path, r.Body)
					}
					if e.count("jobs") != jobs || e.count("deployments") != deployments || e.count("app_runtime_configs") != arcs {
						t.Errorf("%s %s refused, yet wrote", c.method, c.path)
					}
				case r.Status != c.created:
					t.Errorf("%s %s with image %q on queue %s = %s, want %d", c.method, c.path, cut(image), queue, truncate(r), c.created)
				}
			}
		}
	}

	// An app-runtime-config made with a name cannot be changed to the id.
	app := e.create("/applications", appBody("patched", "1")).str("id")
	arc := v1 + "/app-runtime-config/Kube/application/" + app
	e.create("/app-runtime-config/Kube/application/"+app, arcBody())
	for _, r := range []resp{
		e.do(http.MethodPut, arc, arcBody().with("image", hex64)),
		e.do(http.MethodPatch, arc, obj{"image": hex64}, "Content-Type", "application/merge-patch+json"),
	} {
		if r.Status != http.StatusUnprocessableEntity {
			t.Errorf("an app-runtime-config on Kube changed to an image id = %s, want 422", truncate(r))
		}
		assertProblem(t, r, "image")
	}

	// A queue without a plugin runs on the default plugin once there is one.
	e.must(http.StatusCreated, http.MethodPost, v1+"/plugins", k8sPluginBody("k8s-default").with("is_default", true))
	r := e.do(http.MethodPost, v1+"/jobs", jobBody("Default", 1).with("application", obj{"name": "i", "version": "1", "image": hex64}))
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), "kubernetes plugin k8s-default") {
		t.Errorf("an image id on a queue of the default kubernetes plugin = %s, want 422", truncate(r))
	}
	assertProblem(t, r, "application.image")
}
