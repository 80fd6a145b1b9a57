package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// kind is a resource the generic commands (ls, get, create, set, rm) serve.
type kind struct {
	use, short string
	aliases    []string
	path       string // the collection, e.g. /queues
	// keys is how many arguments name one resource: 1, or 2 for an
	// app-runtime-config (queue and application).
	keys int
	cols []column
	// refs are the id fields the table shows by name: queue_id, application_id.
	refs []string
	// example of create and set, for --help; setExample of set; key, the
	// arguments naming the resource those examples make, of get and rm.
	example, setExample, key string
	// body is the type of the resource's body, whose fields create and
	// set take; fieldFlags are those they have a flag of their own for.
	body       reflect.Type
	fieldFlags map[string]string
}

var kinds = []kind{
	{use: "queues", key: "Default", short: "Queues: where jobs wait, with a limit on concurrent worker instances", aliases: []string{"queue", "q"},
		path: "/queues", keys: 1,
		cols: []column{{"NAME", field("name")}, {"ID", field("id")}, {"LIMIT", limitCol}, {"ALLOCATED", field("usage.allocated_worker_instances")},
			{"RUNNING", field("usage.running_jobs")}, {"PENDING", field("usage.pending_jobs")}, {"AGE", age("created_at")}},
		example: "  avxrm queues create Default --limit 10 --description 'Test queue'\n" +
			"  avxrm queues set Default --limit 10\n  avxrm queues set Default --set scheduling.backfill=false\n" +
			"  avxrm queues create -f queue.yaml\n  avxrm queues ls -o json",
		setExample: "  avxrm queues set Default --limit 20\n  avxrm queues set Default --limit none   # unlimited\n" +
			"  avxrm queues set Default --description 'Nightly runs' --set scheduling.backfill=false\n  avxrm queues set Default -f patch.yaml",
		body: reflect.TypeFor[api.QueueBody](), fieldFlags: map[string]string{"maximum_allowed_worker_instances": "limit", "description": "description"}},
	{use: "plugins", key: "sim", short: "Plugins: the runtimes jobs run on (kubernetes, docker, local, simulated)", aliases: []string{"plugin"},
		path: "/plugins", keys: 1,
		cols:       []column{{"NAME", field("name")}, {"ID", field("id")}, {"TYPE", field("type")}, {"DEFAULT", field("is_default")}, {"AGE", age("created_at")}},
		example:    "  avxrm plugins create sim --set type=simulated --set config.run_seconds=5\n  avxrm plugins get sim -o json",
		setExample: "  avxrm plugins set sim --set config.run_seconds=10\n  avxrm plugins set sim --set is_default=true",
		body:       reflect.TypeFor[api.PluginBody]()},
	{use: "apps", key: "sim:1.0", short: "Applications: what a job runs (image, command)", aliases: []string{"app", "applications"},
		path: "/applications", keys: 1,
		cols:       []column{{"NAME", field("name")}, {"VERSION", field("version")}, {"ID", field("id")}, {"IMAGE", field("image")}, {"AGE", age("created_at")}},
		example:    "  avxrm apps create sim --set-string version=1.0 --set image=registry/sim:1.0\n  avxrm apps create -f app.json",
		setExample: "  avxrm apps set sim:1.0 --set image=registry/sim:1.0.1\n  avxrm apps set sim:1.0 --set 'args=[\"--fast\"]'",
		body:       reflect.TypeFor[api.ApplicationBody]()},
	{use: "runtime-configs", key: "Default sim:1.0", short: "App-runtime-configs: the image and settings of an application on a queue", aliases: []string{"runtime-config", "rc"},
		path: "/app-runtime-config", keys: 2,
		cols: []column{{"QUEUE", field("queue_id")}, {"APPLICATION", field("application_id")}, {"IMAGE", field("image")}, {"WORKDIR", field("working_directory")}},
		refs: []string{"queue_id", "application_id"},
		example: "  avxrm runtime-configs create Default sim:1.0 --set image=registry/sim:1.0 --set working_directory=/work\n" +
			"  avxrm runtime-configs get Default sim:1.0   # the application by name:version, or by its id app-01J…",
		setExample: "  avxrm runtime-configs set Default sim:1.0 --set image=registry/sim:1.1\n  avxrm rc set Default sim:1.0 --set environment_variables.LOG=debug",
		body:       reflect.TypeFor[api.AppRuntimeConfigBody]()},
	{use: "deployments", key: "viz", short: "Deployments: long-running replicas of an application on a queue", aliases: []string{"deployment", "deploy"},
		path: "/deployments", keys: 1,
		cols: []column{{"NAME", field("name")}, {"ID", field("id")}, {"APPLICATION", field("application_id")}, {"QUEUE", field("queue_id")},
			{"REPLICAS", field("replicas")}, {"READY", field("status.ready_replicas")}, {"RESTARTS", restartsCol}},
		refs:       []string{"queue_id", "application_id"},
		example:    "  avxrm deployments create viz --set application_id=viz:1.0 --set queue_id=Default --set replicas=2",
		setExample: "  avxrm deployments set viz --set replicas=4\n  avxrm deployments set viz --set application_id=viz:1.1",
		body:       reflect.TypeFor[api.DeploymentBody]()},
}

// restartsCol is how often a deployment's replicas were started again, all slots together.
func restartsCol(m map[string]any) string {
	reps, _ := lookup(m, "status.replicas").([]any)
	n := 0
	for _, r := range reps {
		if r, ok := r.(map[string]any); ok {
			f, _ := r["restarts"].(float64)
			n += int(f)
		}
	}
	return strconv.Itoa(n)
}

func limitCol(m map[string]any) string {
	if v := lookup(m, "maximum_allowed_worker_instances"); v != nil {
		return text(v)
	}
	return "none"
}

// itemPath is the path of one resource of k named by args.
func (k kind) itemPath(args []string) string {
	if k.keys == 2 {
		return runtimeConfigPath(args[0], args[1])
	}
	return k.path + "/" + avxrm.PathSegment(args[0])
}

// runtimeConfigPath is the path of the app-runtime-config of application
// app on queue (ids or names).
func runtimeConfigPath(queue, app string) string {
	return "/app-runtime-config/" + avxrm.PathSegment(queue) + "/application/" + avxrm.PathSegment(app)
}

func (k kind) keyUse() string {
	if k.keys == 2 {
		return "<queue> <application>"
	}
	return "<id|name>"
}

func resourceCommand(g *globals, k kind) *cobra.Command {
	cmd := &cobra.Command{Use: k.use, Short: k.short, Aliases: k.aliases, Example: k.example}
	singular := strings.TrimSuffix(k.use, "s")
	aSingular := "a " + singular // "an app"
	if strings.ContainsAny(singular[:1], "aeiou") {
		aSingular = "an " + singular
	}

	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List " + k.use, Args: cobra.NoArgs,
		Example: "  avxrm " + k.use + " ls\n  avxrm " + k.use + " ls -o yaml",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			pages := c.ListPages(cmd.Context(), k.path, nil)
			if g.output == "table" && len(k.refs) > 0 {
				pages = pagesWithNames(cmd.Context(), c, pages, k.refs)
			}
			return printPages(cmd.OutOrStdout(), g.output, k.cols, pages, nil)
		},
	}

	get := &cobra.Command{
		Use: "get " + k.keyUse(), Short: "Show one " + singular, Args: cobra.ExactArgs(k.keys),
		Example: "  avxrm " + k.use + " get " + k.key + " -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			var v json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodGet, k.itemPath(args), nil, &v); err != nil {
				return k.cliError(cmd.Context(), c, args, err)
			}
			if g.table(cmd) && len(k.refs) > 0 {
				items, err := withNames(cmd.Context(), c, []json.RawMessage{v}, k.refs)
				if err != nil {
					return err
				}
				v = items[0]
			}
			return g.printOne(cmd, v, k.cols)
		},
	}

	var file string
	var sets, setStrings []string
	var limit string
	var description string
	create := &cobra.Command{
		Use: "create " + createUse(k), Short: "Create " + aSingular + " from flags or a JSON/YAML file",
		Args: cobra.RangeArgs(0, k.keys), Example: k.example,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := buildBody(file, sets, setStrings)
			if err != nil {
				return err
			}
			path := k.path
			if k.keys == 2 {
				if len(args) != 2 {
					return fmt.Errorf("create needs the queue and the application")
				}
				path = k.itemPath(args)
			} else if len(args) == 1 {
				body["name"] = args[0]
			}
			if err := queueFlags(cmd, body, limit, description); err != nil {
				return err
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			var v json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodPost, path, body, &v); err != nil {
				return k.cliError(cmd.Context(), c, args, fieldErrors(err, setFieldNames(cmd.Flags(), k.fieldFlags, sets, setStrings)))
			}
			return printCreated(cmd, g, v)
		},
	}

	set := &cobra.Command{
		Use: "set " + k.keyUse() + " [--set key=value]…", Short: "Change " + aSingular + " (a JSON merge patch)",
		Args: cobra.ExactArgs(k.keys), Example: k.setExample,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := buildBody(file, sets, setStrings)
			if err != nil {
				return err
			}
			if err := queueFlags(cmd, body, limit, description); err != nil {
				return err
			}
			if len(body) == 0 {
				give := "--set key=value, --set-string key=value or -f file"
				if k.use == "queues" {
					give = "--limit, --description, " + give
				}
				return fmt.Errorf("nothing to change: give %s", give)
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			var v json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodPatch, k.itemPath(args), body, &v); err != nil {
				return k.cliError(cmd.Context(), c, args, fieldErrors(err, setFieldNames(cmd.Flags(), k.fieldFlags, sets, setStrings)))
			}
			return printCreated(cmd, g, v)
		},
	}
	for _, c := range []*cobra.Command{create, set} {
		c.Annotations = map[string]string{bodyAnnotation: k.use}
		c.Flags().StringVarP(&file, "file", "f", "", "a JSON or YAML file with the body")
		c.Flags().StringArrayVar(&sets, "set", nil, "key=value, key a dotted path; the value is JSON if it parses, else a string (repeatable)")
		c.Flags().StringArrayVar(&setStrings, "set-string", nil, "key=value with the value always a string, e.g. version=1.0 (repeatable)")
		if k.use == "queues" {
			c.Flags().StringVar(&limit, "limit", "", "maximum_allowed_worker_instances: a number, or 'none' for unlimited")
			c.Flags().StringVar(&description, "description", "", "the queue's description")
		}
	}

	rm := &cobra.Command{
		Use: "rm " + k.keyUse(), Aliases: []string{"delete"}, Short: "Delete " + aSingular, Args: cobra.ExactArgs(k.keys),
		Example: "  avxrm " + k.use + " rm " + k.key,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodDelete, k.itemPath(args), nil, nil); err != nil {
				return k.cliError(cmd.Context(), c, args, err)
			}
			if g.structured() {
				deleted := map[string]any{"deleted": args[0]}
				if k.keys == 2 {
					deleted["deleted"] = map[string]string{"queue_id": args[0], "application_id": args[1]}
				}
				return printItem(cmd.OutOrStdout(), g.output, deleted)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted", strings.Join(args, " "))
			return nil
		},
	}
	cmd.AddCommand(ls, get, create, set, rm)
	switch k.use {
	case "queues":
		cmd.AddCommand(pendingCommand(g))
	case "deployments":
		cmd.AddCommand(replicasCommand(g), replicaLogsCommand(g))
	}
	return cmd
}

// cliError is err of a request about the resource of k that args name, in
// the words of the command line: an app-runtime-config by the queue and
// application as given, not by the ids of the API's path, and what uses a
// resource that cannot be deleted by the command that deletes it.
func (k kind) cliError(ctx context.Context, c *avxrm.Client, args []string, err error) error {
	e := apiError(err, http.StatusConflict)
	if e == nil {
		e = apiError(err, http.StatusNotFound)
	}
	if e == nil {
		return err
	}
	detail := deref(e.Problem.Detail)
	switch {
	case k.keys == 2 && e.StatusCode == http.StatusConflict && strings.Contains(detail, " already exists; change it with PUT or PATCH at "):
		return withDetail(e, fmt.Sprintf("an app-runtime-config of application %s on queue %s already exists; change it with: avxrm rc set %s %s",
			args[1], args[0], args[0], args[1]))
	case k.keys == 2 && e.StatusCode == http.StatusNotFound && strings.HasPrefix(detail, "app-runtime-config of application "):
		return withDetail(e, fmt.Sprintf("no app-runtime-config of application %s on queue %s: 'avxrm rc ls' lists them", args[1], args[0]))
	case e.StatusCode == http.StatusConflict:
		// in use by app-runtime-config arc-… (/api/…/app-runtime-config/q-…/application/app-…)
		named := rcUser.ReplaceAllStringFunc(detail, func(m string) string {
			sub := rcUser.FindStringSubmatch(m)
			queue, app := refName(ctx, c, "/queues/", sub[1]), refName(ctx, c, "/applications/", sub[2])
			return fmt.Sprintf("the app-runtime-config of application %s on queue %s (avxrm rc rm %s %s)", app, queue, queue, app)
		})
		if named != detail {
			return withDetail(e, named)
		}
	}
	return err
}

var rcUser = regexp.MustCompile(`app-runtime-config arc-\S+ \(/api/resources/v1/app-runtime-config/([^/\s]+)/application/([^/\s)]+)\)`)

// refName is the name of the queue or application (path: /queues/,
// /applications/) of id, an application's as name:version; id itself if
// it cannot be read.
func refName(ctx context.Context, c *avxrm.Client, path, id string) string {
	var r map[string]any // an application's version is a string, every resource's a number
	if _, err := c.Do(ctx, http.MethodGet, path+avxrm.PathSegment(id), nil, &r); err != nil {
		return id
	}
	name, _ := r["name"].(string)
	if name == "" {
		return id
	}
	if v, ok := r["version"].(string); ok && path == "/applications/" {
		return name + ":" + v
	}
	return name
}

// refPaths are the collections the ids of a kind's refs name.
var refPaths = map[string]string{"queue_id": "/queues", "application_id": "/applications"}

// withNames returns items with each of the fields refs holding the name of
// what its id names (an application's "name version"), for a table: an id
// that names nothing any more, or that the caller may not list, stays as
// it is (the names only help read the table).
func withNames(ctx context.Context, c *avxrm.Client, items []json.RawMessage, refs []string) ([]json.RawMessage, error) {
	return named(items, refs, refNames(ctx, c, refs))
}

// pagesWithNames yields the pages of pages as withNames returns them, the
// names read once, for the first page that has an item.
func pagesWithNames(ctx context.Context, c *avxrm.Client, pages iter.Seq2[[]json.RawMessage, error], refs []string) iter.Seq2[[]json.RawMessage, error] {
	return func(yield func([]json.RawMessage, error) bool) {
		var names map[string]string
		for page, err := range pages {
			if err == nil && len(page) > 0 {
				if names == nil {
					names = refNames(ctx, c, refs)
				}
				page, err = named(page, refs, names)
			}
			if !yield(page, err) || err != nil {
				return
			}
		}
	}
}

// refNames are the names of what the ids of the fields refs name, by id:
// those the caller may list.
func refNames(ctx context.Context, c *avxrm.Client, refs []string) map[string]string {
	names := map[string]string{}
	for _, f := range refs {
		for it, err := range c.List(ctx, refPaths[f], nil) {
			if err != nil {
				break
			}
			var r map[string]any
			if json.Unmarshal(it, &r) != nil {
				continue
			}
			name := text(r["name"])
			if f == "application_id" {
				name += " " + text(r["version"])
			}
			names[text(r["id"])] = name
		}
	}
	return names
}

// named returns items with each of the fields refs holding the name names
// has for its id, if any.
func named(items []json.RawMessage, refs []string, names map[string]string) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(items))
	for i, it := range items {
		var m map[string]any
		if err := json.Unmarshal(it, &m); err != nil {
			return nil, err
		}
		for _, f := range refs {
			if n := names[text(m[f])]; n != "" {
				m[f] = n
			}
		}
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		out[i] = raw
	}
	return out, nil
}

// pendingCommand lists a queue's waiting jobs in the order the scheduler
// considers them, with when each is expected to start.
func pendingCommand(g *globals) *cobra.Command {
	return listOf(g, &cobra.Command{
		Use: "pending <id|name>", Short: "List a queue's waiting jobs in the order they will be considered, with estimated starts",
		Example: "  avxrm queues pending Default\n  avxrm queues pending Default -o json",
	}, "/queues/%s/pending", pendingCols)
}

// listOf makes cmd list, with cols, every item (all pages, each printed as
// it comes) at the path format names with its one argument as a path
// segment.
func listOf(g *globals, cmd *cobra.Command, format string, cols []column) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := g.client(cmd.Context())
		if err != nil {
			return err
		}
		return printPages(cmd.OutOrStdout(), g.output, cols, c.ListPages(cmd.Context(), fmt.Sprintf(format, avxrm.PathSegment(args[0])), nil), nil)
	}
	return cmd
}

var pendingCols = []column{{"POS", field("queue_position")}, {"ID", field("id")}, {"NAME", givenName},
	{"WORKERS", field("worker_instances")}, {"PRIORITY", field("priority")}, {"START", startIn("estimated_start_at")},
	{"BASIS", field("estimate_basis")}, {"REASON", field("message")}}

func createUse(k kind) string {
	if k.keys == 2 {
		return "<queue> <application> [--set key=value]… [-f file]"
	}
	return "[name] [--set key=value]… [-f file]"
}

// printCreated prints the id of a created or changed resource, or all of it
// with -o json|yaml.
func printCreated(cmd *cobra.Command, g *globals, v json.RawMessage) error {
	if g.output != "table" {
		return printItem(cmd.OutOrStdout(), g.output, v)
	}
	var m map[string]any
	_ = json.Unmarshal(v, &m)
	id := text(m["id"])
	if id == "" {
		id = text(m["queue_id"]) + " " + text(m["application_id"])
	}
	fmt.Fprintln(cmd.OutOrStdout(), id)
	return nil
}

// queueFlags adds the queue's own flags to body.
func queueFlags(cmd *cobra.Command, body map[string]any, limit, description string) error {
	if f := cmd.Flags().Lookup("limit"); f != nil && f.Changed {
		if limit == "none" || limit == "null" {
			body["maximum_allowed_worker_instances"] = nil
		} else if n, err := strconv.Atoi(limit); errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("--limit %q: too large a number of worker instances; for no limit give 'none'", limit)
		} else if err != nil {
			return fmt.Errorf("--limit %q: want a number or 'none'", limit)
		} else {
			body["maximum_allowed_worker_instances"] = n
		}
	}
	if f := cmd.Flags().Lookup("description"); f != nil && f.Changed {
		body["description"] = description
	}
	return nil
}

// readYAMLFile reads a JSON or YAML file as JSON.
func readYAMLFile(file string) ([]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return js, nil
}

// fileError says what is wrong with the body of a -f file in the words of
// JSON and the file's field names, not Go's types.
func fileError(file string, err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "json: "))
	}
	got := map[string]string{"string": "a string", "number": "a number", "bool": "true or false", "array": "a list", "object": "an object"}[te.Value]
	if got == "" {
		got = strings.TrimPrefix(te.Value, "number ") // "number 1.5"
	}
	if te.Field == "" {
		return fmt.Errorf("%s: expected a JSON or YAML object, got %s", file, got)
	}
	want := te.Type.String()
	switch te.Type.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "an integer"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Slice, reflect.Array:
		want = "a list"
	case reflect.Map, reflect.Struct:
		want = "an object"
	}
	if want == "a string" && (te.Value == "number" || te.Value == "bool") {
		// YAML reads version: 1.0 as the number 1, and yes or true as a bool.
		return fmt.Errorf("%s: %s: expected a string, got %s: quote it, e.g. \"1.0\"", file, te.Field, got)
	}
	return fmt.Errorf("%s: %s: expected %s, got %s", file, te.Field, want, got)
}

// buildBody reads file (JSON or YAML) and applies the key=value sets (the
// values of sets parsed as JSON where they parse, those of strs kept as text).
func buildBody(file string, sets, strs []string) (map[string]any, error) {
	body := map[string]any{}
	if file != "" {
		js, err := readYAMLFile(file)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(js, &body); err != nil {
			return nil, fileError(file, err)
		}
		if body == nil { // an empty file, or null
			return nil, fmt.Errorf("%s: expected a JSON or YAML object", file)
		}
	}
	for i, s := range append(sets, strs...) {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q: want key=value", s)
		}
		var val any = v
		var parsed any
		if i < len(sets) && json.Unmarshal([]byte(v), &parsed) == nil {
			val = parsed
		}
		m := body
		parts := strings.Split(k, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = val
	}
	return body, nil
}
