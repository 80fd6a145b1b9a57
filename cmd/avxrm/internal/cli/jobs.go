package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var jobCols = []column{{"ID", field("id")}, {"NAME", givenName}, {"QUEUE", field("queue_name")}, {"STATUS", field("status")},
	{"WORKERS", field("worker_instances")}, {"AGE", age("submitted_at")}, {"REASON", func(m map[string]any) string {
		var j api.Job
		raw, _ := json.Marshal(m)
		_ = json.Unmarshal(raw, &j)
		return reason(&j)
	}}}

// givenName is the NAME of a job or job array in a table: "-" for one
// given no name, which the API names by its id, so that the id is not
// shown twice.
func givenName(m map[string]any) string {
	if name := text(m["name"]); name != text(m["id"]) {
		return name
	}
	return "-"
}

// reason is why a job waits (for admission, or for an instance that
// cannot start), why it failed, or why the scheduler cancelled it.
func reason(j *api.Job) string {
	if j.Status == nil {
		return ""
	}
	for _, c := range avxrm.Values(j.Conditions) {
		msg := ""
		if c.Message != nil {
			msg = *c.Message
		}
		switch {
		case (*j.Status == "pending" || *j.Status == "submitted") && c.Type == "Admitted" && c.Status == "False":
			return msg
		case *j.Status == "admitted" && c.Type == "Started" && c.Status == "False":
			return msg // an instance cannot start: an image that cannot be pulled...
		case *j.Status == "failed" && (c.Type == "Failed" || c.Type == "Finished") && c.Status == "True":
			return msg
		case *j.Status == "cancelled" && c.Type == "Admitted" && c.Reason != nil && *c.Reason == "DependencyFailed":
			return msg // cancelled by the scheduler, not by a user
		}
	}
	if ws := avxrm.Values(j.Warnings); *j.Status == "failed" && len(ws) > 0 {
		return ws[len(ws)-1]
	}
	return ""
}

func submitCommand(g *globals) *cobra.Command {
	var (
		file, queue, app, name, image string
		workers, priority, retries    int
		env, labels, command          []string
		retryOn, afterOK, afterAny    []string
		timeLimit                     time.Duration
		array, maxParallel            int
		wait                          bool
	)
	cmd := &cobra.Command{
		Use:         "submit --queue <queue> --app <name:version|app-id> --workers N [flags] [-- args...]",
		Annotations: map[string]string{submitAnnotation: ""},
		Short:       "Submit a job or a job array; with --wait, follow it until it ends",
		Long: "Submit a job and print its id. With --wait, follow it live until it ends: exit 0 when it\n" +
			"succeeded, 1 when it failed (the failing instance, its exit code and its last 10 lines of output\n" +
			"are printed), 3 when it was cancelled\n" +
			"(130 when Ctrl-C stops the following; the job goes on).\n" +
			"On a terminal one status line is redrawn in place; otherwise each change is one line.\n" +
			"Arguments after -- are the job's args: they replace the application's (--command replaces both).\n" +
			"-f reads the job's body (the API's JSON field names) from a JSON or YAML file; flags given\n" +
			"as well override its fields. --array N submits N such jobs as one job array (each with\n" +
			"RM_ARRAY_INDEX 0..N-1) and prints its id; --wait then follows the array's counts.",
		Example: "  avxrm submit --queue Default --app sim:1.0 --workers 8\n" +
			"  avxrm submit --queue Default --app sim:1.0 --workers 10 --env SEED=42 --label team=adas --wait\n" +
			"  avxrm submit --queue Default --app sim:1.0 -- --seed 42\n" +
			"  avxrm submit -f job.yaml --time-limit 2h --retries 2\n" +
			"  avxrm submit --queue Default --app post:1.0 --after-ok job-01J…   # once job-01J… has succeeded\n" +
			"  avxrm submit --queue Default --app report:1.0 --after-any job-01J…,job-01K…   # once both have ended, however they ended\n" +
			"  avxrm submit --queue Default --app sim:1.0 --array 1000 --max-parallel 50 --wait",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && cmd.ArgsLenAtDash() != 0 {
				return fmt.Errorf("unexpected argument %q: put the job's args after --", args[0])
			}
			flags := cmd.Flags()
			var body api.JobBody
			if file != "" {
				if err := readJobFile(file, &body); err != nil {
					return err
				}
			}
			if flags.Changed("queue") {
				body.QueueId = queue
			}
			if flags.Changed("app") || flags.Changed("image") {
				body.Application = appRef(app, image)
			}
			if flags.Changed("workers") || body.WorkerInstances == 0 {
				body.WorkerInstances = int64(workers)
			}
			switch {
			case body.QueueId == "":
				return errors.New("--queue is required (or queue_id in the -f file)")
			case body.Application == (api.JobApplicationRef{}):
				return errors.New("--app is required (or application in the -f file)")
			}
			if len(args) > 0 {
				body.Args = nullable.NewNullableWithValue(args)
			}
			if len(command) > 0 {
				body.Command = nullable.NewNullableWithValue(command)
			}
			if name != "" {
				body.Name = &name
			}
			if flags.Changed("priority") {
				body.Priority = ptr(int64(priority))
			}
			if flags.Changed("time-limit") {
				if timeLimit < time.Second {
					return fmt.Errorf("--time-limit %s: want at least 1s", timeLimit)
				}
				body.MaxRunSeconds = ptr(int64(math.Ceil(timeLimit.Seconds())))
			}
			if flags.Changed("retries") {
				body.MaxRetries = ptr(int64(retries))
			}
			if len(retryOn) > 0 {
				for _, v := range retryOn {
					if v != "failed" && v != "lost" && v != "both" {
						// The API knows failed and lost only: its refusal
						// would not name both.
						return fmt.Errorf("--retry-on %q: want failed, lost or both", v)
					}
				}
				body.RetryOn = nullable.NewNullableWithValue(retryKinds(retryOn))
			}
			var err error
			if afterOK, err = dependencyIDs("--after-ok", afterOK); err != nil {
				return err
			}
			if afterAny, err = dependencyIDs("--after-any", afterAny); err != nil {
				return err
			}
			fileDeps, _ := body.DependsOn.Get()
			named := submitFieldNames(flags, len(fileDeps), len(afterOK), timeLimit)
			if len(afterOK)+len(afterAny) > 0 {
				deps, _ := body.DependsOn.Get()
				for _, id := range afterOK {
					deps = append(deps, api.JobDependency{JobId: id, Condition: api.JobDependencyConditionSucceeded})
				}
				for _, id := range afterAny {
					deps = append(deps, api.JobDependency{JobId: id, Condition: api.JobDependencyConditionFinished})
				}
				body.DependsOn = nullable.NewNullableWithValue(deps)
			}
			if flags.Changed("max-parallel") && !flags.Changed("array") {
				return errors.New("--max-parallel needs --array: it bounds how many of an array's jobs run at once")
			}
			if flags.Changed("max-parallel") && maxParallel < 1 {
				// 0 would otherwise be sent as no limit at all.
				return fmt.Errorf("--max-parallel %d: want at least 1 (leave it out to admit all the array's jobs at once)", maxParallel)
			}
			if err = addPairs(&body.EnvironmentVariables, "--env", env); err != nil {
				return err
			}
			if err = addPairs(&body.Labels, "--label", labels); err != nil {
				return err
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			if flags.Changed("array") {
				return fieldErrors(submitArray(cmd, g, c, body, array, maxParallel, wait), named)
			}
			j, err := c.SubmitJob(cmd.Context(), body)
			if err != nil {
				return fieldErrors(err, named)
			}
			arc := runtimeConfigOf(cmd, c, j)
			noteImageNotUsed(cmd, j, arc)
			noteLimitsNotSet(cmd, c, j, arc)
			if !wait {
				return printSubmitted(cmd.OutOrStdout(), g, j, *j.Id)
			}
			if !g.structured() {
				fmt.Fprintln(cmd.OutOrStdout(), *j.Id)
			}
			err = followJob(cmd.Context(), cmd, g, c, *j.Id)
			stoppedFollowing(cmd, "job "+*j.Id, "jobs cancel "+*j.Id, "jobs wait "+*j.Id)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "the job's body from a JSON or YAML file (the API's field names); flags override it")
	f.StringVar(&queue, "queue", "", "the queue's name or id (required unless in -f)")
	f.StringVar(&app, "app", "", "the application: name:version, name, or its id (required unless in -f)")
	f.StringVar(&image, "image", "", "run this image (an inline application named by --app, else by the image's name; where --app names a registered application whose runtime config on the queue gives an image, that one runs, and submit notes it)")
	f.IntVar(&workers, "workers", 1, "worker instances, all admitted at once")
	f.StringVar(&name, "name", "", "the job's name (default: its id; an array's jobs are <name>-<index>)")
	f.IntVar(&priority, "priority", 0, "-1000000..1000000; higher is considered first among the waiting jobs")
	f.StringArrayVar(&env, "env", nil, "K=V environment variable of every instance (repeatable)")
	f.StringArrayVar(&labels, "label", nil, "k=v label (repeatable)")
	f.StringArrayVar(&command, "command", nil, "the job's command, one word per flag (repeatable); replaces the application's command and args")
	f.DurationVar(&timeLimit, "time-limit", 0, "fail the job (DeadlineExceeded) once it has run this long, e.g. 90m (max_run_seconds)")
	f.IntVar(&retries, "retries", 0, "run a failed attempt again up to this many times (max_retries)")
	f.StringSliceVar(&retryOn, "retry-on", nil, "which failures are retried: failed (an instance exited non-zero), lost (the runtime lost one) or both (default both)")
	_ = cmd.RegisterFlagCompletionFunc("retry-on", cobra.FixedCompletions([]string{"failed", "lost", "both"}, cobra.ShellCompDirectiveNoFileComp))
	f.StringArrayVar(&afterOK, "after-ok", nil, "admit the job only after this job (its id) has succeeded; if that one fails, is cancelled or deleted, this one is cancelled (DependencyFailed) (repeatable, or ids separated by commas)")
	f.StringArrayVar(&afterAny, "after-any", nil, "admit the job only after this job (its id) has ended, however it ended (repeatable, or ids separated by commas)")
	f.IntVar(&array, "array", 0, "submit this many jobs of this body as one job array, each with RM_ARRAY_INDEX")
	f.IntVar(&maxParallel, "max-parallel", 0, "with --array: at most this many of its jobs admitted or running at once, 1..--array (default: all)")
	f.BoolVar(&wait, "wait", false, "follow the job (or the array) until it ends; the exit code says how it ended")
	return cmd
}

// dependencyIDs are the job ids flag (--after-ok or --after-any) gave: each
// value one id or several separated by commas (as Slurm's
// --dependency=afterok:1:2 gives several), none of them empty.
func dependencyIDs(flag string, values []string) ([]string, error) {
	var ids []string
	for _, v := range values {
		for id := range strings.SplitSeq(v, ",") {
			id = strings.TrimSpace(id)
			if id == "" {
				return nil, fmt.Errorf("%s %q: want a job's id (several: repeat the flag or separate them by commas)", flag, v)
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// retryKinds are the kinds of failure the API's retry_on takes for
// --retry-on's values: both is failed and lost; each kind once.
func retryKinds(values []string) []api.JobBodyRetryOn {
	var on []api.JobBodyRetryOn
	for _, v := range values {
		kinds := []api.JobBodyRetryOn{api.JobBodyRetryOn(v)}
		if v == "both" {
			kinds = []api.JobBodyRetryOn{"failed", "lost"}
		}
		for _, k := range kinds {
			if !slices.Contains(on, k) {
				on = append(on, k)
			}
		}
	}
	return on
}

// stoppedFollowing says on stderr, once Ctrl-C (or SIGTERM) has ended
// cmd's following of what it submitted, that it goes on, and the commands
// that cancel it and follow it again; nothing when it ended otherwise.
func stoppedFollowing(cmd *cobra.Command, what, cancel, follow string) {
	if cmd.Context().Err() == nil {
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "avxrm: stopped following; %s goes on: 'avxrm %s' cancels it, 'avxrm %s' follows it again\n", what, cancel, follow)
}

// readJobFile reads a job's body from a JSON or YAML file; a field the API
// does not have is an error here, before anything is sent.
func readJobFile(file string, body *api.JobBody) error {
	js, err := readYAMLFile(file)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(body); err != nil {
		if field := unknownField(err); field != "" {
			if name := submitField(field); name != "" {
				return fmt.Errorf("%s: unknown field %q: the file takes the API's field names, here %s (--%s is the flag's)", file, field, name, field)
			}
			if ro := readOnlyJobFields(js); len(ro) > 0 {
				them := map[bool]string{true: "it", false: "them"}[len(ro) == 1]
				return fmt.Errorf("%s: %s: read-only, the server sets %s; leave %s out (to run a job again as it was: avxrm jobs resubmit <job>)", file, strings.Join(ro, ", "), them, them)
			}
		}
		return fileError(file, err)
	}
	return nil
}

// readOnlyJobFields are the fields of the JSON object js that a job has
// and a submission does not take, sorted.
func readOnlyJobFields(js []byte) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(js, &m) != nil {
		return nil
	}
	var ro []string
	for field := range m {
		if f, _ := jsonField(reflect.TypeFor[api.Job](), field); f == field {
			if f, _ := jsonField(reflect.TypeFor[api.JobBody](), field); f == "" {
				ro = append(ro, field)
			}
		}
	}
	slices.Sort(ro)
	return ro
}

// unknownField is the field encoding/json's DisallowUnknownFields refused,
// or "" for another error.
func unknownField(err error) string {
	name, ok := strings.CutPrefix(err.Error(), "json: unknown field ")
	if !ok {
		return ""
	}
	if unq, err := strconv.Unquote(name); err == nil {
		return unq
	}
	return ""
}

// submitField is the API's field of a job body that submit's flag named
// flag gives (workers: worker_instances), "" when there is none.
func submitField(flag string) string {
	var fields []string
	for field, f := range submitFlags {
		if f == flag && !strings.Contains(field, ".") && field != "count" && field != "max_parallel" {
			fields = append(fields, field)
		}
	}
	if len(fields) != 1 {
		return ""
	}
	return fields[0]
}

func ptr[T any](v T) *T { return &v }

// jobRuntimeConfig is what the notes after a submission read of the
// app-runtime-config of the job's queue and application.
type jobRuntimeConfig struct {
	Image          string                 `json:"image"`
	ResourceLimits *api.ResourceLimitsOut `json:"resource_limits"`
}

// runtimeConfigOf reads the app-runtime-config job j runs with, once for
// both notes; nil when j names no registered application or it cannot be
// read (the notes then say nothing).
func runtimeConfigOf(cmd *cobra.Command, c *avxrm.Client, j *api.Job) *jobRuntimeConfig {
	if j.Application.Id == nil {
		return nil
	}
	var arc jobRuntimeConfig
	if _, err := c.Do(cmd.Context(), http.MethodGet, runtimeConfigPath(j.QueueId, *j.Application.Id), nil, &arc); err != nil {
		return nil
	}
	return &arc
}

// noteImageNotUsed says on stderr when the image job j gives inline is not
// the one it runs: the app-runtime-config of its queue and registered
// application gives an image, which comes first (API.md), so --image
// (or application.image in -f) changed nothing. A failure to read the
// config says nothing: the job is submitted either way.
func noteImageNotUsed(cmd *cobra.Command, j *api.Job, arc *jobRuntimeConfig) {
	given := j.Application.Image
	if given == nil || *given == "" || arc == nil || arc.Image == "" || arc.Image == *given {
		return
	}
	queue := j.QueueId
	if j.QueueName != nil {
		queue = *j.QueueName
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "note: the job runs the image %s, which queue %s's runtime config of its application gives; "+
		"that comes before the image the job names (%s), so it is not used\n", arc.Image, queue, *given)
}

// noteLimitsNotSet says on stderr when job j's workers have resource
// limits (the app-runtime-config's of its queue and application, else its
// queue's) and its queue's plugin is a local one, which runs them as
// processes with no limit: a program the limits would stop takes what it
// wants, with no word of it in the job. A queue without a plugin, with no
// plugin the default, runs on the launchers' default driver, which the
// client cannot see: nothing is said then, nor when a read fails.
func noteLimitsNotSet(cmd *cobra.Command, c *avxrm.Client, j *api.Job, arc *jobRuntimeConfig) {
	ctx := cmd.Context()
	q, err := c.GetQueue(ctx, j.QueueId)
	if err != nil {
		return
	}
	limits := q.ResourceLimits
	if arc != nil && arc.ResourceLimits != nil {
		limits = arc.ResourceLimits
	}
	var set []string
	if limits != nil {
		if limits.Cpu != nil && *limits.Cpu != "" {
			set = append(set, "cpu "+*limits.Cpu)
		}
		if limits.Memory != nil && *limits.Memory != "" {
			set = append(set, "memory "+*limits.Memory)
		}
		if limits.Gpu != nil && *limits.Gpu != 0 {
			set = append(set, "gpu "+strconv.FormatInt(*limits.Gpu, 10))
		}
	}
	if len(set) == 0 {
		return
	}
	var p api.Plugin
	if q.PluginId != nil && *q.PluginId != "" {
		if _, err := c.Do(ctx, http.MethodGet, "/plugins/"+avxrm.PathSegment(*q.PluginId), nil, &p); err != nil {
			return
		}
	} else {
		for raw, err := range c.List(ctx, "/plugins", nil) {
			if err != nil {
				return
			}
			var each api.Plugin
			if json.Unmarshal(raw, &each) == nil && each.IsDefault {
				p = each
				break
			}
		}
	}
	if p.Type != api.PluginTypeLocal {
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "note: queue %s runs on the local plugin %s, which sets no resource limits: "+
		"its processes may use more than the limits the job's workers are given (%s)\n", q.Name, p.Name, strings.Join(set, ", "))
}

// appRef turns --app into the job's application reference: name:version,
// or else an id or a name the server resolves (a name with one version
// registered); with --image, the name of an inline application, by
// default the image's own (registry.example/sim:1.0: sim).
func appRef(app, image string) api.JobApplicationRef {
	var r api.JobApplicationRef
	switch name, version, ok := strings.Cut(app, ":"); {
	case ok:
		r.Name, r.Version = &name, &version
	case image != "" && app == "":
		r.Name = ptr(imageName(image))
	case image != "":
		r.Name = &app
	default:
		r.Id = &app
	}
	if image != "" {
		r.Image = &image
	}
	return r
}

// imageName is the name an image reference gives an inline application:
// its last path segment without tag or digest, in the characters a name
// may have; "inline" if nothing of it is left.
func imageName(image string) string {
	image, _, _ = strings.Cut(image, "@")
	image = image[strings.LastIndex(image, "/")+1:]
	image, _, _ = strings.Cut(image, ":")
	name := strings.TrimLeft(strings.Map(func(r rune) rune {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-", r)) {
			return r
		}
		return '-'
	}, image), "._-")
	if len(name) > 63 {
		name = name[:63]
	}
	return cmp.Or(name, "inline")
}

// submitFlags are the flags of submit that give a job body's fields (an
// array's body's fields too, and its own).
var submitFlags = map[string]string{"queue_id": "queue", "application": "app", "application.id": "app", "application.name": "app",
	"application.version": "app", "application.image": "image", "worker_instances": "workers", "name": "name", "priority": "priority",
	"max_run_seconds": "time-limit", "max_retries": "retries", "retry_on": "retry-on", "command": "command",
	"environment_variables": "env", "labels": "label", "count": "array", "max_parallel": "max-parallel"}

// submitFlag is the flag of submit that gave the body's field (the API's
// name, "job."-prefixed in an array's), "" if the flags did not give it.
// The dependencies are the file's (fileDeps of them), then --after-ok's
// (afterOK of them), then --after-any's.
func submitFlag(flags *pflag.FlagSet, field string, fileDeps, afterOK int) string {
	field = strings.TrimPrefix(field, "job.")
	if rest, ok := strings.CutPrefix(field, "depends_on["); ok {
		i, err := strconv.Atoi(rest[:max(strings.Index(rest, "]"), 0)])
		switch {
		case err != nil || i < fileDeps:
			return ""
		case i < fileDeps+afterOK:
			return "--after-ok"
		}
		return "--after-any"
	}
	flag, ok := submitFlags[field]
	key := ""
	if !ok { // environment_variables.K, command[0]...
		base := field[:strings.IndexAny(field+".", ".[")]
		flag = submitFlags[base]
		if k, isKey := strings.CutPrefix(field, base+"."); isKey && (flag == "env" || flag == "label") {
			key = " " + k // which of the flag's pairs: --env SEED
		}
	}
	if flag == "" || !flags.Changed(flag) && !(flag == "app" && flags.Changed("image")) {
		return ""
	}
	return "--" + flag + key
}

// submitFieldNames names the fields of submit's 422 by the flags that gave
// them (submitFlag), says a bound on --time-limit as a duration, and that
// a dependency on a job array is none on its jobs.
func submitFieldNames(flags *pflag.FlagSet, fileDeps, afterOK int, timeLimit time.Duration) func(api.FieldError) api.FieldError {
	return func(fe api.FieldError) api.FieldError {
		field := strings.TrimPrefix(fe.Field, "job.")
		flag := submitFlag(flags, fe.Field, fileDeps, afterOK)
		if flag != "" {
			fe.Field = flag
		}
		if flag == "--time-limit" {
			fe.Field += " " + durationText(timeLimit)
			fe.Message = secondsBound(fe.Message)
		}
		if strings.HasPrefix(field, "depends_on[") {
			// "job-1 is named already by depends_on[0]": by the flag that named it.
			fe.Message = depRef.ReplaceAllStringFunc(fe.Message, func(ref string) string {
				if f := submitFlag(flags, ref, fileDeps, afterOK); f != "" {
					return f
				}
				return ref
			})
		}
		if strings.HasPrefix(field, "depends_on[") && arrayRef.MatchString(fe.Message) {
			// The server's hint, if any, names its API; this one the command.
			id := arrayRef.FindStringSubmatch(fe.Message)[1]
			fe.Message = fmt.Sprintf(`no job "%s": a job depends on jobs, not on a job array; on each of its jobs, which 'avxrm jobs ls -A --array %s' lists`, id, id)
		}
		return fe
	}
}

var (
	arrayRef = regexp.MustCompile(`^no job "(arr-[^"]*)"`)
	depRef   = regexp.MustCompile(`(job\.)?depends_on\[[0-9]+\]`)
)

// addPairs adds the key=value pairs of kvs to *m (made if nil).
func addPairs(m **map[string]string, flag string, kvs []string) error {
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%s %q: want key=value", flag, kv)
		}
		if *m == nil {
			*m = &map[string]string{}
		}
		(**m)[k] = v
	}
	return nil
}

// followJob follows the job until it ends, its progress on g.progress;
// with -o json|yaml it then prints the job as it ended (as 'jobs get'
// does). Its error is follow's, which says how the job ended.
func followJob(ctx context.Context, cmd *cobra.Command, g *globals, c *avxrm.Client, id string) error {
	last, err := follow(ctx, c, id, g.progress(cmd), cmd.ErrOrStderr())
	failed := last != nil && last.Status != nil && *last.Status == "failed"
	if last == nil || !failed && !g.structured() {
		return err
	}
	// Events carry instance_counts, not instances: the record, read once,
	// says which instance failed and is what -o json|yaml prints.
	var raw json.RawMessage
	_, gerr := c.Do(ctx, http.MethodGet, "/jobs/"+avxrm.PathSegment(id), nil, &raw)
	var j api.Job
	if failed && gerr == nil && json.Unmarshal(raw, &j) == nil {
		printFailedTail(ctx, c, &j, cmd.ErrOrStderr())
	}
	if !g.structured() {
		return err
	}
	var v any = last
	if gerr == nil {
		v = raw
	}
	if perr := printItem(cmd.OutOrStdout(), g.output, v); perr != nil {
		return perr
	}
	return err
}

// follow shows the job live on out until it ends, and turns its end into
// the exit code; it returns the job as it was last seen (nil if never).
// A lost connection to the event stream is told on errw, as events does.
func follow(cmdCtx context.Context, c *avxrm.Client, id string, out, errw io.Writer) (*api.Job, error) {
	live := newLiveLine(out)
	var last *api.Job
	ctx, stop := context.WithCancelCause(cmdCtx)
	defer stop(nil)
	var o avxrm.WatchOptions
	newStreamReport(errw, c.Server(), stop).watch(&o)
	for j, err := range c.FollowJob(ctx, id, o) {
		if err != nil {
			live.done()
			if first := firstConnectionError(cmdCtx, ctx); first != nil {
				err = first // the stream's first connection failed: say why
			}
			return last, err
		}
		last = j
		live.show(statusLine(j))
	}
	live.done()
	if last == nil || last.Status == nil {
		return last, fmt.Errorf("job %s: no status", id)
	}
	code, msg := ExitFailed, "job "+id+" failed"
	switch *last.Status {
	case "succeeded":
		return last, nil
	case "cancelled":
		code, msg = ExitCancelled, "job "+id+" was cancelled"
	}
	if r := reason(last); r != "" {
		msg += ": " + r
	}
	return last, &exitError{code: code, msg: msg}
}

// statusLine is one line about a job: its status, why it waits with the
// numbers, or its workers running and done of N with a bar.
func statusLine(j *api.Job) string {
	status := "submitted"
	if j.Status != nil {
		status = string(*j.Status)
	}
	line := *j.Id + " " + status
	if j.Attempt != nil && *j.Attempt > 1 { // retried: which attempt this is
		line += fmt.Sprintf(" (attempt %d", *j.Attempt)
		if j.MaxRetries != nil {
			line += fmt.Sprintf(" of %d", *j.MaxRetries+1)
		}
		line += ")"
	}
	if r := reason(j); r != "" {
		line += ": " + r
	}
	if status == "admitted" || status == "running" || status == "succeeded" || status == "failed" || status == "cancelled" {
		running, done := workerCounts(j)
		if avxrm.JobFinal(j) {
			running = 0 // its instances are stopped: an event may have counted them before
		}
		n := int(j.WorkerInstances)
		line += fmt.Sprintf("  workers %d running, %d succeeded of %d %s", running, done, n, bar(running, done, n, 20))
	}
	return line
}

// workerCounts are the job's running and succeeded workers: from
// instance_counts (events carry no instance list), else from its instances.
func workerCounts(j *api.Job) (running, done int) {
	if j.InstanceCounts != nil {
		w := (*j.InstanceCounts)["worker"]
		return int(w["running"]), int(w["succeeded"])
	}
	if ins := avxrm.Values(j.Instances); ins != nil {
		for _, in := range ins {
			if in.Role != "worker" {
				continue
			}
			switch in.Status {
			case "running":
				running++
			case "succeeded":
				done++
			}
		}
	}
	return running, done
}

// bar draws done as '#', running as '>' of n in width cells.
func bar(running, done, n, width int) string {
	if n <= 0 {
		return ""
	}
	d := done * width / n
	r := (done + running) * width / n
	return "[" + strings.Repeat("#", d) + strings.Repeat(">", r-d) + strings.Repeat(".", width-r) + "]"
}

// unreadableQueueNote tells on w, when the caller may not read the jobs
// of queue (GET /whoami?queue=), that a list of them holds only its own:
// an empty list would otherwise read as a queue with no jobs. Nothing when
// the caller may, or when that cannot be read.
func unreadableQueueNote(ctx context.Context, c *avxrm.Client, queue string, w io.Writer) {
	me, err := c.Whoami(ctx, queue)
	if err != nil {
		return
	}
	for _, q := range avxrm.Values(me.Queues) {
		if !q.Read {
			fmt.Fprintf(w, "note: you may not read the jobs of queue %s (its access.read, or your role; see avxrm whoami): only your own are listed\n", q.Name)
		}
	}
}

func jobsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Aliases: []string{"job"}, Short: "List, show, wait for, cancel, clean up and delete jobs",
		Example: "  avxrm jobs ls\n  avxrm jobs ls -A --queue Default --status failed -o json\n  avxrm jobs describe job-01J…\n  avxrm jobs cancel job-01J…"}
	var lsf jobFilter
	var all bool
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List jobs (by default those that have not ended)", Args: cobra.NoArgs,
		Long: "List jobs (by default those that have not ended) in the order of their ids.\n\n" +
			"The list is printed a page at a time as the server answers: a table's columns are as wide as\n" +
			"its first page needs (a wider value later widens its own row), -o json|yaml print the same\n" +
			"document as at once. A page that cannot be read ends it with exit 1 after what was printed (with\n" +
			"-o json the array is left open, so that it does not parse as the whole list); Ctrl-C stops it (exit 130).",
		Example: "  avxrm jobs ls\n  avxrm jobs ls -A --label team=adas",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			return printPages(cmd.OutOrStdout(), g.output, jobCols, raws(lsf.pages(cmd.Context(), c, all)), func() {
				if lsf.queue != "" {
					unreadableQueueNote(cmd.Context(), c, lsf.queue, cmd.ErrOrStderr())
				}
			})
		},
	}
	lsf.flags(ls, "only")
	ls.Flags().BoolVarP(&all, "all", "A", false, "also the jobs that have ended")

	get := &cobra.Command{
		Use: "get <job>", Short: "Show a job", Args: cobra.ExactArgs(1), Example: "  avxrm jobs get job-01J… -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			var v json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/jobs/"+avxrm.PathSegment(args[0]), nil, &v); err != nil {
				return err
			}
			return g.printOne(cmd, v, jobCols)
		},
	}
	describe := &cobra.Command{
		Use: "describe <job>", Short: "Show a job's spec, conditions, warnings, instances (a failed one's last lines) and event history", Args: cobra.ExactArgs(1),
		Example: "  avxrm jobs describe job-01J…",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			if g.structured() { // the job as 'jobs get' prints it
				var v json.RawMessage
				if _, err := c.Do(cmd.Context(), http.MethodGet, "/jobs/"+avxrm.PathSegment(args[0]), nil, &v); err != nil {
					return err
				}
				return printItem(cmd.OutOrStdout(), g.output, v)
			}
			return describeJob(cmd.Context(), c, args[0], cmd.OutOrStdout())
		},
	}
	action := func(use, short, method, suffix, done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " <job>", Short: short, Args: cobra.ExactArgs(1), Example: "  avxrm jobs " + use + " job-01J…",
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client(cmd.Context())
				if err != nil {
					return err
				}
				if _, err := c.Do(cmd.Context(), method, "/jobs/"+avxrm.PathSegment(args[0])+suffix, nil, nil); err != nil {
					return err
				}
				return printResult(cmd, g, result{ID: args[0], Result: done})
			},
		}
	}
	post := &cobra.Command{Use: "post-controller", Short: "Start or stop a job's post-controller",
		Example: "  avxrm jobs post-controller start job-01J…\n  avxrm jobs post-controller stop job-01J…"}
	post.AddCommand(action("start", "Start the job's post-controller", http.MethodPost, "/post-controller", "post-controller requested"),
		action("stop", "Stop the job's post-controller", http.MethodDelete, "/post-controller", "post-controller stopping"))
	for _, c := range post.Commands() {
		c.Example = "  avxrm jobs post-controller " + c.Name() + " job-01J…"
	}
	cmd.AddCommand(ls, get, describe,
		bulkAction(g, bulk{use: "cancel", short: "Cancel jobs that have not ended: those named, or those the filters select",
			method: http.MethodPost, suffix: "/cancel", done: "cancel requested", activeOnly: true}),
		bulkAction(g, bulk{use: "cleanup", short: "Stop whatever still runs of jobs and release their capacity; the records stay",
			method: http.MethodPost, suffix: "/cleanup", done: "cleanup requested"}),
		bulkAction(g, bulk{use: "rm", aliases: []string{"delete"}, short: "Cancel, clean up and delete jobs with their artifacts",
			method: http.MethodDelete, done: "deleted"}),
		bulkAction(g, bulk{use: "resubmit", short: "Submit jobs again, each as a new job with the same submission", run: resubmit,
			long: "Each new job has the old one's queue, application, workers, environment variables, command\n" +
				"and args, priority, labels, time limit, retries and dependencies, and its name unless that\n" +
				"was its id; it waits for admission like any new job. The old job is left as it is.\n" +
				"The new job is labelled rm.avxrm.io/resubmitted-from=<old id>, and a job resubmitted so\n" +
				"already is not resubmitted again (its new job is named): running the same command twice\n" +
				"submits each job once. A job of an array is resubmitted as a job of its own: the array's\n" +
				"counts and 'avxrm arrays wait' do not count it; follow it with\n" +
				"'avxrm jobs wait --label rm.avxrm.io/resubmitted-from=<old id>' or by its id.\n\n",
			example: "  avxrm jobs resubmit job-01J…\n  avxrm jobs resubmit --array arr-01J… --status failed   # rerun an array's failed jobs\n" +
				"  avxrm jobs resubmit --label campaign=night-7 --status cancelled"}),
		waitCommand(g), post)
	return cmd
}

// appLine is a job's application in describe: a registered one's id, name
// and version, an inline one's name and image.
func appLine(app api.JobApplication) string {
	if app.Id == nil {
		return fmt.Sprintf("%s (inline, image %s)", deref(app.Name), deref(app.Image))
	}
	return strings.Join(slices.DeleteFunc([]string{deref(app.Id), deref(app.Name), deref(app.Version)}, func(s string) bool { return s == "" }), " ")
}

// describeJob prints a job for a human, with its event history so far.
func describeJob(ctx context.Context, c *avxrm.Client, id string, w io.Writer) error {
	j, err := c.GetJob(ctx, id)
	if err != nil {
		return err
	}
	status := ""
	if j.Status != nil {
		status = string(*j.Status)
	}
	fmt.Fprintf(w, "ID:        %s\n", *j.Id)
	if j.Name != *j.Id { // a job given no name is named by its id
		fmt.Fprintf(w, "Name:      %s\n", j.Name)
	}
	fmt.Fprintf(w, "Queue:     %s (%s)\nStatus:    %s\nWorkers:   %d\n", deref(j.QueueName), j.QueueId, status, j.WorkerInstances)
	app := j.Application
	fmt.Fprintf(w, "App:       %s\n", appLine(app))
	if o := j.Owner; o != nil {
		fmt.Fprintf(w, "Owner:     %s\n", cmp.Or(o.Username, o.Subject))
	}
	if j.ArrayId != nil && j.ArrayIndex != nil {
		fmt.Fprintf(w, "Array:     %s, index %d\n", *j.ArrayId, *j.ArrayIndex)
	}
	if j.QueuePosition != nil {
		fmt.Fprintf(w, "Position:  %d among the jobs waiting on %s\n", *j.QueuePosition, deref(j.QueueName))
		start := "unknown"
		if t, err := j.EstimatedStartAt.Get(); err == nil {
			start = "admitted at " + t.Format(time.RFC3339) + " (" + inDuration(time.Until(t)) + ")"
			if j.EstimateBasis != nil {
				start += ", estimated from " + string(*j.EstimateBasis)
			}
		}
		fmt.Fprintf(w, "Expected:  %s\n", start)
	}
	if j.Attempt != nil && *j.Attempt > 1 {
		fmt.Fprintf(w, "Attempt:   %d\n", *j.Attempt)
	}
	for _, t := range []struct {
		n string
		v *time.Time
	}{{"Submitted", j.SubmittedAt}, {"Admitted", j.AdmittedAt}, {"Started", j.StartedAt}, {"Finished", j.FinishedAt}, {"Cleaned", j.CleanedAt}} {
		if t.v != nil {
			fmt.Fprintf(w, "%-10s %s\n", t.n+":", t.v.Format(time.RFC3339))
		}
	}
	if conds := avxrm.Values(j.Conditions); len(conds) > 0 {
		fmt.Fprintln(w, "Conditions:")
		for _, cd := range conds {
			fmt.Fprintf(w, "  %-9s %-7s %-28s %s\n", cd.Type, cd.Status, deref(cd.Reason), deref(cd.Message))
		}
	}
	if ws := avxrm.Values(j.Warnings); len(ws) > 0 {
		fmt.Fprintln(w, "Warnings:")
		for _, m := range ws {
			fmt.Fprintln(w, "  "+m)
		}
	}
	if as := avxrm.Values(j.Attempts); len(as) > 0 {
		fmt.Fprintln(w, "Earlier attempts:")
		for _, a := range as {
			fmt.Fprintf(w, "  %d  %-9s %-16s %s\n", a.Attempt, a.Outcome, deref(a.Reason), deref(a.Message))
		}
	}
	if ins := avxrm.Values(j.Instances); len(ins) > 0 {
		count := map[string]map[string]int{}
		for _, in := range ins {
			if count[string(in.Role)] == nil {
				count[string(in.Role)] = map[string]int{}
			}
			count[string(in.Role)][in.Status]++
		}
		fmt.Fprintln(w, "Instances:")
		for _, role := range []string{"controller", "worker", "post-controller"} {
			if m := count[role]; m != nil {
				var parts []string
				for _, s := range []string{"pending", "running", "succeeded", "failed", "stopped", "lost"} {
					if m[s] > 0 {
						parts = append(parts, fmt.Sprintf("%d %s", m[s], s))
					}
				}
				fmt.Fprintf(w, "  %-16s %s\n", role, strings.Join(parts, ", "))
			}
		}
	}
	if status == "failed" {
		printFailedTail(ctx, c, j, w)
	}
	fmt.Fprintln(w, "Events:")
	for e := range jobHistory(ctx, c, id) {
		fmt.Fprintf(w, "  %s  %-22s %s\n", e.CloudEvent.Time.Format(time.RFC3339), e.Type, e.CloudEvent.Source)
	}
	return nil
}

// failedTailLines is how many of the failing instance's last lines a
// failed job's describe and a follow that saw it fail print.
const failedTailLines = 10

// printFailedTail prints the last lines of the instance whose failure
// failed the job, with the command that prints all of it, so that the
// program's own error is seen where the job's failure is. Nothing when no
// instance failed (a time limit, a start that failed) or its log cannot be
// read (a driver that keeps none, a runtime out of reach): the job's
// conditions say what there is.
func printFailedTail(ctx context.Context, c *avxrm.Client, j *api.Job, w io.Writer) {
	in := firstFailed(avxrm.Values(j.Instances))
	if in == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	path := fmt.Sprintf("/jobs/%s/instances/%s/%d/logs?tail=%d", avxrm.PathSegment(*j.Id), avxrm.PathSegment(string(in.Role)), in.Index, failedTailLines)
	var raw []byte
	if _, err := c.Do(ctx, http.MethodGet, path, nil, &raw); err != nil || len(bytes.TrimSpace(raw)) == 0 {
		return
	}
	fmt.Fprintf(w, "Last lines of %s %d (avxrm logs %s --role %s --index %d):\n", in.Role, in.Index, *j.Id, in.Role, in.Index)
	for line := range strings.Lines(strings.ToValidUTF8(strings.TrimRight(string(raw), "\n"), "\uFFFD")) {
		line = strings.TrimRight(line, "\r\n")
		if r := []rune(line); len(r) > 300 {
			line = string(r[:300]) + "…"
		}
		fmt.Fprintln(w, "  "+line)
	}
}

// firstFailed is the instance whose failure failed the job: of those that
// failed, the one that ended first (the controller first, then by index,
// when several ended at once); nil if none failed.
func firstFailed(ins []api.Instance) *api.Instance {
	var first *api.Instance
	for i := range ins {
		in := &ins[i]
		if in.Status != "failed" || in.FinishedAt == nil {
			continue
		}
		if first == nil || in.FinishedAt.Before(*first.FinishedAt) {
			first = in
		}
	}
	return first
}

// jobHistory yields the job's events stored so far: the stream has no end,
// so it stops once the stream has been quiet for a moment.
func jobHistory(ctx context.Context, c *avxrm.Client, id string) func(func(avxrm.Event) bool) {
	return func(yield func(avxrm.Event) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		quiet := time.AfterFunc(2*time.Second, cancel)
		defer quiet.Stop()
		var zero uint64
		for e, err := range c.Watch(ctx, avxrm.WatchOptions{JobID: id, After: &zero}) {
			if err != nil || !yield(e) {
				return
			}
			quiet.Reset(500 * time.Millisecond)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func logsCommand(g *globals) *cobra.Command {
	var role string
	var index int
	var followLogs bool
	var tail int
	cmd := &cobra.Command{
		Use: "logs <job> [--role worker --index 3] [--tail N] [-f]", Short: "Print an instance's output; -f follows it until the instance ends",
		Args: cobra.ExactArgs(1),
		Example: "  avxrm logs job-01J…\n  avxrm logs -f job-01J… --role worker --index 3\n  avxrm logs job-01J… --role controller\n" +
			"  avxrm logs job-01J… --tail 20 -f   # its last 20 lines, then what follows\n" +
			"  avxrm logs job-01J… --tail 0 -f    # only what it writes from now on",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			lines, err := tailLines(cmd, tail)
			if err != nil {
				return err
			}
			err = printLogs(cmd.Context(), c, args[0], role, index, lines, followLogs, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return flagErrors(err, paramFlags(map[string]string{"role": "role", "index": "index", "tail": "tail"}))
		},
	}
	refuseFormat(cmd, g, "the instance's output is printed as the program wrote it")
	cmd.Flags().StringVar(&role, "role", "worker", "controller, worker or post-controller")
	cmd.Flags().IntVar(&index, "index", 0, "the instance's index within its role")
	cmd.Flags().BoolVarP(&followLogs, "follow", "f", false, "keep printing new output until the instance ends; a lost connection is said on stderr and read again")
	cmd.Flags().IntVar(&tail, "tail", 0, "only the last N lines (then, with -f, what follows); the server reads no more of the log than those (0: none, so with -f only what is written from now on; default: all of it)")
	_ = cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"controller", "worker", "post-controller"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// refuseFormat makes cmd, whose output is no document, refuse -o json|yaml
// before it does anything, saying why (what it prints).
func refuseFormat(cmd *cobra.Command, g *globals, why string) {
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if g.structured() {
			return fmt.Errorf("-o %s: '%s' takes no output format: %s", g.output, cmd.CommandPath(), why)
		}
		return run(cmd, args)
	}
}

// printLogs prints the instance's log; following, until the instance has
// ended.
func printLogs(ctx context.Context, c *avxrm.Client, id, role string, index, tail int, follow bool, w, errw io.Writer) error {
	path := fmt.Sprintf("/jobs/%s/instances/%s/%d/logs", avxrm.PathSegment(id), avxrm.PathSegment(role), index)
	return followLog(ctx, c, path, tail, follow, w, errw, func() (bool, bool, error) {
		j, err := c.GetJob(ctx, id)
		if err != nil {
			return false, false, err
		}
		return instanceEnded(j, role, index), false, nil
	})
}

// followLog prints the log at path: all of it when tail is below 0, its
// last tail lines, or none of it with tail 0 (following, only what is
// written from then on). Following, it asks poll before each read whether
// the log has ended (then it reads it a last time) or restarted (a new
// replica's: printed from its start), and every half second asks for what
// it has not printed yet (?offset=); a log not there yet is waited for. A
// connection lost while following is said on errw and read again until the
// server is back (reconnects).
func followLog(ctx context.Context, c *avxrm.Client, path string, tail int, follow bool, w, errw io.Writer, poll func() (ended, restarted bool, err error)) error {
	printed := 0 // the offset read to
	rc := newReconnects(errw, c.Server())
	for {
		ended := false
		if follow {
			var restarted bool
			var err error
			if ended, restarted, err = poll(); err != nil {
				if rc.again(ctx, err) {
					continue
				}
				return err
			}
			rc.answered()
			if restarted {
				printed = 0
			}
		}
		// Only what has not been printed: a long log is not read again
		// on every poll. The first read of --tail asks for the last lines,
		// and the answer says where they start; that of --tail 0 for the
		// last line, which ends where the log does (the API has no tail of
		// none).
		query := "?offset=" + strconv.Itoa(printed)
		if tail >= 0 {
			query = "?tail=" + strconv.Itoa(max(tail, 1))
		}
		var raw []byte
		resp, err := c.Do(ctx, http.MethodGet, path+query, nil, &raw)
		switch {
		case err == nil:
			if tail >= 0 {
				if printed, err = strconv.Atoi(resp.Header.Get("Rm-Log-Offset")); err != nil {
					printed = 0 // a server older than tails sends the whole log
				}
				if tail == 0 {
					printed += len(raw) // the log's end: none of it is printed
					raw = nil
				}
				tail = -1
			}
			if len(raw) > 0 {
				if _, err := w.Write(raw); err != nil {
					return err
				}
				printed += len(raw)
			}
		case follow && !ended && isNotFound(err):
			// Not started yet: all it will write is new to --tail 0.
			if tail == 0 {
				tail = -1
			}
		case follow && rc.again(ctx, err):
			continue
		default:
			return err
		}
		if !follow || ended {
			return nil
		}
		if err := avxrm.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// instanceEnded says whether the job is over for that instance.
func instanceEnded(j *api.Job, role string, index int) bool {
	if avxrm.JobFinal(j) {
		return true
	}
	if ins := avxrm.Values(j.Instances); ins != nil {
		for _, in := range ins {
			if string(in.Role) == role && int(in.Index) == index {
				return in.FinishedAt != nil
			}
		}
	}
	return false
}

// tailLines is the tail followLog takes for --tail: -1 (all of the log)
// when it is not given, else its number of lines, 0 for none (with -f:
// only what is written from now on, as docker and kubectl logs --tail 0
// -f print). A negative --tail is refused.
func tailLines(cmd *cobra.Command, tail int) (int, error) {
	switch {
	case !cmd.Flags().Changed("tail"):
		return -1, nil
	case tail < 0:
		return 0, fmt.Errorf("--tail %d: want a number of lines, 0 or more (0: none of what is there; with -f, only what follows)", tail)
	}
	return tail, nil
}

func isNotFound(err error) bool {
	var e *avxrm.Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}
