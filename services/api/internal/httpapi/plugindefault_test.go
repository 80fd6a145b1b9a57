package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// The default plugin is the plugin of every queue without a plugin_id (the
// built-in queues among them): deleting it while such a queue exists is a
// 409 naming the queues and what to do, not a 204 after which their jobs
// run on the launchers' own driver.
func TestDefaultPluginInUseCannotBeDeleted(t *testing.T) {
	e := newEnv(t, nil)
	e.json(http.StatusCreated, http.MethodPost, "/plugins", map[string]any{"name": "local", "type": "local", "is_default": true}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/plugins", map[string]any{"name": "sim", "type": "simulated"}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Default"}, nil)

	a := e.json(http.StatusConflict, http.MethodDelete, "/plugins/local", nil, nil)
	for _, want := range []string{"plugin local (plg-", "is the default plugin", "simulation-controller-queue (q-", "post-controller-queue (q-",
		"Default (q-", "make another plugin the default first", "give those queues a plugin_id"} {
		if !strings.Contains(string(a.body), want) {
			t.Errorf("DELETE /plugins/local = %s, does not say %q", a, want)
		}
	}
	e.json(http.StatusOK, http.MethodGet, "/plugins/local", nil, nil)

	// Queues that all name a plugin do not rely on the default.
	for _, q := range []string{"Default", "simulation-controller-queue", "post-controller-queue"} {
		e.json(http.StatusOK, http.MethodPatch, "/queues/"+q, map[string]any{"plugin_id": "sim"}, nil, "Content-Type", "application/merge-patch+json")
	}
	e.json(http.StatusNoContent, http.MethodDelete, "/plugins/local", nil, nil)

	// Nor does a former default, once another plugin is the default.
	e.json(http.StatusCreated, http.MethodPost, "/plugins", map[string]any{"name": "local", "type": "local", "is_default": true}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "plain"}, nil)
	e.json(http.StatusConflict, http.MethodDelete, "/plugins/local", nil, nil)
	e.json(http.StatusCreated, http.MethodPost, "/plugins", map[string]any{"name": "local2", "type": "local", "is_default": true}, nil)
	e.json(http.StatusNoContent, http.MethodDelete, "/plugins/local", nil, nil)
	// A plugin a queue names stays refused, default or not.
	a = e.json(http.StatusConflict, http.MethodDelete, "/plugins/sim", nil, nil)
	if !strings.Contains(string(a.body), "in use by queue") {
		t.Errorf("DELETE /plugins/sim = %s", a)
	}
}

// A plugin that stops being the default leaves the queues without a
// plugin_id to the launchers' default driver at once: the API forgets the
// type it read, and refuses there what that driver cannot run (the way
// to take the default away now that it cannot be deleted while in use).
func TestFormerDefaultPluginLeavesQueuesToTheDefaultDriver(t *testing.T) {
	e := newEnv(t, nil, func(o *Options) { o.DefaultDriver = "local" })
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1.0", "image": "registry.example/sim:1.0"}, nil)
	job := map[string]any{"queue_id": "Q", "application": map[string]any{"name": "sim", "version": "1.0"}, "worker_instances": 1}
	e.json(http.StatusUnprocessableEntity, http.MethodPost, "/jobs", job, nil)
	e.json(http.StatusCreated, http.MethodPost, "/plugins", map[string]any{"name": "sim", "type": "simulated", "is_default": true}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/jobs", job, nil)
	e.json(http.StatusOK, http.MethodPatch, "/plugins/sim", map[string]any{"is_default": false}, nil, "Content-Type", "application/merge-patch+json")
	if a := e.json(http.StatusUnprocessableEntity, http.MethodPost, "/jobs", job, nil); !strings.Contains(string(a.body), "command") {
		t.Errorf("a job with nothing to run once no plugin is the default = %s, want 422 naming command", a)
	}
	e.json(http.StatusNoContent, http.MethodDelete, "/plugins/sim", nil, nil)
}
