package httpapi

import (
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
)

// finishDocument turns the document huma generated from the operations into
// the one clients read (API.md "Conventions"), once every route is
// registered and before it is first served:
//   - its paths are relative to one servers entry, BasePath, so a client
//     given the server's root plus that entry requests the routes as served;
//   - query parameters are never typed null (a repeated parameter is an
//     array of strings, form style, exploded);
//   - response schemas allow properties they do not list, so a field added
//     later breaks no strict client, while request bodies stay strict:
//     schemas both use get a response copy named <Name>Out;
//   - bodies document 415 (the media types they take) besides 413.
//
// Request validation keeps using the registry's original schemas: nothing
// here loosens what the server accepts.
func (s *Server) finishDocument() {
	oapi := s.API.OpenAPI()
	reg := oapi.Components.Schemas.Map()

	paths := make(map[string]*huma.PathItem, len(oapi.Paths))
	for p, item := range oapi.Paths {
		if rel, ok := strings.CutPrefix(p, BasePath); ok && strings.HasPrefix(rel, "/") {
			p = rel
		}
		paths[p] = item
	}
	oapi.Paths = paths
	oapi.Servers = []*huma.Server{{URL: BasePath, Description: "this server; clients take its root URL (e.g. http://127.0.0.1:8080) and append " + BasePath}}

	documentPluginConfigs(oapi)
	var requests, responses []*huma.Schema
	for _, item := range oapi.Paths {
		for _, op := range operationsOf(item) {
			for _, p := range op.Parameters {
				if p.Schema != nil {
					p.Schema.Nullable = false
				}
			}
			if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Content {
					requests = append(requests, mt.Schema)
				}
				documentUnsupportedMediaType(oapi, op)
			}
			for _, r := range op.Responses {
				for _, mt := range r.Content {
					responses = append(responses, mt.Schema)
				}
			}
		}
	}
	inRequests := reachable(reg, requests)
	inResponses := reachable(reg, responses)
	// Copies of the schemas requests share, for responses.
	renamed := map[string]string{}
	for name := range inResponses {
		if inRequests[name] {
			renamed[name] = name + "Out"
		}
	}
	for name, out := range renamed {
		cp := *reg[name]
		reg[out] = &cp
	}
	seen := map[*huma.Schema]bool{}
	for name := range inResponses {
		target := name
		if out, ok := renamed[name]; ok {
			target = out
		}
		openResponse(reg[target], renamed, seen)
	}
	for _, sch := range responses {
		openResponse(sch, renamed, seen)
	}
	describePatterns(oapi)
	escapeDescriptions(oapi)
}

func operationsOf(item *huma.PathItem) []*huma.Operation {
	var ops []*huma.Operation
	for _, op := range []*huma.Operation{item.Get, item.Put, item.Post, item.Delete, item.Options, item.Head, item.Patch, item.Trace} {
		if op != nil {
			ops = append(ops, op)
		}
	}
	return ops
}

// documentUnsupportedMediaType adds the 415 a body of another media type gets.
func documentUnsupportedMediaType(oapi *huma.OpenAPI, op *huma.Operation) {
	code := strconv.Itoa(http.StatusUnsupportedMediaType)
	if _, ok := op.Responses[code]; ok {
		return
	}
	types := slices.Sorted(maps.Keys(op.RequestBody.Content))
	op.Responses[code] = &huma.Response{
		Description: "The body is not of a media type this operation takes (" + strings.Join(types, ", ") + "); the problem says which is expected",
		Content: map[string]*huma.MediaType{
			"application/problem+json": {Schema: oapi.Components.Schemas.Schema(reflect.TypeFor[problem.Problem](), true, "")},
		},
	}
}

// reachable returns the names of the registered schemas that roots refer
// to, directly or through other schemas.
func reachable(reg map[string]*huma.Schema, roots []*huma.Schema) map[string]bool {
	out := map[string]bool{}
	var walk func(s *huma.Schema)
	walk = func(s *huma.Schema) {
		if s == nil {
			return
		}
		if s.Ref != "" {
			name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
			if out[name] {
				return
			}
			out[name] = true
			walk(reg[name])
			return
		}
		eachSub(s, walk)
	}
	for _, r := range roots {
		walk(r)
	}
	return out
}

// eachSub calls f on every schema s holds directly.
func eachSub(s *huma.Schema, f func(*huma.Schema)) {
	f(s.Items)
	if ap, ok := s.AdditionalProperties.(*huma.Schema); ok {
		f(ap)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Properties)) {
		f(s.Properties[k])
	}
	for _, l := range [][]*huma.Schema{s.OneOf, s.AnyOf, s.AllOf} {
		for _, x := range l {
			f(x)
		}
	}
	f(s.Not)
}

// openResponse lets s (a response schema) and what it holds inline carry
// properties they do not list, and points its references to schemas that
// requests share at their response copies.
func openResponse(s *huma.Schema, renamed map[string]string, seen map[*huma.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		if out, ok := renamed[name]; ok {
			s.Ref = "#/components/schemas/" + out
		}
		return
	}
	if s.AdditionalProperties == false {
		s.AdditionalProperties = nil
	}
	// Inline sub-schemas may be shared with a request schema (huma reuses
	// them), so they are copied before they change.
	if s.Items != nil {
		cp := *s.Items
		s.Items = &cp
	}
	if len(s.Properties) > 0 {
		props := make(map[string]*huma.Schema, len(s.Properties))
		for k, p := range s.Properties {
			cp := *p
			props[k] = &cp
		}
		s.Properties = props
	}
	eachSub(s, func(x *huma.Schema) { openResponse(x, renamed, seen) })
}

// placeholder is a <word> in a description outside a code span, which
// Markdown renderers (Swagger UI) take for an HTML tag and drop.
var placeholder = regexp.MustCompile("(`[^`]*`)|<([A-Za-z_][A-Za-z0-9_ .=/-]*)>")

// escapeMarkdown puts every <placeholder> of a description in a code span,
// so Swagger UI shows `ETag: "<version>"` as written.
func escapeMarkdown(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, "`") {
			return m
		}
		return "`" + m + "`"
	})
}

// escapeDescriptions applies escapeMarkdown to every description of the document.
func escapeDescriptions(oapi *huma.OpenAPI) {
	if oapi.Info != nil {
		oapi.Info.Description = escapeMarkdown(oapi.Info.Description)
	}
	for _, t := range oapi.Tags {
		t.Description = escapeMarkdown(t.Description)
	}
	seen := map[*huma.Schema]bool{}
	var schema func(s *huma.Schema)
	schema = func(s *huma.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		s.Description = escapeMarkdown(s.Description)
		eachSub(s, schema)
	}
	if oapi.Components != nil {
		for _, s := range oapi.Components.Schemas.Map() {
			schema(s)
		}
		for _, sc := range oapi.Components.SecuritySchemes {
			sc.Description = escapeMarkdown(sc.Description)
		}
	}
	for _, item := range oapi.Paths {
		for _, op := range operationsOf(item) {
			op.Summary, op.Description = escapeMarkdown(op.Summary), escapeMarkdown(op.Description)
			for _, p := range op.Parameters {
				p.Description = escapeMarkdown(p.Description)
				schema(p.Schema)
			}
			if op.RequestBody != nil {
				op.RequestBody.Description = escapeMarkdown(op.RequestBody.Description)
				for _, mt := range op.RequestBody.Content {
					schema(mt.Schema)
				}
			}
			for _, r := range op.Responses {
				r.Description = escapeMarkdown(r.Description)
				for _, h := range r.Headers {
					h.Description = escapeMarkdown(h.Description)
					schema(h.Schema)
				}
				for _, mt := range r.Content {
					schema(mt.Schema)
				}
			}
		}
	}
}

// patternWords say in words what the patterns of the API's schemas accept,
// so that a refused value gets "expected string to be <words>" rather than
// the regular expression.
var patternWords = map[string]string{
	NamePattern:                     "a name: letters, digits, -, _ and ., starting with a letter or digit",
	`^[A-Za-z0-9][A-Za-z0-9._+-]*$`: "a version: letters, digits, -, _, . and +, starting with a letter or digit (e.g. 1.2.0)",
	ImagePattern:                    ImageWords,
	`^[A-Za-z0-9-]*$`:               "letters, digits and -",
	QuantityPattern:                 "a Kubernetes quantity such as 500m, 2, 1.5 or 4Gi",
}

// ImagePattern is the characters of a container image reference (an IPv6
// registry host is in brackets); validateImage holds it to the grammar.
const ImagePattern = `^[A-Za-z0-9\[][A-Za-z0-9._/:@+\[\]-]*$`

// ImageWords explains ImagePattern, and what the local driver does with an image.
const ImageWords = "a container image reference such as registry.example/sim:1.2 (letters, digits and . _ / : @ + - [ ], starting with a letter, a digit or [); " +
	"the local driver ignores the image and runs command + args in working_directory, so a program path such as /bin/sh belongs in command"

// QuantityPattern is the syntax of a Kubernetes quantity (resource.Quantity).
const QuantityPattern = `^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`

// describePatterns gives CPU and memory quantities their pattern, and
// problem the words of every pattern, for its messages. (The words do not go
// into the document as huma's patternDescription: that is no OpenAPI
// keyword, and validators refuse the document with it.)
func describePatterns(oapi *huma.OpenAPI) {
	maps.Copy(problem.PatternWords, patternWords)
	seen := map[*huma.Schema]bool{}
	var walk func(s *huma.Schema)
	walk = func(s *huma.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		eachSub(s, walk)
		s.PrecomputeMessages()
	}
	reg := oapi.Components.Schemas.Map()
	if rl := reg["ResourceLimits"]; rl != nil {
		for _, k := range []string{"cpu", "memory"} {
			if p := rl.Properties[k]; p != nil && p.Pattern == "" {
				p.Pattern = QuantityPattern
			}
		}
	}
	for _, s := range reg {
		walk(s)
	}
	for _, item := range oapi.Paths {
		for _, op := range operationsOf(item) {
			for _, p := range op.Parameters {
				walk(p.Schema)
			}
		}
	}
}

// documentPluginConfigs describes a plugin's config per plugin type: a
// schema per type (KubernetesPluginConfig, …) and a oneOf on the plugin
// choosing it by "type". The oneOf goes into the document only (as an
// extension member, which huma does not validate): the server checks config
// with validateConfig, whose messages name the field and the type.
func documentPluginConfigs(oapi *huma.OpenAPI) {
	maxDNSLabel := 63
	reg := oapi.Components.Schemas.Map()
	str := func(doc string, maxLen int) *huma.Schema {
		return &huma.Schema{Type: "string", Description: doc, MaxLength: &maxLen}
	}
	num := func(doc string, lo, hi float64) *huma.Schema {
		return &huma.Schema{Type: "number", Description: doc, Minimum: &lo, Maximum: &hi}
	}
	configs := map[string]*huma.Schema{
		"kubernetes": {Type: "object", Description: "Runs instances as pods. Exactly one of in_cluster: true and kubeconfig.",
			Required: []string{"namespace"}, AdditionalProperties: false, Properties: map[string]*huma.Schema{
				"namespace":  {Type: "string", Description: "the namespace of the pods: a DNS-1123 label (lower-case letters, digits and -)", Pattern: dnsLabel.String(), MaxLength: &maxDNSLabel},
				"in_cluster": {Type: "boolean", Description: "use the service account the launcher runs with"},
				"kubeconfig": str(`a kubeconfig (a secret: shown as "***"; send "***" to keep the stored one)`, 1<<20),
				"api_qps":    num("requests a second the launcher may send to the API server; 0 or absent: 50", 0, maxKubernetesAPIQPS),
				"api_burst": {Type: "integer", Description: "how many requests may go at once before api_qps paces them; 0 or absent: twice api_qps",
					Minimum: ptr(0.0), Maximum: ptr(float64(maxKubernetesAPIBurst))},
			}},
		"docker": {Type: "object", Description: "Runs instances as containers of a Docker Engine.", AdditionalProperties: false,
			Properties: map[string]*huma.Schema{
				"host":    str("the engine: a unix:// or tcp:// URL, e.g. unix:///var/run/docker.sock; default: the launcher's DOCKER_HOST", 1024),
				"network": str("the network the containers join", 255),
			}},
		"local": {Type: "object", Description: "Runs instances as processes on the launcher's host: the image is ignored; " +
			"command + args run in the app-runtime-config's working_directory, with the instance's environment.", AdditionalProperties: false,
			Properties: map[string]*huma.Schema{
				"work_dir": str("an absolute, clean path under which each instance gets its own directory (logs, pid and exit files)", 1024),
			}},
		"simulated": {Type: "object", Description: "Starts nothing: each instance succeeds (or fails, at failure_rate) after run_seconds.", AdditionalProperties: false,
			Properties: map[string]*huma.Schema{
				"run_seconds":  num("how long an instance runs", 0, 86400),
				"failure_rate": num("the share of instances that fail", 0, 1),
			}},
	}
	var branches []any
	for _, typ := range []string{"kubernetes", "docker", "local", "simulated"} {
		name := strings.ToUpper(typ[:1]) + typ[1:] + "PluginConfig"
		reg[name] = configs[typ]
		branches = append(branches, map[string]any{
			"properties": map[string]any{
				"type":   map[string]any{"enum": []string{typ}},
				"config": map[string]any{"$ref": "#/components/schemas/" + name},
			},
		})
	}
	for _, name := range []string{"PluginBody", "Plugin"} {
		if s := reg[name]; s != nil {
			if s.Extensions == nil {
				s.Extensions = map[string]any{}
			}
			s.Extensions["oneOf"] = branches
			if c := s.Properties["config"]; c != nil {
				c.Description = "by type: see KubernetesPluginConfig, DockerPluginConfig, LocalPluginConfig, SimulatedPluginConfig. " + c.Description
			}
		}
	}
}
