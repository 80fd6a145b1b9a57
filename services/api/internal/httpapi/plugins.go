package httpapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// timePrecision is what MongoDB keeps of a time; responses use the same so a
// resource reads back exactly as it was returned.
const timePrecision = time.Millisecond

// Redacted stands for a secret in responses and events. Sent back in a PUT
// or PATCH it keeps the stored secret.
const Redacted = "***"

// PluginTypes are the types a plugin may have (Plugin.Type's enum), which
// are the launchers' driver types.
var PluginTypes = []string{"kubernetes", "docker", "local", "simulated"}

// Plugin is a container-runtime plugin. Stored with its secrets; shown (and
// announced in events) with every secret replaced by "***".
type Plugin struct {
	events.Meta `bson:",inline"`
	Name        string         `json:"name" bson:"name"`
	Type        string         `json:"type" bson:"type" enum:"kubernetes,docker,local,simulated"`
	Config      map[string]any `json:"config" bson:"config" doc:"per type; secrets (kubeconfig, tokens, passwords) are shown as \"***\""`
	IsDefault   bool           `json:"is_default" bson:"is_default" doc:"the plugin of queues without plugin_id; at most one plugin is the default"`
}

// PluginBody is what a client sends to create or replace a plugin.
type PluginBody struct {
	Name   string         `json:"name" minLength:"1" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"unique; letters, digits, -, _, ., starting with a letter or digit"`
	Type   string         `json:"type" enum:"kubernetes,docker,local,simulated"`
	Config map[string]any `json:"config,omitempty" maxProperties:"32" doc:"by type — kubernetes: {namespace (required, DNS-1123 label), in_cluster (bool), kubeconfig (secret), api_qps (0..10000 requests a second to the API server; 0: 50), api_burst (0..100000; 0: twice api_qps)}, exactly one of in_cluster and kubeconfig; docker: {host (unix:// or tcp:// URL), network}; local: {work_dir (absolute path)}; simulated: {run_seconds (0..86400), failure_rate (0..1)}. Unknown fields are rejected. Send \"***\" for a secret to keep the stored one."`
	// IsDefault true makes this the default plugin and clears the flag on the previous default.
	IsDefault bool `json:"is_default,omitempty" doc:"true makes this the default plugin (the previous default loses the flag)"`
}

func pluginKind(s *Server) store.Kind[*Plugin] {
	return store.Kind[*Plugin]{S: s.opts.Store, Coll: store.Plugins, Name: "plugin", IDPrefix: "plg"}
}

// configField describes one field of a plugin type's config.
type configField struct {
	kind  string                     // JSON type: "string", "bool" or "number"
	check func(v any) (string, bool) // returns a message and false when v is invalid
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// The ranges of a kubernetes plugin's request limits, as the launcher's
// driver.KubernetesConfig checks them.
const (
	maxKubernetesAPIQPS   = 10000
	maxKubernetesAPIBurst = 100000
)

// pluginConfigs are the config fields of each plugin type (API.md "Plugins";
// the launcher's drivers read the same fields).
var pluginConfigs = map[string]map[string]configField{
	"kubernetes": {
		"namespace": {kind: "string", check: func(v any) (string, bool) {
			s := v.(string)
			return "must be a DNS-1123 label (lower-case letters, digits and -, at most 63)", len(s) <= 63 && dnsLabel.MatchString(s)
		}},
		"in_cluster": {kind: "bool"},
		"kubeconfig": {kind: "string", check: func(v any) (string, bool) {
			return "at most 1 MiB", len(v.(string)) <= 1<<20
		}},
		"api_qps": {kind: "number", check: func(v any) (string, bool) {
			f := v.(float64)
			return fmt.Sprintf("must be between 0 (the default, 50) and %d requests a second", maxKubernetesAPIQPS), f >= 0 && f <= maxKubernetesAPIQPS
		}},
		"api_burst": {kind: "number", check: func(v any) (string, bool) {
			f := v.(float64)
			return fmt.Sprintf("must be a whole number between 0 (the default, twice api_qps) and %d", maxKubernetesAPIBurst), f >= 0 && f <= maxKubernetesAPIBurst && f == math.Trunc(f)
		}},
	},
	"docker": {
		"host": {kind: "string", check: func(v any) (string, bool) {
			u, err := url.Parse(v.(string))
			ok := err == nil && (u.Scheme == "unix" && u.Path != "" || u.Scheme == "tcp" && u.Host != "")
			return "must be a unix:// or tcp:// URL, e.g. unix:///var/run/docker.sock or tcp://host:2376", ok
		}},
		"network": {kind: "string", check: func(v any) (string, bool) {
			s := v.(string)
			return "must be a network name or id", len(s) <= 255 && !strings.ContainsAny(s, " \t\r\n/")
		}},
	},
	"local": {
		"work_dir": {kind: "string", check: func(v any) (string, bool) {
			s := v.(string)
			return "must be an absolute, clean path", len(s) <= 1024 && path.IsAbs(s) && path.Clean(s) == s
		}},
	},
	"simulated": {
		"run_seconds": {kind: "number", check: func(v any) (string, bool) {
			f := v.(float64)
			return "must be between 0 and 86400", f >= 0 && f <= 86400
		}},
		"failure_rate": {kind: "number", check: func(v any) (string, bool) {
			f := v.(float64)
			return "must be between 0 and 1", f >= 0 && f <= 1
		}},
	},
}

// isSecret reports whether a config field holds a secret, which is never shown.
func isSecret(field string) bool {
	f := strings.ToLower(field)
	for _, w := range []string{"kubeconfig", "token", "password", "secret", "credential", "private_key"} {
		if strings.Contains(f, w) {
			return true
		}
	}
	return false
}

// redactConfig returns config with every non-empty secret replaced by "***".
func redactConfig(config map[string]any) map[string]any {
	out := make(map[string]any, len(config))
	for k, v := range config {
		switch {
		case isSecret(k) && v != nil && v != "":
			out[k] = Redacted
		default:
			if m, ok := v.(map[string]any); ok {
				v = redactConfig(m)
			}
			out[k] = v
		}
	}
	return out
}

// validateConfig checks config against its type and returns it with "***"
// replaced by the secret stored in prev (nil on create).
func validateConfig(typ string, config, prev map[string]any) (map[string]any, []*problem.FieldError) {
	fields, ok := pluginConfigs[typ]
	if !ok {
		return nil, nil // the schema's enum reports the type
	}
	var errs []*problem.FieldError
	out := map[string]any{}
	for k, v := range config {
		f := "config." + k
		spec, ok := fields[k]
		if !ok {
			known := make([]string, 0, len(fields))
			for n := range fields {
				known = append(known, n)
			}
			slices.Sort(known)
			errs = append(errs, problem.Field(f, "unknown field for a %s plugin (known: %s)", typ, strings.Join(known, ", ")))
			continue
		}
		if v == nil {
			continue
		}
		if isSecret(k) && v == Redacted {
			old, ok := prev[k]
			if !ok {
				errs = append(errs, problem.Field(f, "%q stands for the stored secret, and none is stored", Redacted))
				continue
			}
			v = old
		}
		var typeOK bool
		switch spec.kind {
		case "string":
			_, typeOK = v.(string)
		case "bool":
			_, typeOK = v.(bool)
		case "number":
			var n float64
			n, typeOK = v.(float64)
			typeOK = typeOK && !math.IsNaN(n) && !math.IsInf(n, 0)
		}
		if !typeOK {
			errs = append(errs, problem.Field(f, "must be a %s", map[string]string{"string": "string", "bool": "boolean", "number": "number"}[spec.kind]))
			continue
		}
		if spec.check != nil {
			if msg, ok := spec.check(v); !ok {
				errs = append(errs, problem.Field(f, "%s", msg))
				continue
			}
		}
		out[k] = v
	}
	if typ == "kubernetes" && len(errs) == 0 {
		if _, ok := out["namespace"]; !ok {
			errs = append(errs, problem.Field("config.namespace", "required for a kubernetes plugin"))
		}
		inCluster, _ := out["in_cluster"].(bool)
		kubeconfig, _ := out["kubeconfig"].(string)
		switch {
		case inCluster && kubeconfig != "":
			errs = append(errs, problem.Field("config.kubeconfig", "give either in_cluster: true or a kubeconfig, not both"))
		case !inCluster && strings.TrimSpace(kubeconfig) == "":
			errs = append(errs, problem.Field("config.kubeconfig", "required unless in_cluster is true"))
		}
	}
	return out, errs
}

type PluginPathParam struct {
	PluginID string `path:"plugin_id" maxLength:"63" doc:"the plugin's id or name"`
}

type (
	createPluginInput struct {
		idempotencyParam
		Body PluginBody
	}
	getPluginInput     struct{ PluginPathParam }
	replacePluginInput struct {
		PluginPathParam
		IfMatchParam
		Body PluginBody
	}
	patchPluginInput struct {
		PluginPathParam
		IfMatchParam
		MergePatchBody
	}
	deletePluginInput struct {
		PluginPathParam
		IfMatchParam
	}
	listPluginsInput struct {
		ListParams
		Name      string `query:"name" maxLength:"63" doc:"only the plugin of this name"`
		Type      string `query:"type" enum:"kubernetes,docker,local,simulated" doc:"only plugins of this type"`
		IsDefault string `query:"is_default" enum:"true,false" doc:"only the default plugin (true) or the others (false)"`
	}
)

type pluginOutput = resourceOutput[*Plugin]

func (s *Server) pluginCrud() *crud[*Plugin, PluginBody, *Plugin] {
	return &crud[*Plugin, PluginBody, *Plugin]{
		s: s, store: pluginKind(s), kind: events.KindPlugin,
		location: func(p *Plugin) string { return BasePath + "/plugins/" + p.ID },
		build:    s.buildPlugin,
		writable: func(p *Plugin) *PluginBody {
			return &PluginBody{Name: p.Name, Type: p.Type, Config: redactConfig(p.Config), IsDefault: p.IsDefault}
		},
		present: func(_ context.Context, p *Plugin) (*Plugin, error) {
			out := *p
			out.Config = redactConfig(p.Config)
			return &out, nil
		},
		queueOf: func(*Plugin) string { return events.NoQueue },
		named:   func(p *Plugin) string { return "a plugin named " + p.Name },
		name:    func(p *Plugin) string { return p.Name },
		inUse:   s.pluginInUse,
		afterWrite: func(ctx context.Context, p *Plugin) error {
			s.pluginTypes.forget() // a type or the default may have changed
			return s.clearOtherDefaults(ctx, p)
		},
	}
}

func (s *Server) registerPlugins() {
	c := s.pluginCrud()
	tag := []string{"Plugins"}
	path, item := BasePath+"/plugins", BasePath+"/plugins/{plugin_id}"
	huma.Register(s.API, s.op("create-plugin", http.MethodPost, path, "Register a container-runtime plugin", tag,
		http.StatusCreated, http.StatusConflict, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *createPluginInput) (*pluginOutput, error) {
			return c.create(ctx, &in.Body, nil)
		})
	huma.Register(s.API, s.op("list-plugins", http.MethodGet, path, "List plugins", tag, 0),
		func(ctx context.Context, in *listPluginsInput) (*listOutput[*Plugin], error) {
			f := bson.D{}
			if in.Name != "" {
				f = append(f, bson.E{Key: "name", Value: in.Name})
			}
			if in.Type != "" {
				f = append(f, bson.E{Key: "type", Value: in.Type})
			}
			if in.IsDefault != "" {
				f = append(f, bson.E{Key: "is_default", Value: in.IsDefault == "true"})
			}
			return c.list(ctx, f, in.ListParams)
		})
	huma.Register(s.API, s.op("get-plugin", http.MethodGet, item, "Get a plugin by id or name", tag, 0, http.StatusNotFound),
		func(ctx context.Context, in *getPluginInput) (*pluginOutput, error) { return c.read(ctx, in.PluginID) })
	huma.Register(s.API, s.op("replace-plugin", http.MethodPut, item, "Replace a plugin", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *replacePluginInput) (*pluginOutput, error) {
			return c.replace(ctx, in.PluginID, in.IfMatch, &in.Body)
		})
	huma.Register(s.API, s.op("patch-plugin", http.MethodPatch, item, "Update a plugin with a JSON merge patch", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *patchPluginInput) (*pluginOutput, error) {
			return c.patch(ctx, in.PluginID, in.IfMatch, in.MergePatchBody)
		})
	documentMergePatch[PluginBody](s, item)
	huma.Register(s.API, s.op("delete-plugin", http.MethodDelete, item, "Delete a plugin no queue uses", tag,
		http.StatusNoContent, http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed),
		func(ctx context.Context, in *deletePluginInput) (*struct{}, error) {
			err := c.remove(ctx, in.PluginID, in.IfMatch)
			s.pluginTypes.forget() // the default plugin may be gone
			return nil, err
		})
}

func (s *Server) buildPlugin(_ context.Context, b *PluginBody, prev *Plugin) (*Plugin, error) {
	var prevConfig map[string]any
	if prev != nil && prev.Type == b.Type {
		prevConfig = prev.Config
	}
	config, errs := validateConfig(b.Type, b.Config, prevConfig)
	if len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	return &Plugin{Name: b.Name, Type: b.Type, Config: config, IsDefault: b.IsDefault}, nil
}

// pluginInUse refuses to delete a plugin that queues use: those that name
// it in plugin_id and, while it is the default, those that name none (the
// built-in queues among them), which would otherwise run on the launchers'
// own driver from then on without a word.
func (s *Server) pluginInUse(ctx context.Context, p *Plugin) error {
	what := fmt.Sprintf("plugin %s (%s)", p.Name, p.ID)
	if err := s.inUseByRef(ctx, what, store.Queues, bson.D{{Key: "plugin_id", Value: p.ID}}, s.queueRef, replugThem); err != nil || !p.IsDefault {
		return err
	}
	const shown = 10
	qs, more, err := s.queues.List(ctx, noPluginID(), "", shown)
	if err != nil {
		return fmt.Errorf("check whether %s is in use: %w", what, err)
	}
	if len(qs) == 0 {
		return nil
	}
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = fmt.Sprintf("%s (%s)", q.Name, q.ID)
	}
	list := strings.Join(names, ", ")
	if more {
		list += " and more"
	}
	return fmt.Errorf("%s is the default plugin, which the queues without a plugin_id run on: %s; "+
		"make another plugin the default first (is_default: true), or give those queues a plugin_id: %w", what, list, problem.ErrConflict)
}

// noPluginID filters the queues that name no plugin and so run on the
// default plugin.
func noPluginID() bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "plugin_id", Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "plugin_id", Value: ""}},
	}}}
}

// clearOtherDefaults keeps at most one default plugin: once p is stored as
// the default, every other default loses the flag, each with its own
// rm.plugin.updated event. p is written first so that a refused write (say,
// a duplicate name) leaves the previous default alone.
func (s *Server) clearOtherDefaults(ctx context.Context, p *Plugin) error {
	if !p.IsDefault {
		return nil
	}
	kind := pluginKind(s)
	others, _, err := kind.List(ctx, bson.D{{Key: "is_default", Value: true}, {Key: "_id", Value: bson.D{{Key: "$ne", Value: p.ID}}}}, "", 100)
	if err != nil {
		return fmt.Errorf("find the previous default plugin: %w", err)
	}
	c := s.pluginCrud()
	c.afterWrite = nil
	for _, o := range others {
		_, err := retryRaced("", func() (*pluginOutput, error) {
			prev, err := kind.Get(ctx, o.ID)
			if isNotFound(err) || err == nil && !prev.Res.IsDefault {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			b := c.writable(prev.Res)
			b.IsDefault = false
			return c.store1(ctx, prev, b)
		})
		if err != nil {
			return fmt.Errorf("clear default on plugin %s: %w", o.ID, err)
		}
	}
	return nil
}

// resolvePlugin returns the id of the plugin ref (id or name) names; an
// unknown plugin is a 422 naming field.
func (s *Server) resolvePlugin(ctx context.Context, field, ref string) (string, error) {
	l, err := pluginKind(s).Get(ctx, ref)
	if isNotFound(err) {
		return "", problem.Field(field, "no plugin %q", ref)
	}
	if err != nil {
		return "", fmt.Errorf("look up plugin %q: %w", ref, err)
	}
	return l.Res.ID, nil
}

// pluginIDOf is the id of plugin ref for a list filter; an unknown ref is
// kept as it is and matches nothing.
func (s *Server) pluginIDOf(ctx context.Context, ref string) string {
	if id, err := s.resolvePlugin(ctx, "", ref); err == nil {
		return id
	}
	return ref
}

func asField(err error, fe **problem.FieldError) bool { return errors.As(err, fe) }
