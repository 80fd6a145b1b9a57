package api_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/services/api"
	"github.com/avxrm/rm/services/api/internal/httpapi"
)

// The local driver starts command and args as a process and has no image
// to take them from: a job, job array or deployment on a queue of a local
// plugin that nothing gives a command or args would fail at every start
// ("invalid spec: no command"). The API refuses it with a 422 naming the
// field and writes nothing; where the job, the application or an
// app-runtime-config gives a command or args, and on queues of other
// runtimes (which run the image's entrypoint, or nothing), it is created.
func TestNothingToRunOnTheLocalDriver(t *testing.T) {
	e := startEnv(t)
	loc := e.create("/plugins", obj{"name": "loc", "type": "local"}).str("id")
	sim := e.create("/plugins", pluginBody("sim")).str("id")
	e.create("/queues", queueBody("Loc").with("plugin_id", loc))
	e.create("/queues", queueBody("Sim").with("plugin_id", sim))
	e.create("/queues", queueBody("Default")) // no plugin; none is the default yet
	bare := e.create("/applications", appBody("bare", "1")).str("id")
	withCmd := e.create("/applications", appBody("cmd", "1").with("command", []string{"/bin/true"})).str("id")
	withArgs := e.create("/applications", appBody("args", "1").with("args", []string{"/bin/true"})).str("id")
	byArc := e.create("/applications", appBody("arc", "1")).str("id")
	for _, q := range []string{"Loc", "Sim", "Default"} {
		e.create("/app-runtime-config/"+q+"/application/"+byArc, arcBody().with("command", []string{"/bin/true"}))
	}

	for _, queue := range []string{"Loc", "Sim", "Default"} {
		for _, c := range []struct {
			what    string
			method  string
			path    string
			body    obj
			field   string // "" when it runs
			created int
		}{
			{"job, application without command", http.MethodPost, "/jobs", jobBody(queue, 1).with("application", obj{"id": bare}), "command", http.StatusCreated},
			{"inline application", http.MethodPost, "/jobs", jobBody(queue, 1), "command", http.StatusCreated},
			{"job array", http.MethodPost, "/job-arrays", obj{"job": jobBody(queue, 1), "count": 2, "max_parallel": 1}, "job.command", http.StatusCreated},
			{"deployment", http.MethodPost, "/deployments", deploymentBody("bare-"+queue, bare, queue).with("replicas", 1), "application_id", http.StatusCreated},
			{"deployment of no replicas", http.MethodPost, "/deployments", deploymentBody("bare0-"+queue, bare, queue).with("replicas", 0), "", http.StatusCreated},
			{"job giving a command", http.MethodPost, "/jobs", jobBody(queue, 1).with("application", obj{"id": bare}).with("command", []string{"/bin/true"}), "", http.StatusCreated},
			{"job giving args", http.MethodPost, "/jobs", jobBody(queue, 1).with("args", []string{"/bin/true"}), "", http.StatusCreated},
			{"application with a command", http.MethodPost, "/jobs", jobBody(queue, 1).with("application", obj{"id": withCmd}), "", http.StatusCreated},
			{"application with args", http.MethodPost, "/jobs", jobBody(queue, 1).with("application", obj{"id": withArgs}), "", http.StatusCreated},
			{"app-runtime-config with a command", http.MethodPost, "/jobs", jobBody(queue, 1).with("application", obj{"id": byArc}), "", http.StatusCreated},
			{"deployment, app-runtime-config with a command", http.MethodPost, "/deployments", deploymentBody("arc-"+queue, byArc, queue).with("replicas", 1), "", http.StatusCreated},
		} {
			jobs, arrays, deployments := e.count("jobs"), e.count("job_arrays"), e.count("deployments")
			r := e.do(c.method, v1+c.path, c.body)
			switch want := queue == "Loc" && c.field != ""; {
			case want && r.Status != http.StatusUnprocessableEntity:
				t.Errorf("%s on queue %s = %s, want 422", c.what, queue, truncate(r))
			case want:
				assertProblem(t, r, c.field)
				if !strings.Contains(string(r.Body), "local plugin loc") || !strings.Contains(string(r.Body), "nothing to run") {
					t.Errorf("%s on queue %s: %s does not say why", c.what, queue, r.Body)
				}
				if e.count("jobs") != jobs || e.count("job_arrays") != arrays || e.count("deployments") != deployments {
					t.Errorf("%s on queue %s refused, yet wrote", c.what, queue)
				}
			case r.Status != c.created:
				t.Errorf("%s on queue %s = %s, want %d", c.what, queue, truncate(r), c.created)
			}
		}
	}

	// A deployment of no replicas can be written; asking it for one cannot.
	idle := e.create("/deployments", deploymentBody("idle", bare, "Loc").with("replicas", 0)).str("id")
	patch := func(body obj) resp {
		return e.do(http.MethodPatch, v1+"/deployments/"+idle, body, "Content-Type", "application/merge-patch+json")
	}
	if r := patch(obj{"environment_variables": obj{"A": "1"}}); r.Status != http.StatusOK {
		t.Errorf("a deployment of no replicas on queue Loc changed = %s, want 200", truncate(r))
	}
	r := patch(obj{"replicas": 1})
	if r.Status != http.StatusUnprocessableEntity {
		t.Errorf("a deployment with nothing to run on queue Loc scaled to 1 = %s, want 422", truncate(r))
	}
	assertProblem(t, r, "application_id")

	// A queue without a plugin runs on the default plugin once there is one.
	e.must(http.StatusCreated, http.MethodPost, v1+"/plugins", obj{"name": "loc-default", "type": "local", "is_default": true})
	r = e.do(http.MethodPost, v1+"/jobs", jobBody("Default", 1))
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), "local plugin loc-default") {
		t.Errorf("a job without command on a queue of the default local plugin = %s, want 422", truncate(r))
	}
	assertProblem(t, r, "command")
}

// The check reads the queue's plugin when a job has nothing to run, and a
// submission to a queue in steady use should not pay a read for it: a type
// read in the last 2 s lets a job through (TestNothingToRunOnTheLocalDriver
// shows that a plugin written through the API is seen at once). A plugin
// turned local behind this API process's back (by another replica) is
// refused once that read is older.
func TestNothingToRunReusesAReadPluginType(t *testing.T) {
	e := startEnv(t)
	id := e.create("/plugins", pluginBody("sim").with("is_default", true)).str("id")
	e.create("/queues", queueBody("Q"))
	e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Q", 1))
	if _, err := e.db.Collection("plugins").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "type", Value: "local"}, {Key: "config", Value: bson.D{}}}}}); err != nil {
		t.Fatal(err)
	}
	read := time.Now()
	r := e.do(http.MethodPost, v1+"/jobs", jobBody("Q", 1))
	if time.Since(read) < time.Second && r.Status != http.StatusCreated {
		t.Errorf("a job with nothing to run, its queue's plugin read as simulated just before = %s, want 201 (no read)", truncate(r))
	}
	time.Sleep(2*time.Second - time.Since(read) + 100*time.Millisecond)
	r = e.do(http.MethodPost, v1+"/jobs", jobBody("Q", 1))
	if r.Status != http.StatusUnprocessableEntity {
		t.Errorf("a job with nothing to run, its queue's plugin local for 2 s = %s, want 422", truncate(r))
	}
	assertProblem(t, r, "command")
}

// A queue without a plugin, while no plugin is the default, runs on the
// launchers' default driver (RM_DEFAULT_DRIVER). Told that it is local (as
// the all-in-one tells its API), the API refuses a job with nothing to run
// there too, until a default plugin of another type takes the queue.
func TestNothingToRunOnTheLaunchersDefaultDriver(t *testing.T) {
	e := startEnvConfigured(t, api.Config{DefaultDriver: "local"})
	e.create("/queues", queueBody("Q"))
	jobs := e.count("jobs")
	r := e.do(http.MethodPost, v1+"/jobs", jobBody("Q", 1))
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), "the launchers' default driver, local") {
		t.Errorf("a job with nothing to run on the launchers' default local driver = %s, want 422 saying so", truncate(r))
	}
	assertProblem(t, r, "command")
	if e.count("jobs") != jobs {
		t.Error("refused, yet wrote")
	}
	e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Q", 1).with("command", []string{"/bin/true"}))
	sim := e.create("/plugins", pluginBody("sim").with("is_default", true)).str("id")
	e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Q", 1))
	// No longer the default (a default that queues rely on cannot be
	// deleted), the plugin leaves the queue to the default driver again,
	// at once: the API forgets the type it read.
	e.must(http.StatusOK, http.MethodPatch, v1+"/plugins/"+sim, obj{"is_default": false}, "Content-Type", "application/merge-patch+json")
	if r := e.do(http.MethodPost, v1+"/jobs", jobBody("Q", 1)); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("a job with nothing to run once the default plugin is deleted = %s, want 422", truncate(r))
	}

	// A driver type no launcher has is a mistake in the settings; the types
	// are the plugins'.
	typ, _ := reflect.TypeFor[httpapi.Plugin]().FieldByName("Type")
	if tag := typ.Tag.Get("enum"); tag != strings.Join(httpapi.PluginTypes, ",") {
		t.Errorf("Plugin.Type's enum %q, httpapi.PluginTypes %v: want the same", tag, httpapi.PluginTypes)
	}
	_, err := api.New(context.Background(), api.Config{DefaultDriver: "lcoal"}, api.Deps{DB: e.db, Outbox: e.ob})
	if err == nil || !strings.Contains(err.Error(), `"lcoal"`) {
		t.Errorf("api.New with default driver lcoal: %v, want an error naming it", err)
	}
}

// An application without an image is refused everywhere (the contract's
// "none → 422"), but the local and simulated drivers ignore the image, and
// a user of the all-in-one has no image to give. The refusal says so on
// their queues, a plugin's or the launchers' default driver's, and not on
// a queue whose runtime runs the image.
func TestNoImageSaysWhenTheDriverIgnoresIt(t *testing.T) {
	e := startEnvConfigured(t, api.Config{DefaultDriver: "local"})
	loc := e.create("/plugins", obj{"name": "loc", "type": "local"}).str("id")
	sim := e.create("/plugins", pluginBody("sim")).str("id")
	kube := e.create("/plugins", k8sPluginBody("kube")).str("id")
	e.create("/queues", queueBody("Loc").with("plugin_id", loc))
	e.create("/queues", queueBody("Sim").with("plugin_id", sim))
	e.create("/queues", queueBody("Kube").with("plugin_id", kube))
	e.create("/queues", queueBody("Default"))
	noImage := e.create("/applications", obj{"name": "noimage", "version": "1", "command": []string{"/bin/true"}}).str("id")

	for queue, ignoredBy := range map[string]string{
		"Loc": "the local plugin loc", "Sim": "the simulated plugin sim",
		"Default": "the launchers' default driver, local", "Kube": "",
	} {
		for _, c := range []struct {
			what, path, field string
			body              obj
		}{
			{"job", "/jobs", "application.image", jobBody(queue, 1).with("application", obj{"id": noImage})},
			{"job array", "/job-arrays", "job.application.image", obj{"job": jobBody(queue, 1).with("application", obj{"id": noImage}), "count": 2}},
			{"deployment", "/deployments", "application_id", deploymentBody("d-"+queue, noImage, queue)},
		} {
			jobs, arrays, deployments := e.count("jobs"), e.count("job_arrays"), e.count("deployments")
			r := e.do(http.MethodPost, v1+c.path, c.body)
			if r.Status != http.StatusUnprocessableEntity {
				t.Errorf("%s without an image on queue %s = %s, want 422", c.what, queue, truncate(r))
				continue
			}
			assertProblem(t, r, c.field)
			hint := "runs the queue and ignores the image, so any reference does"
			switch body := string(r.Body); {
			case ignoredBy != "" && (!strings.Contains(body, ignoredBy) || !strings.Contains(body, hint)):
				t.Errorf("%s without an image on queue %s: %s does not say that %s ignores the image", c.what, queue, body, ignoredBy)
			case ignoredBy == "" && strings.Contains(body, hint):
				t.Errorf("%s without an image on queue %s: %s says the image is ignored", c.what, queue, body)
			}
			if e.count("jobs") != jobs || e.count("job_arrays") != arrays || e.count("deployments") != deployments {
				t.Errorf("%s without an image on queue %s refused, yet wrote", c.what, queue)
			}
		}
	}
	// Any reference does there.
	e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1).with("application", obj{"name": "inline", "version": "1", "image": "local"}).with("command", []string{"/bin/true"}))

	// Without an image and without a command on a queue that ignores the
	// image, both are said at once: given the image alone, the job would
	// be refused next for its command.
	bare := e.create("/applications", obj{"name": "bare", "version": "1"}).str("id")
	r := e.do(http.MethodPost, v1+"/jobs", jobBody("Loc", 1).with("application", obj{"id": bare}))
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"field":"command"`) || !strings.Contains(string(r.Body), "nothing to run") {
		t.Errorf("a job without an image and a command on a local queue = %s, want 422 naming application.image and command", truncate(r))
	}
	assertProblem(t, r, "application.image")
	// With a command, the image alone.
	r = e.do(http.MethodPost, v1+"/jobs", jobBody("Loc", 1).with("application", obj{"id": bare}).with("command", []string{"/bin/true"}))
	if r.Status != http.StatusUnprocessableEntity || strings.Contains(string(r.Body), `"field":"command"`) {
		t.Errorf("a job with a command but no image on a local queue = %s, want 422 naming application.image alone", truncate(r))
	}
}

// A job's controller runs the job's runtime on simulation-controller-queue,
// through that queue's runtime: on a queue of another plugin, a job with
// nothing to run still cannot start its controller where that queue runs on
// the local driver. Refused (422 naming command, nothing written) until the
// job gives a command or the controller's queue gets a plugin that runs
// the image.
func TestNothingToRunForTheController(t *testing.T) {
	e := startEnvConfigured(t, api.Config{DefaultDriver: "local"})
	sim := e.create("/plugins", pluginBody("sim")).str("id")
	e.create("/queues", queueBody("Sim").with("plugin_id", sim))
	jobs := e.count("jobs")
	r := e.do(http.MethodPost, v1+"/jobs", jobBody("Sim", 1))
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), "nothing to run for the job's controller") ||
		!strings.Contains(string(r.Body), "the launchers' default driver, local") {
		t.Errorf("a job with nothing to run whose controller runs on the local driver = %s, want 422 saying so", truncate(r))
	}
	assertProblem(t, r, "command")
	if r := e.do(http.MethodPost, v1+"/job-arrays", obj{"job": jobBody("Sim", 1), "count": 2}); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("a job array of such jobs = %s, want 422", truncate(r))
	} else {
		assertProblem(t, r, "job.command")
	}
	if e.count("jobs") != jobs {
		t.Error("refused, yet wrote")
	}
	e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Sim", 1).with("command", []string{"/bin/true"}))
	// The controller's queue on the simulated plugin: the job is taken at
	// once (what would refuse it is read afresh).
	e.must(http.StatusOK, http.MethodPatch, v1+"/queues/simulation-controller-queue", obj{"plugin_id": sim}, "Content-Type", "application/merge-patch+json")
	e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Sim", 1))
}
